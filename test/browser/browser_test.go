//go:build linux

package browser

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/test/interop"
)

var (
	serverBin string
	buildErr  error
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	if bin := os.Getenv("SWITCHBOARD_BIN"); bin != "" {
		serverBin = bin
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "switchboard-browser-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	serverBin, buildErr = interop.BuildServer(ctx, dir, interop.RaceEnabled())
	return m.Run()
}

// requirements returns node and this directory (with node_modules), or
// skips the test (fails it with CI=true) when something is missing.
func requirements(t *testing.T) (node, dir string) {
	t.Helper()
	missing := func(what string) {
		if interop.InCI() {
			t.Fatalf("%s (CI=true): run test/install.sh", what)
		}
		t.Skip(what + ": run test/install.sh")
	}
	if os.Geteuid() != 0 {
		missing("browser tests need root for network namespaces")
	}
	interop.RequireTool(t, "ip")
	interop.RequireTool(t, "baresip")
	interop.RequireTool(t, "sox")
	node = interop.RequireTool(t, "node")
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		missing("chromium is not installed")
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "playwright-core", "package.json")); err != nil {
		missing("playwright-core is not installed in test/browser (npm ci)")
	}
	if buildErr != nil {
		t.Fatalf("switchboard binary: %v", buildErr)
	}
	return node, dir
}

// stats is the driver's summary of getStats() for the current call.
type stats struct {
	Connection string `json:"connection"`
	AudioIn    *rtpIn `json:"audioIn"`
	VideoIn    *rtpIn `json:"videoIn"`
	AudioOut   *struct {
		PacketsSent int64 `json:"packetsSent"`
	} `json:"audioOut"`
	LocalCandidate *struct {
		Type    string `json:"type"`
		Address string `json:"address"`
	} `json:"localCandidate"`
	AudioCodec string `json:"audioCodec"`
}

type rtpIn struct {
	PacketsReceived int64   `json:"packetsReceived"`
	BytesReceived   int64   `json:"bytesReceived"`
	AudioLevel      float64 `json:"audioLevel"`
	FramesDecoded   int64   `json:"framesDecoded"`
}

func (d *driver) stats(name string) stats {
	d.t.Helper()
	var s stats
	if err := json.Unmarshal(d.must("stats", map[string]any{"name": name}), &s); err != nil {
		d.t.Fatal(err)
	}
	return s
}

// waitMedia polls getStats until cond holds for the page's call.
func (d *driver) waitMedia(name, what string, cond func(s stats) bool) stats {
	d.t.Helper()
	var last stats
	if !interop.Poll(20*time.Second, 250*time.Millisecond, func() bool {
		last = d.stats(name)
		return cond(last)
	}) {
		b, _ := json.Marshal(last)
		d.t.Fatalf("%s: %s: not within 20s; last stats %s", name, what, b)
	}
	return last
}

// audioFlowing checks that inbound audio keeps arriving and is not silent.
func (d *driver) audioFlowing(name string) stats {
	d.t.Helper()
	first := d.waitMedia(name, "inbound audio", func(s stats) bool { return s.AudioIn != nil && s.AudioIn.PacketsReceived > 50 })
	return d.waitMedia(name, "inbound audio growing with a level above 0", func(s stats) bool {
		return s.AudioIn != nil && s.AudioIn.PacketsReceived > first.AudioIn.PacketsReceived+50 && s.AudioIn.AudioLevel > 0
	})
}

func (d *driver) shot(name, path string) {
	d.t.Helper()
	d.must("screenshot", map[string]any{"name": name, "path": path})
}

// hasTone checks the newest recording of b holds freq Hz.
func hasTone(t *testing.T, b *baresip, freq float64) {
	t.Helper()
	var files []string
	interop.Poll(5*time.Second, 100*time.Millisecond, func() bool { files = b.received(); return len(files) > 0 })
	if len(files) == 0 {
		t.Fatalf("baresip %s recorded nothing", b.name)
	}
	f := files[len(files)-1]
	w, err := interop.ReadWAV(f)
	if err != nil {
		t.Fatal(err)
	}
	tone := interop.MeasureTone(w, freq)
	t.Logf("%s: %.1fs, active %.0f%%, %.0f Hz share %.2f", filepath.Base(f), tone.Seconds, 100*tone.Active, freq, tone.Share)
	if tone.Seconds < 1 || tone.Active < 0.5 || tone.Share < 0.5 {
		t.Fatalf("baresip %s did not hear the browser's %.0f Hz tone: %+v", b.name, freq, tone)
	}
}

// countIn counts the SIP requests of method in a baresip -s trace whose
// SDP has line.
func countIn(log, method, line string) int {
	n := 0
	for _, msg := range strings.Split(log, method+" sip:") {
		end := strings.Index(msg, "SIP/2.0 ")
		if end < 0 {
			end = len(msg)
		}
		if strings.Contains(msg[:end], line) {
			n++
		}
	}
	return n
}

func TestWebPhone(t *testing.T) {
	node, dir := requirements(t)
	root := filepath.Dir(filepath.Dir(dir))
	artifacts := filepath.Join(root, "test", "artifacts")
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	tones := t.TempDir()
	aliceTone := interop.MakeTone(t, filepath.Join(tones, "alice-440.wav"), 440, 60)
	carolTone := interop.MakeTone(t, filepath.Join(tones, "carol-660.wav"), 660, 60)
	bobTone := interop.MakeTone(t, filepath.Join(tones, "bob-1000.wav"), 1000, 60)

	ns := newNetns(t)
	sw := startSwitch(t, ns, serverBin, map[string]string{"alice": "alicepw", "bob": "bobpw", "carol": "carolpw"})
	page := httpGet(t, ns, "/")
	if !strings.Contains(page, "phone.js") {
		t.Fatalf("the switch does not serve the web phone at / (is the gateway wired into cmd/switchboard?):\n%s", page)
	}
	bob := startBaresip(t, ns, "bob", bobTone, 5070, 5090, true)
	bob.waitRegistered(t)
	d := startDriver(t, ns, node, dir)
	url := "http://" + httpAddr + "/"
	d.must("launch", map[string]any{"name": "alice", "tone": aliceTone, "url": url})
	// A wrong password is refused with a clear message.
	d.must("fill", map[string]any{"name": "alice", "label": "User name", "value": "alice"})
	d.must("fill", map[string]any{"name": "alice", "label": "Password", "value": "wrong"})
	d.must("click", map[string]any{"name": "alice", "button": "Sign in"})
	d.must("waitText", map[string]any{"name": "alice", "text": "Wrong user name or password."})
	d.must("signin", map[string]any{"name": "alice", "user": "alice", "password": "alicepw"})
	d.shot("alice", filepath.Join(artifacts, "webphone-signed-in.png"))

	t.Run("browser calls baresip", func(t *testing.T) {
		d.t = t
		bob.clearEvents()
		d.must("fill", map[string]any{"name": "alice", "label": "Call to", "value": "bob"})
		d.must("click", map[string]any{"name": "alice", "button": "Call"})
		d.must("waitState", map[string]any{"name": "alice", "text": "In call"})
		bob.waitEvent(t, "CALL_ESTABLISHED", "", 15*time.Second)
		s := d.audioFlowing("alice")
		t.Logf("alice receives %s: %d packets, level %.3f", s.AudioCodec, s.AudioIn.PacketsReceived, s.AudioIn.AudioLevel)
		d.shot("alice", filepath.Join(artifacts, "webphone-in-call.png"))

		// Hold and resume: re-INVITEs with a=sendonly, then a=sendrecv.
		d.must("click", map[string]any{"name": "alice", "button": "Hold"})
		d.must("waitState", map[string]any{"name": "alice", "text": "On hold"})
		if countIn(bob.log(), "INVITE", "a=sendonly") == 0 {
			t.Errorf("bob got no re-INVITE with a=sendonly")
		}
		d.must("click", map[string]any{"name": "alice", "button": "Hold"})
		d.must("waitState", map[string]any{"name": "alice", "text": "In call"})
		if countIn(bob.log(), "INVITE", "a=sendrecv") < 2 {
			t.Errorf("bob got no re-INVITE with a=sendrecv after the hold")
		}
		// DTMF from the keypad reaches baresip as RFC 4733 events.
		for _, digit := range []string{"1", "2", "#"} {
			d.must("click", map[string]any{"name": "alice", "button": digit})
			bob.waitEvent(t, "CALL_DTMF_START", digit, 10*time.Second)
		}
		d.must("click", map[string]any{"name": "alice", "button": "Hang up"})
		bob.waitEvent(t, "CALL_CLOSED", "", 10*time.Second)
		d.must("waitState", map[string]any{"name": "alice", "text": "Call ended"})
		hasTone(t, bob, 440)
	})

	t.Run("baresip calls browser", func(t *testing.T) {
		d.t = t
		bob.clearEvents()
		if _, err := bob.command("dial", "sip:alice@"+domain); err != nil {
			t.Fatal(err)
		}
		d.must("waitText", map[string]any{"name": "alice", "text": "Incoming call"})
		d.must("click", map[string]any{"name": "alice", "button": "Answer"})
		d.must("waitState", map[string]any{"name": "alice", "text": "In call"})
		bob.waitEvent(t, "CALL_ESTABLISHED", "", 15*time.Second)
		d.audioFlowing("alice")
		time.Sleep(2 * time.Second) // let bob record some of the browser's tone
		if _, err := bob.command("hangup", ""); err != nil {
			t.Fatal(err)
		}
		d.must("waitState", map[string]any{"name": "alice", "text": "Call ended"})
		hasTone(t, bob, 440)
	})

	t.Run("browser to browser video", func(t *testing.T) {
		d.t = t
		d.must("launch", map[string]any{"name": "carol", "tone": carolTone, "url": url})
		d.must("signin", map[string]any{"name": "carol", "user": "carol", "password": "carolpw"})
		d.must("click", map[string]any{"name": "alice", "button": "Video"}) // call with the camera
		d.must("fill", map[string]any{"name": "alice", "label": "Call to", "value": "carol"})
		d.must("click", map[string]any{"name": "alice", "button": "Call"})
		d.must("waitText", map[string]any{"name": "carol", "text": "Incoming call"})
		d.must("click", map[string]any{"name": "carol", "button": "Answer"})
		d.must("waitState", map[string]any{"name": "carol", "text": "In call"})
		d.must("waitState", map[string]any{"name": "alice", "text": "In call"})
		for _, who := range []string{"alice", "carol"} {
			first := d.waitMedia(who, "video decoded", func(s stats) bool { return s.VideoIn != nil && s.VideoIn.FramesDecoded > 10 })
			d.waitMedia(who, "video frames growing", func(s stats) bool { return s.VideoIn.FramesDecoded > first.VideoIn.FramesDecoded+20 })
			d.audioFlowing(who)
		}
		d.shot("alice", filepath.Join(artifacts, "webphone-video-call-alice.png"))
		d.shot("carol", filepath.Join(artifacts, "webphone-video-call-carol.png"))
		// Hang up from the callee's side: both legs end.
		d.must("click", map[string]any{"name": "carol", "button": "Hang up"})
		d.must("waitState", map[string]any{"name": "alice", "text": "Call ended"})
		d.must("click", map[string]any{"name": "alice", "button": "Video"})
		d.must("close", map[string]any{"name": "carol"})
	})

	t.Run("relay only through the switch's TURN", func(t *testing.T) {
		d.t = t
		bob.clearEvents()
		d.must("goto", map[string]any{"name": "alice", "url": url + "?ice=relay"})
		d.must("signin", map[string]any{"name": "alice", "user": "alice", "password": "alicepw"})
		d.must("fill", map[string]any{"name": "alice", "label": "Call to", "value": "bob"})
		d.must("click", map[string]any{"name": "alice", "button": "Call"})
		d.must("waitState", map[string]any{"name": "alice", "text": "In call"})
		bob.waitEvent(t, "CALL_ESTABLISHED", "", 15*time.Second)
		s := d.audioFlowing("alice")
		if s.LocalCandidate == nil || s.LocalCandidate.Type != "relay" {
			b, _ := json.Marshal(s)
			t.Fatalf("the browser's media does not go through TURN: %s", b)
		}
		d.must("click", map[string]any{"name": "alice", "button": "Hang up"})
		bob.waitEvent(t, "CALL_CLOSED", "", 10*time.Second)
		hasTone(t, bob, 440)
	})

	t.Run("call records", func(t *testing.T) {
		rows := sw.cdrs(t)
		answered := map[string]int{}
		for _, r := range rows {
			a := strings.TrimSpace(r["answered"])
			if a == "" || a == "-" {
				continue
			}
			answered[userOf(r["caller"])+">"+userOf(r["callee"])]++
		}
		t.Logf("answered calls: %v", answered)
		if answered["alice>bob"] < 2 || answered["bob>alice"] < 1 || answered["alice>carol"] < 1 {
			t.Fatalf("call records miss calls: %v\n%v", answered, rows)
		}
	})
}

func userOf(s string) string {
	s = strings.TrimPrefix(strings.TrimSpace(s), "sip:")
	u, _, _ := strings.Cut(s, "@")
	return u
}

// httpGet fetches a path of the switch's HTTP listener from inside ns.
func httpGet(t *testing.T, ns, path string) string {
	t.Helper()
	c, err := dialIn(ns, httpAddr)
	if err != nil {
		t.Fatalf("dial %s in %s: %v", httpAddr, ns, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, httpAddr)
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := res.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return b.String()
}

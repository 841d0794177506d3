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

	"github.com/switchboard/switchboard/test/internal/testbed"
)

// Fixed addresses are fine inside a namespace of the test's own.
const (
	domain   = "switchboard.local"
	sipAddr  = "127.0.0.1:5060"
	httpAddr = "127.0.0.1:8080"
	turnPort = 3478
)

// TestMain builds the switchboard binary once for every test (see
// testbed.Main).
func TestMain(m *testing.M) { os.Exit(testbed.Main(m)) }

// requirements returns node and this directory (with node_modules), or
// skips the test (fails it with CI=true) when something is missing.
func requirements(t *testing.T) (node, dir string) {
	t.Helper()
	testbed.RequireNetns(t)
	testbed.RequireBaresip(t)
	testbed.RequireTool(t, "sox")
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return testbed.RequireChromium(t, dir), dir
}

// startSwitch starts the switch binary in ns with the users (name →
// password): UDP and TCP SIP and HTTP on fixed ports, media always relayed,
// TURN on with loopback peers allowed, no failure bans. The webrtc section
// is left at its defaults: enabled, ICE on every address of the namespace
// (only lo), ephemeral ports. SWITCHBOARD_LOG_LEVEL=debug logs a failure's
// details.
func startSwitch(t *testing.T, ns string, users map[string]string) *testbed.Server {
	t.Helper()
	sw := testbed.StartServer(t, testbed.Binary(t), testbed.ServerConfig{
		Domain:      domain,
		Netns:       ns,
		LogLevel:    os.Getenv("SWITCHBOARD_LOG_LEVEL"),
		Listen:      []string{"udp://" + sipAddr, "tcp://" + sipAddr},
		HTTP:        httpAddr,
		MediaRelay:  "always",
		Security:    "auth_failures: 0",
		TURN:        true,
		TURNOptions: fmt.Sprintf("listen: [udp://127.0.0.1:%d, tcp://127.0.0.1:%d], relay_ports: 11000-11399, allow_peers: [127.0.0.0/8]", turnPort, turnPort),
	})
	for u, pw := range users {
		sw.AddUser(t, u, pw)
	}
	return sw
}

// startBaresip runs baresip in ns as user (password user+"pw"), with tone
// as its microphone, answering calls by itself when auto is set.
func startBaresip(t *testing.T, ns, user, tone string, sipPort, ctrlPort int, auto bool) *testbed.Baresip {
	t.Helper()
	answer := "manual"
	if auto {
		answer = "auto"
	}
	return testbed.StartBaresip(t, user, testbed.BaresipConfig{
		User: user, Password: user + "pw", Domain: domain, Proxy: sipAddr,
		AnswerMode: answer, AudioFile: tone, Regint: 600,
		SIPPort: sipPort, CtrlPort: ctrlPort, Netns: ns,
	})
}

// waitEvent waits for an event of type typ (and param, when not empty)
// among those b received since its last ClearEvents.
func waitEvent(t *testing.T, b *testbed.Baresip, typ, param string, timeout time.Duration) testbed.BaresipEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ev, err := b.WaitEvent(ctx, func(ev testbed.BaresipEvent) bool {
		return ev.Type == typ && (param == "" || ev.Param == param)
	})
	if err != nil {
		var seen []string
		for _, ev := range b.Events() {
			seen = append(seen, ev.Type+"("+ev.Param+")")
		}
		t.Fatalf("baresip %s: no %s %s within %s (%v); events: %v", b.Name, typ, param, timeout, err, seen)
	}
	return ev
}

// driver is driver.mjs: headless Chromium under playwright-core, in the
// test's namespace.
type driver struct{ *testbed.Chromium }

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
	d.T.Helper()
	var s stats
	if err := json.Unmarshal(d.Must("stats", map[string]any{"name": name}), &s); err != nil {
		d.T.Fatal(err)
	}
	return s
}

// waitMedia polls getStats until cond holds for the page's call.
func (d *driver) waitMedia(name, what string, cond func(s stats) bool) stats {
	d.T.Helper()
	var last stats
	if !testbed.Poll(20*time.Second, 250*time.Millisecond, func() bool {
		last = d.stats(name)
		return cond(last)
	}) {
		b, _ := json.Marshal(last)
		d.T.Fatalf("%s: %s: not within 20s; last stats %s", name, what, b)
	}
	return last
}

// audioFlowing checks that inbound audio keeps arriving and is not silent.
func (d *driver) audioFlowing(name string) stats {
	d.T.Helper()
	first := d.waitMedia(name, "inbound audio", func(s stats) bool { return s.AudioIn != nil && s.AudioIn.PacketsReceived > 50 })
	return d.waitMedia(name, "inbound audio growing with a level above 0", func(s stats) bool {
		return s.AudioIn != nil && s.AudioIn.PacketsReceived > first.AudioIn.PacketsReceived+50 && s.AudioIn.AudioLevel > 0
	})
}

func (d *driver) shot(name, path string) {
	d.T.Helper()
	d.Must("screenshot", map[string]any{"name": name, "path": path})
}

// hasTone checks the newest recording of b holds freq Hz.
func hasTone(t *testing.T, b *testbed.Baresip, freq float64) {
	t.Helper()
	var files []string
	if !testbed.Eventually(t, 5*time.Second, func() bool { files = b.ReceivedAudio(); return len(files) > 0 },
		"baresip "+b.Name+" records what it received") {
		t.FailNow()
	}
	f := files[len(files)-1]
	w, err := testbed.ReadWAV(f)
	if err != nil {
		t.Fatal(err)
	}
	tone := testbed.MeasureTone(w, freq)
	t.Logf("%s: %.1fs, active %.0f%%, %.0f Hz share %.2f", filepath.Base(f), tone.Seconds, 100*tone.Active, freq, tone.Share)
	if tone.Seconds < 1 || tone.Active < 0.5 || tone.Share < 0.5 {
		t.Fatalf("baresip %s did not hear the browser's %.0f Hz tone: %+v", b.Name, freq, tone)
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
	aliceTone := testbed.MakeTone(t, filepath.Join(tones, "alice-440.wav"), 440, 60)
	carolTone := testbed.MakeTone(t, filepath.Join(tones, "carol-660.wav"), 660, 60)
	bobTone := testbed.MakeTone(t, filepath.Join(tones, "bob-1000.wav"), 1000, 60)

	ns := testbed.NewNetns(t, "web")
	sw := startSwitch(t, ns, map[string]string{"alice": "alicepw", "bob": "bobpw", "carol": "carolpw"})
	page := httpGet(t, ns, "/")
	if !strings.Contains(page, "phone.js") {
		t.Fatalf("the switch does not serve the web phone at / (is the gateway wired into cmd/switchboard?):\n%s", page)
	}
	bob := startBaresip(t, ns, "bob", bobTone, 5070, 5090, true)
	bob.WaitRegistered(t, 15*time.Second)
	d := driver{testbed.StartChromium(t, ns, node, dir, "driver.mjs")}
	url := "http://" + httpAddr + "/"
	d.Must("launch", map[string]any{"name": "alice", "tone": aliceTone, "url": url})
	// A wrong password is refused with a clear message.
	d.Must("fill", map[string]any{"name": "alice", "label": "User name", "value": "alice"})
	d.Must("fill", map[string]any{"name": "alice", "label": "Password", "value": "wrong"})
	d.Must("click", map[string]any{"name": "alice", "button": "Sign in"})
	d.Must("waitText", map[string]any{"name": "alice", "text": "Wrong user name or password."})
	d.Must("signin", map[string]any{"name": "alice", "user": "alice", "password": "alicepw"})
	d.shot("alice", filepath.Join(artifacts, "webphone-signed-in.png"))

	t.Run("browser calls baresip", func(t *testing.T) {
		d.T = t
		bob.ClearEvents()
		d.Must("fill", map[string]any{"name": "alice", "label": "Call to", "value": "bob"})
		d.Must("click", map[string]any{"name": "alice", "button": "Call"})
		d.Must("waitState", map[string]any{"name": "alice", "text": "In call"})
		waitEvent(t, bob, "CALL_ESTABLISHED", "", 15*time.Second)
		s := d.audioFlowing("alice")
		t.Logf("alice receives %s: %d packets, level %.3f", s.AudioCodec, s.AudioIn.PacketsReceived, s.AudioIn.AudioLevel)
		d.shot("alice", filepath.Join(artifacts, "webphone-in-call.png"))

		// Hold and resume: re-INVITEs with a=sendonly, then a=sendrecv.
		d.Must("click", map[string]any{"name": "alice", "button": "Hold"})
		d.Must("waitState", map[string]any{"name": "alice", "text": "On hold"})
		if countIn(bob.Log(), "INVITE", "a=sendonly") == 0 {
			t.Errorf("bob got no re-INVITE with a=sendonly")
		}
		d.Must("click", map[string]any{"name": "alice", "button": "Hold"})
		d.Must("waitState", map[string]any{"name": "alice", "text": "In call"})
		if countIn(bob.Log(), "INVITE", "a=sendrecv") < 2 {
			t.Errorf("bob got no re-INVITE with a=sendrecv after the hold")
		}
		// DTMF from the keypad reaches baresip as RFC 4733 events.
		for _, digit := range []string{"1", "2", "#"} {
			d.Must("click", map[string]any{"name": "alice", "button": digit})
			waitEvent(t, bob, "CALL_DTMF_START", digit, 10*time.Second)
		}
		d.Must("click", map[string]any{"name": "alice", "button": "Hang up"})
		waitEvent(t, bob, "CALL_CLOSED", "", 10*time.Second)
		d.Must("waitState", map[string]any{"name": "alice", "text": "Call ended"})
		hasTone(t, bob, 440)
	})

	t.Run("baresip calls browser", func(t *testing.T) {
		d.T = t
		bob.ClearEvents()
		if _, err := bob.Command(context.Background(), "dial", "sip:alice@"+domain); err != nil {
			t.Fatal(err)
		}
		d.Must("waitText", map[string]any{"name": "alice", "text": "Incoming call"})
		d.Must("click", map[string]any{"name": "alice", "button": "Answer"})
		d.Must("waitState", map[string]any{"name": "alice", "text": "In call"})
		waitEvent(t, bob, "CALL_ESTABLISHED", "", 15*time.Second)
		d.audioFlowing("alice")
		time.Sleep(2 * time.Second) // let bob record some of the browser's tone
		if _, err := bob.Command(context.Background(), "hangup", ""); err != nil {
			t.Fatal(err)
		}
		d.Must("waitState", map[string]any{"name": "alice", "text": "Call ended"})
		hasTone(t, bob, 440)
	})

	t.Run("browser to browser video", func(t *testing.T) {
		d.T = t
		d.Must("launch", map[string]any{"name": "carol", "tone": carolTone, "url": url})
		d.Must("signin", map[string]any{"name": "carol", "user": "carol", "password": "carolpw"})
		d.Must("click", map[string]any{"name": "alice", "button": "Video"}) // call with the camera
		d.Must("fill", map[string]any{"name": "alice", "label": "Call to", "value": "carol"})
		d.Must("click", map[string]any{"name": "alice", "button": "Call"})
		d.Must("waitText", map[string]any{"name": "carol", "text": "Incoming call"})
		d.Must("click", map[string]any{"name": "carol", "button": "Answer"})
		d.Must("waitState", map[string]any{"name": "carol", "text": "In call"})
		d.Must("waitState", map[string]any{"name": "alice", "text": "In call"})
		for _, who := range []string{"alice", "carol"} {
			first := d.waitMedia(who, "video decoded", func(s stats) bool { return s.VideoIn != nil && s.VideoIn.FramesDecoded > 10 })
			d.waitMedia(who, "video frames growing", func(s stats) bool { return s.VideoIn.FramesDecoded > first.VideoIn.FramesDecoded+20 })
			d.audioFlowing(who)
		}
		d.shot("alice", filepath.Join(artifacts, "webphone-video-call-alice.png"))
		d.shot("carol", filepath.Join(artifacts, "webphone-video-call-carol.png"))
		// Hang up from the callee's side: both legs end.
		d.Must("click", map[string]any{"name": "carol", "button": "Hang up"})
		d.Must("waitState", map[string]any{"name": "alice", "text": "Call ended"})
		d.Must("click", map[string]any{"name": "alice", "button": "Video"})
		d.Must("close", map[string]any{"name": "carol"})
	})

	t.Run("relay only through the switch's TURN", func(t *testing.T) {
		d.T = t
		bob.ClearEvents()
		d.Must("goto", map[string]any{"name": "alice", "url": url + "?ice=relay"})
		d.Must("signin", map[string]any{"name": "alice", "user": "alice", "password": "alicepw"})
		d.Must("fill", map[string]any{"name": "alice", "label": "Call to", "value": "bob"})
		d.Must("click", map[string]any{"name": "alice", "button": "Call"})
		d.Must("waitState", map[string]any{"name": "alice", "text": "In call"})
		waitEvent(t, bob, "CALL_ESTABLISHED", "", 15*time.Second)
		s := d.audioFlowing("alice")
		if s.LocalCandidate == nil || s.LocalCandidate.Type != "relay" {
			b, _ := json.Marshal(s)
			t.Fatalf("the browser's media does not go through TURN: %s", b)
		}
		d.Must("click", map[string]any{"name": "alice", "button": "Hang up"})
		waitEvent(t, bob, "CALL_CLOSED", "", 10*time.Second)
		hasTone(t, bob, 440)
	})

	t.Run("call records", func(t *testing.T) {
		rows := sw.CDRs(t)
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
	c, err := testbed.DialIn(ns, httpAddr)
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

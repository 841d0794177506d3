//go:build linux

package browser

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/test/internal/testbed"
)

// Tones of the parties of TestSIPClients, in Hz: each one's microphone, so
// that what a party hears tells who sent it.
const (
	aliceHz = 440  // JsSIP (oscillator)
	carolHz = 520  // JsSIP (oscillator)
	daveHz  = 880  // SIP.js (oscillator)
	erinHz  = 660  // the web phone (Chromium's fake microphone file)
	bobHz   = 1000 // baresip (its audio file)
)

// TestSIPClients is issue 9's proof that browser SIP stacks work through the
// switch's WebRTC relay, on the shipped configuration (only addresses and
// ports changed; media.relay is the shipped "always"): JsSIP 3.13 and SIP.js
// 0.21 in headless Chromium register over ws://…/sip on the shipped digest
// defaults and call baresip, baresip calls them, SIP.js calls JsSIP, JsSIP
// and the web phone call each other, and two JsSIP tabs make a video call.
// Every call carries each side's tone to the other (measured by frequency:
// an FFT of the page's received track, Goertzel on baresip's recording),
// the SDP a browser gets names the relay (ice-lite, its fingerprint, its
// candidate on a port of media.rtp_ports) and its selected ICE pair ends
// there, and the call record has packets on both legs. One switch, one
// Chromium (a context per user) and one baresip serve every subtest, in a
// namespace with only lo.
func TestSIPClients(t *testing.T) {
	node, dir := requirements(t)
	for _, pkg := range []string{"jssip", "sip.js", "esbuild"} {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", pkg, "package.json")); err != nil {
			if testbed.InCI() {
				t.Fatalf("%s is not installed in %s (CI=true): run test/install.sh", pkg, dir)
			}
			t.Skipf("%s is not installed in %s: run test/install.sh", pkg, dir)
		}
	}
	artifacts := filepath.Join(filepath.Dir(filepath.Dir(dir)), "test", "artifacts")
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	tones := t.TempDir()
	erinTone := testbed.MakeTone(t, filepath.Join(tones, "erin-660.wav"), erinHz, 120)
	bobTone := testbed.MakeTone(t, filepath.Join(tones, "bob-1000.wav"), bobHz, 120)

	ns := testbed.NewNetns(t, "sipclients")
	d := &clients{Chromium: testbed.StartChromium(t, ns, node, dir, "sipclients.mjs")}
	var origin string
	if err := json.Unmarshal(d.Must("serve", map[string]any{"host": "127.0.0.1", "port": 0}), &origin); err != nil {
		t.Fatal(err)
	}
	d.Must("launch", map[string]any{"tone": erinTone})
	sw := testbed.StartServer(t, testbed.Binary(t), testbed.ServerConfig{
		Domain:   domain,
		Netns:    ns,
		LogLevel: os.Getenv("SWITCHBOARD_LOG_LEVEL"),
		Listen:   []string{"udp://" + sipAddr, "tcp://" + sipAddr},
		HTTP:     httpAddr,
		// The test page is another origin than the switch's.
		HTTPOptions: "allowed_origins: [" + origin + "]",
	})
	addUsers(t, sw, "alice", "bob", "carol", "dave", "erin")
	rec := &records{sw: sw, seen: map[string]bool{}}
	rec.lo, rec.hi = rtpPorts(t, sw)
	bob := startBaresip(t, ns, "bob", bobTone, 5070, 5090, true)

	wsURL := "ws://" + httpAddr + "/sip"
	for _, u := range []struct{ name, fn string }{{"alice", "jssipStart"}, {"carol", "jssipStart"}, {"dave", "sipjsStart"}} {
		d.Must("open", map[string]any{"name": u.name, "url": origin + "/"})
		var detail string
		d.run(u.name, u.fn, map[string]any{"url": wsURL, "user": u.name, "password": u.name + "pw", "domain": domain}, &detail)
		t.Logf("%s (%s) over %s: %s", u.name, strings.TrimSuffix(u.fn, "Start"), wsURL, detail)
	}
	d.Must("open", map[string]any{"name": "erin", "url": "http://" + httpAddr + "/"})
	d.Must("signin", map[string]any{"name": "erin", "user": "erin", "password": "erinpw"})
	bob.WaitRegistered(t, 15*time.Second)
	uri := func(u string) string { return "sip:" + u + "@" + domain }
	// A failed subtest leaves its call up: end it, so that the next one
	// starts idle (and the switch drains at once at the end).
	idle := func(t *testing.T) {
		t.Cleanup(func() {
			if !t.Failed() {
				return
			}
			for _, u := range []string{"alice", "carol", "dave"} {
				_, _ = d.Do("t", map[string]any{"name": u, "fn": "reset", "arg": map[string]any{}})
			}
			_, _ = d.Do("click", map[string]any{"name": "erin", "button": "Hang up", "timeout": 1000})
			_, _ = bob.Command(context.Background(), "hangup", "")
		})
	}

	t.Run("JsSIP calls baresip", func(t *testing.T) {
		d.T = t
		idle(t)
		for _, hangup := range []string{"caller", "callee"} {
			bob.ClearEvents()
			before := bob.ReceivedAudio()
			d.run("alice", "call", map[string]any{"target": uri("bob"), "freq": aliceHz}, nil)
			d.run("alice", "waitConfirmed", nil, nil)
			waitEvent(t, bob, "CALL_ESTABLISHED", "", 15*time.Second)
			rec.relayed(t, d, "alice", "")
			d.hears(t, "alice", "", bobHz)
			rec.recording(t, bob, before)
			if hangup == "caller" {
				d.run("alice", "hangup", nil, nil)
				waitEvent(t, bob, "CALL_CLOSED", "", 10*time.Second)
			} else {
				if _, err := bob.Command(context.Background(), "hangup", ""); err != nil {
					t.Fatal(err)
				}
				d.ended(t, "alice", "remote")
			}
			heard(t, bob, before, aliceHz)
			rec.next(t, "alice", "bob", hangup, 1)
		}
	})

	t.Run("baresip calls JsSIP", func(t *testing.T) {
		d.T = t
		idle(t)
		for _, hangup := range []string{"callee", "caller"} {
			bob.ClearEvents()
			before := bob.ReceivedAudio()
			if _, err := bob.Command(context.Background(), "dial", uri("alice")); err != nil {
				t.Fatal(err)
			}
			d.run("alice", "answer", map[string]any{"freq": aliceHz}, nil)
			waitEvent(t, bob, "CALL_ESTABLISHED", "", 15*time.Second)
			rec.relayed(t, d, "alice", "")
			d.hears(t, "alice", "", bobHz)
			rec.recording(t, bob, before)
			if hangup == "callee" {
				d.run("alice", "hangup", nil, nil)
				waitEvent(t, bob, "CALL_CLOSED", "", 10*time.Second)
			} else {
				if _, err := bob.Command(context.Background(), "hangup", ""); err != nil {
					t.Fatal(err)
				}
				d.ended(t, "alice", "remote")
			}
			heard(t, bob, before, aliceHz)
			rec.next(t, "bob", "alice", hangup, 1)
		}
	})

	t.Run("SIP.js calls JsSIP through the relay", func(t *testing.T) {
		d.T = t
		idle(t)
		d.run("dave", "call", map[string]any{"target": uri("alice"), "freq": daveHz}, nil)
		d.run("alice", "answer", map[string]any{"freq": aliceHz}, nil)
		d.run("dave", "waitConfirmed", nil, nil)
		// Each browser's ICE pair ends on a relay port of its own: the
		// relay terminates both legs, they do not reach each other.
		pd := rec.relayed(t, d, "dave", "")
		pa := rec.relayed(t, d, "alice", "")
		if pd == pa {
			t.Errorf("dave and alice both send to relay port %d", pd)
		}
		d.hears(t, "alice", "", daveHz)
		d.hears(t, "dave", "", aliceHz)
		d.run("dave", "hangup", nil, nil)
		d.ended(t, "alice", "remote")
		rec.next(t, "dave", "alice", "caller", 1)
	})

	t.Run("JsSIP and the web phone call each other", func(t *testing.T) {
		d.T = t
		idle(t)
		d.run("alice", "call", map[string]any{"target": uri("erin"), "freq": aliceHz}, nil)
		d.Must("waitText", map[string]any{"name": "erin", "text": "Incoming call"})
		d.Must("click", map[string]any{"name": "erin", "button": "Answer"})
		d.Must("waitState", map[string]any{"name": "erin", "text": "In call"})
		d.run("alice", "waitConfirmed", nil, nil)
		rec.relayed(t, d, "alice", "")
		d.hears(t, "alice", "", erinHz)
		d.hears(t, "erin", "webphone", aliceHz)
		d.shot("erin", filepath.Join(artifacts, "webphone-jssip-call.png"))
		d.run("alice", "hangup", nil, nil)
		d.Must("waitState", map[string]any{"name": "erin", "text": "Call ended"})
		rec.next(t, "alice", "erin", "caller", 1)

		d.Must("fill", map[string]any{"name": "erin", "label": "Call to", "value": "alice"})
		d.Must("click", map[string]any{"name": "erin", "button": "Call"})
		d.run("alice", "answer", map[string]any{"freq": aliceHz}, nil)
		d.Must("waitState", map[string]any{"name": "erin", "text": "In call"})
		rec.relayed(t, d, "alice", "")
		d.hears(t, "alice", "", erinHz)
		d.hears(t, "erin", "webphone", aliceHz)
		d.Must("click", map[string]any{"name": "erin", "button": "Hang up"})
		d.ended(t, "alice", "remote")
		rec.next(t, "erin", "alice", "caller", 1)
	})

	t.Run("JsSIP video call to JsSIP", func(t *testing.T) {
		d.T = t
		idle(t)
		d.run("alice", "call", map[string]any{"target": uri("carol"), "freq": aliceHz, "video": true}, nil)
		d.run("carol", "answer", map[string]any{"freq": carolHz, "video": true}, nil)
		d.run("alice", "waitConfirmed", nil, nil)
		for _, who := range []string{"alice", "carol"} {
			rec.relayed(t, d, who, "")
			first := d.waitStats(t, who, "video decoded", func(s clientStats) bool { return s.VideoIn != nil && s.VideoIn.FramesDecoded > 10 })
			last := d.waitStats(t, who, "video frames growing", func(s clientStats) bool { return s.VideoIn.FramesDecoded > first.VideoIn.FramesDecoded+20 })
			t.Logf("%s: %d video frames decoded, %d audio packets received", who, last.VideoIn.FramesDecoded, packets(last.AudioIn))
		}
		d.hears(t, "alice", "", carolHz)
		d.hears(t, "carol", "", aliceHz)
		d.run("carol", "hangup", nil, nil)
		d.ended(t, "alice", "remote")
		rec.next(t, "alice", "carol", "callee", 2)
	})

	// Hold and resume, video added, early media, garbage on a WebRTC port,
	// and browsers calling each other with relay nat and never
	// (sipclients_more_test.go), on the same Chromium, switch and baresip.
	(&sipRig{d: d, ns: ns, origin: origin, dir: dir, sw: sw, rec: rec, bob: bob, idle: idle}).more(t)

	// What baresip was sent (its -s trace) is plain RTP, without a trace
	// of the browsers' ICE and DTLS.
	trace := testbed.StripANSI(bob.Log())
	for _, l := range []string{"UDP/TLS/RTP/SAVPF", "a=ice-ufrag", "a=fingerprint", "a=candidate", "a=setup"} {
		if strings.Contains(trace, l) {
			t.Errorf("baresip, a plain RTP phone, was sent SDP with %q", l)
		}
	}
	if !strings.Contains(trace, " RTP/AVP ") {
		t.Errorf("baresip's trace has no RTP/AVP m-line")
	}
}

// addUsers creates the users (password: name+"pw") with the CLI, a few at a
// time.
func addUsers(t *testing.T, sw *testbed.Server, names ...string) {
	t.Helper()
	errs := make(chan error, len(names))
	sem := make(chan struct{}, 3)
	var wg sync.WaitGroup
	for _, u := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if _, err := sw.CLI(context.Background(), "user", "add", u, "--password", u+"pw"); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// clients is sipclients.mjs: one headless Chromium, a context per user.
type clients struct{ *testbed.Chromium }

// run calls window.t[fn](arg) in the page of name and decodes its result
// into out (unless nil).
func (d *clients) run(name, fn string, arg map[string]any, out any) {
	d.T.Helper()
	r := d.Must("t", map[string]any{"name": name, "fn": fn, "arg": arg})
	if out != nil {
		if err := json.Unmarshal(r, out); err != nil {
			d.T.Fatalf("%s %s: %v: %s", name, fn, err, r)
		}
	}
}

func (d *clients) shot(name, path string) {
	d.T.Helper()
	d.Must("screenshot", map[string]any{"name": name, "path": path})
}

// clientStats is the page's summary of getStats() for its call.
type clientStats struct {
	Connection string     `json:"connection"`
	AudioIn    *rtpIn     `json:"audioIn"`
	VideoIn    *rtpIn     `json:"videoIn"`
	Local      *candidate `json:"local"`
	Remote     *candidate `json:"remote"`
	AudioCodec string     `json:"audioCodec"`
}

type candidate struct {
	Type    string `json:"type"`
	Address string `json:"address"`
	Port    int    `json:"port"`
}

func packets(r *rtpIn) int64 {
	if r == nil {
		return 0
	}
	return r.PacketsReceived
}

func (d *clients) stats(name, pc string) clientStats {
	d.T.Helper()
	var s clientStats
	d.run(name, "stats", map[string]any{"pc": pc}, &s)
	return s
}

// waitStats polls the page's getStats until cond holds.
func (d *clients) waitStats(t *testing.T, name, what string, cond func(clientStats) bool) clientStats {
	t.Helper()
	var last clientStats
	if !testbed.Poll(20*time.Second, 250*time.Millisecond, func() bool {
		last = d.stats(name, "")
		return cond(last)
	}) {
		b, _ := json.Marshal(last)
		t.Fatalf("%s: %s: not within 20s; last stats %s", name, what, b)
	}
	return last
}

// toneResult is window.t.measureTone's answer.
type toneResult struct {
	Samples int     `json:"samples"`
	Hits    int     `json:"hits"`
	Peaks   []int   `json:"peaks"`
	MaxDB   float64 `json:"maxDb"`
	BinHz   float64 `json:"binHz"`
	Context string  `json:"context"`
}

// hears checks that the page of name receives a tone of freq Hz (pc
// "webphone": on the web phone's call): in at least two thirds of the FFT
// windows of a 1.5 s measurement, retried for up to four measurements while
// the audio settles.
func (d *clients) hears(t *testing.T, name, pc string, freq float64) {
	t.Helper()
	var m toneResult
	for range 4 {
		d.run(name, "measureTone", map[string]any{"freq": freq, "ms": 1500, "pc": pc}, &m)
		if m.Samples > 0 && 3*m.Hits >= 2*m.Samples {
			t.Logf("%s hears %.0f Hz in %d of %d windows (peak %.0f dB)", name, freq, m.Hits, m.Samples, m.MaxDB)
			return
		}
	}
	b, _ := json.Marshal(d.stats(name, pc))
	t.Fatalf("%s does not hear %.0f Hz: %d of %d FFT windows peak there (peaks %v Hz, max %.0f dB, audio context %s); stats %s",
		name, freq, m.Hits, m.Samples, m.Peaks, m.MaxDB, m.Context, b)
}

// ended waits for the current call of name to end, from originator's side.
func (d *clients) ended(t *testing.T, name, originator string) {
	t.Helper()
	var e struct {
		How        string `json:"how"`
		Originator string `json:"originator"`
		Cause      string `json:"cause"`
	}
	d.run(name, "waitEnded", nil, &e)
	if e.How != "ended" || e.Originator != originator {
		t.Errorf("%s's call ended %+v, want ended by %s", name, e, originator)
	}
}

// records checks what the switch recorded and relayed.
type records struct {
	sw     *testbed.Server
	seen   map[string]bool // Call-IDs already checked
	lo, hi int             // media.rtp_ports
}

// rtpPorts returns media.rtp_ports of the server's config.
func rtpPorts(t *testing.T, sw *testbed.Server) (lo, hi int) {
	t.Helper()
	b, err := os.ReadFile(sw.Config)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`rtp_ports: (\d+)-(\d+)`).FindStringSubmatch(string(b))
	if m == nil {
		t.Fatalf("no rtp_ports in %s", sw.Config)
	}
	lo, _ = strconv.Atoi(m[1])
	hi, _ = strconv.Atoi(m[2])
	return lo, hi
}

var (
	mLine     = regexp.MustCompile(`(?m)^m=(audio|video) (\d+) (\S+) `)
	candLine  = regexp.MustCompile(`(?mi)^a=candidate:\S+ 1 udp \d+ (\S+) (\d+) typ (\S+)`)
	legPkts   = regexp.MustCompile(`m(\d+) (caller|callee): pkts=(\d+)`)
	sipUser   = regexp.MustCompile(`sip:([^@;>]+)@`)
	relayOnly = []string{"a=ice-lite", "a=fingerprint:sha-256 ", "a=rtcp-mux", "a=end-of-candidates"}
)

// relayed checks that the SDP the page of name was given is the relay's
// (ice-lite, a fingerprint, c= and one host candidate per m-line on
// 127.0.0.1 and a port of media.rtp_ports), and that its selected ICE pair
// ends at the first m-line's port. It returns that port.
func (r *records) relayed(t *testing.T, d *clients, name, pc string) int {
	t.Helper()
	var sdp struct {
		Remote string `json:"remote"`
	}
	d.run(name, "sdp", map[string]any{"pc": pc}, &sdp)
	bad := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("%s: the SDP it got is not the relay's: %s\n%s", name, fmt.Sprintf(format, args...), sdp.Remote)
	}
	for _, l := range relayOnly {
		if !strings.Contains(sdp.Remote, l) {
			t.Errorf("%s: the SDP it got has no %q (the relay's SDP has it):\n%s", name, l, sdp.Remote)
		}
	}
	if !strings.Contains(sdp.Remote, "c=IN IP4 127.0.0.1") {
		bad("c= is not the relay's 127.0.0.1")
	}
	ms := mLine.FindAllStringSubmatch(sdp.Remote, -1)
	if len(ms) == 0 {
		bad("no m-line")
	}
	var ports []int
	for _, m := range ms {
		p, _ := strconv.Atoi(m[2])
		if m[3] != "UDP/TLS/RTP/SAVPF" || p < r.lo || p > r.hi {
			bad("m=%s port %s proto %s: want UDP/TLS/RTP/SAVPF on a port of %d-%d", m[1], m[2], m[3], r.lo, r.hi)
		}
		ports = append(ports, p)
	}
	for _, c := range candLine.FindAllStringSubmatch(sdp.Remote, -1) {
		p, _ := strconv.Atoi(c[2])
		if c[1] != "127.0.0.1" || c[3] != "host" || !slices.Contains(ports, p) {
			bad("candidate %s %s typ %s is not one of the relay's ports %v", c[1], c[2], c[3], ports)
		}
	}
	if n := len(candLine.FindAllString(sdp.Remote, -1)); n < len(ports) {
		bad("%d candidates for %d m-lines", n, len(ports))
	}
	var s clientStats
	if !testbed.Poll(10*time.Second, 200*time.Millisecond, func() bool {
		s = d.stats(name, pc)
		return s.Remote != nil && s.Local != nil
	}) {
		t.Fatalf("%s: no selected ICE candidate pair within 10s: %+v", name, s)
	}
	if s.Remote.Address != "127.0.0.1" || s.Remote.Port != ports[0] {
		t.Fatalf("%s: media goes to %s:%d, not to the relay's 127.0.0.1:%d", name, s.Remote.Address, s.Remote.Port, ports[0])
	}
	t.Logf("%s: relay ports %v, ICE pair %s:%d (%s) -> %s:%d", name, ports, s.Local.Address, s.Local.Port, s.Local.Type, s.Remote.Address, s.Remote.Port)
	return ports[0]
}

// recording waits until baresip has recorded 2 s of the call's audio (a new
// file beside those of before).
func (r *records) recording(t *testing.T, b *testbed.Baresip, before []string) {
	t.Helper()
	var size int64
	if !testbed.Poll(15*time.Second, 100*time.Millisecond, func() bool {
		size = 0
		for _, f := range newFiles(b, before) {
			if st, err := os.Stat(f); err == nil {
				size += st.Size()
			}
		}
		return size >= 44+2*2*8000
	}) {
		t.Fatalf("baresip %s recorded %d bytes of the call within 15s, want 2 s of audio", b.Name, size)
	}
}

func newFiles(b *testbed.Baresip, before []string) []string {
	var out []string
	for _, f := range b.ReceivedAudio() {
		if !slices.Contains(before, f) {
			out = append(out, f)
		}
	}
	return out
}

// heard checks baresip's recording of the last call (the file that is not
// in before) holds freq Hz.
func heard(t *testing.T, b *testbed.Baresip, before []string, freq float64) {
	t.Helper()
	files := newFiles(b, before)
	if len(files) != 1 {
		t.Fatalf("baresip %s: %d new recordings %v, want 1", b.Name, len(files), files)
	}
	w, err := testbed.ReadWAV(files[0])
	if err != nil {
		t.Fatal(err)
	}
	tone := testbed.MeasureTone(w, freq)
	t.Logf("baresip %s: %s: %.1fs, active %.0f%%, %.0f Hz share %.2f", b.Name, filepath.Base(files[0]), tone.Seconds, 100*tone.Active, freq, tone.Share)
	if tone.Seconds < 1.5 || tone.Active < 0.5 || tone.Share < 0.5 {
		t.Fatalf("baresip %s did not hear the browser's %.0f Hz tone: %+v", b.Name, freq, tone)
	}
}

// next waits for the record of the call from caller to callee that ended
// last and was not checked yet: answered, hung up by hangupBy, with RTP
// packets on both legs of each of its first streams m-lines. It returns
// the record.
func (r *records) next(t *testing.T, caller, callee, hangupBy string, streams int) testbed.CDR {
	t.Helper()
	var row testbed.CDR
	var rows []testbed.CDR
	if !testbed.Poll(10*time.Second, 100*time.Millisecond, func() bool {
		rows = r.sw.CDRs(t)
		for _, c := range rows {
			if r.seen[c["call-id"]] || userIn(c["caller"]) != caller || userIn(c["callee"]) != callee || strings.TrimSpace(c["ended"]) == "-" {
				continue
			}
			row = c
			return true
		}
		return false
	}) {
		t.Fatalf("no ended record of a call %s -> %s within 10s:\n%v", caller, callee, rows)
	}
	r.seen[row["call-id"]] = true
	t.Logf("record %s -> %s: status %s, hangup-by %s, media %s", caller, callee, row["status"], row["hangup-by"], row["media"])
	if !row.Answered() {
		t.Errorf("the call %s -> %s is not recorded answered: %v", caller, callee, row)
	}
	if row["hangup-by"] != hangupBy {
		t.Errorf("the call %s -> %s is recorded hung up by %q, want %q", caller, callee, row["hangup-by"], hangupBy)
	}
	got := map[string]int{}
	for _, m := range legPkts.FindAllStringSubmatch(row["media"], -1) {
		n, _ := strconv.Atoi(m[3])
		got["m"+m[1]+" "+m[2]] = n
	}
	for i := range streams {
		for _, leg := range []string{"caller", "callee"} {
			if k := fmt.Sprintf("m%d %s", i, leg); got[k] == 0 {
				t.Errorf("the record of %s -> %s has no packets for %s: media %q", caller, callee, k, row["media"])
			}
		}
	}
	return row
}

// userIn returns the user part of the first SIP URI in s.
func userIn(s string) string {
	if m := sipUser.FindStringSubmatch(s); m != nil {
		return m[1]
	}
	return userOf(s)
}

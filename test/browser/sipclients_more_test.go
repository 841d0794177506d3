//go:build linux

package browser

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/switchboard/switchboard/test/internal/testbed"
)

// The SIPp callee of the early-media subtest: its tone (tone.pcap, PCMU)
// and addresses in the namespace.
const (
	samHz      = 750
	samSIP     = 5080
	samMedia   = 6000
	earlyPause = 6 * time.Second // between SIPp's 183 and its 200
)

// A second switch in the namespace, for the relay modes other than the
// shipped "always", and a baresip registered with it.
const (
	altSIP  = "127.0.0.1:5062"
	altHTTP = "127.0.0.1:8082"
)

// sipRig is what TestSIPClients shares with the subtests of this file: its
// Chromium (a context per user: alice and carol on JsSIP, registered), its
// switch (relay always) and its baresip (bob, answering by itself).
type sipRig struct {
	d      *clients
	ns     string
	origin string // the JsSIP test page's origin
	dir    string // test/browser
	sw     *testbed.Server
	rec    *records
	bob    *testbed.Baresip
	idle   func(t *testing.T) // ends a failed subtest's call
}

// more runs the pairings of issue 9 that the subtests of TestSIPClients do
// not: re-INVITEs (hold and resume, video added) keep a call's relay legs,
// early media from a 183 reaches the browser before the 200, garbage on a
// WebRTC leg's port changes nothing but the drop counters, and two browsers
// with relay nat or never talk to each other directly.
func (r *sipRig) more(t *testing.T) {
	t.Run("JsSIP holds and resumes a call to baresip", r.holdResume)
	t.Run("JsSIP adds video to a call to JsSIP", r.videoAdded)
	t.Run("early media from a SIPp 183", r.earlyMedia)
	t.Run("garbage on a WebRTC leg's port", r.garbage)
	for _, mode := range []string{"nat", "never"} {
		t.Run("JsSIP calls JsSIP with relay "+mode, func(t *testing.T) { r.direct(t, mode) })
	}
}

func userURI(user string) string { return "sip:" + user + "@" + domain }

// callInfo is the page's t.callInfo(): what its current call went through.
type callInfo struct {
	CallID         string          `json:"callId"`
	Confirmed      bool            `json:"confirmed"`
	EndInfo        json.RawMessage `json:"endInfo"`
	ProgressAt     int64           `json:"progressAt"` // ms since the epoch, page clock; 0: none
	ProgressStatus int             `json:"progressStatus"`
	AcceptedAt     int64           `json:"acceptedAt"`
	Now            int64           `json:"now"`
	RemoteSDPs     []sdpEvent      `json:"remoteSdps"`
	LocalSDPs      []sdpEvent      `json:"localSdps"`
}

type sdpEvent struct {
	Type string `json:"type"`
	SDP  string `json:"sdp"`
	At   int64  `json:"at"`
}

func (d *clients) callInfo(name string) callInfo {
	d.T.Helper()
	var c callInfo
	d.run(name, "callInfo", nil, &c)
	return c
}

// lastRemote is the SDP the call's last remote SDP event carried.
func (c callInfo) lastRemote(t *testing.T) string {
	t.Helper()
	if len(c.RemoteSDPs) == 0 {
		t.Fatal("the call has had no SDP from the other side")
	}
	return c.RemoteSDPs[len(c.RemoteSDPs)-1].SDP
}

// lastLocal is the last SDP of type typ the page made.
func (c callInfo) lastLocal(t *testing.T, typ string) string {
	t.Helper()
	for i := len(c.LocalSDPs) - 1; i >= 0; i-- {
		if c.LocalSDPs[i].Type == typ {
			return c.LocalSDPs[i].SDP
		}
	}
	t.Fatalf("the page made no %s", typ)
	return ""
}

var (
	iceUfrag  = regexp.MustCompile(`(?m)^a=ice-ufrag:(\S+)`)
	direction = regexp.MustCompile(`(?m)^a=(sendrecv|sendonly|recvonly|inactive)\r?$`)
	allCands  = regexp.MustCompile(`(?m)^a=candidate:[^\r\n]*`)
	callIDHdr = regexp.MustCompile(`(?mi)^(?:Call-ID|i):\s*(\S+)`)
)

// mPorts returns the m-lines of an SDP as kind → port ("audio", "video").
func mPorts(sdp string) map[string]int {
	out := map[string]int{}
	for _, m := range mLine.FindAllStringSubmatch(sdp, -1) {
		p, _ := strconv.Atoi(m[2])
		out[m[1]] = p
	}
	return out
}

// mediaDirection is the a= direction of an SDP's first m-line that has
// one (sendrecv when none: RFC 4566 §6).
func mediaDirection(sdp string) string {
	if m := direction.FindStringSubmatch(sdp); m != nil {
		return m[1]
	}
	return "sendrecv"
}

func ufragOf(sdp string) string {
	if m := iceUfrag.FindStringSubmatch(sdp); m != nil {
		return m[1]
	}
	return ""
}

// holdResume: JsSIP calls baresip, puts it on hold (re-INVITE a=sendonly)
// and resumes it (re-INVITE sendrecv). Both re-INVITEs keep the relay's
// legs: JsSIP's answers name the same relay port and ICE credentials (no
// ICE restart, its ICE pair stays on that port), baresip's re-INVITEs the
// same relay port as its INVITE; after the resume each side hears the other
// again, and the switch recorded one call. What baresip hears after the
// resume is read off the wire (tcpdump on lo): baresip 1.0.0 stops
// recording a call's received audio at its first re-INVITE, relay or not
// (seen with two baresips), while it goes on receiving it.
func (r *sipRig) holdResume(t *testing.T) {
	d, bob := r.d, r.bob
	d.T = t
	r.idle(t)
	testbed.RequireTool(t, "tcpdump")
	bob.ClearEvents()
	before := bob.ReceivedAudio()
	d.run("alice", "call", map[string]any{"target": userURI("bob"), "freq": aliceHz}, nil)
	d.run("alice", "waitConfirmed", nil, nil)
	waitEvent(t, bob, "CALL_ESTABLISHED", "", 15*time.Second)
	port := r.rec.relayed(t, d, "alice", "")
	first := d.callInfo("alice")
	callID := first.CallID
	ufrag := ufragOf(first.lastRemote(t))
	d.hears(t, "alice", "", bobHz)
	r.rec.recording(t, bob, before)

	// same checks that an answer to a re-INVITE is the relay's first one
	// again, with the direction want.
	same := func(what, want string) {
		t.Helper()
		sdp := d.callInfo("alice").lastRemote(t)
		if p := mPorts(sdp)["audio"]; p != port {
			t.Errorf("%s: the answer names relay port %d, the call's was %d:\n%s", what, p, port, sdp)
		}
		if u := ufragOf(sdp); u != ufrag {
			t.Errorf("%s: the answer's ice-ufrag is %q, the call's was %q (an ICE restart)", what, u, ufrag)
		}
		if got := mediaDirection(sdp); got != want {
			t.Errorf("%s: the answer says a=%s, want a=%s:\n%s", what, got, want, sdp)
		}
	}
	n := len(first.RemoteSDPs)
	d.run("alice", "hold", nil, nil)
	same("hold", "recvonly")
	// What a held party sends is its own business (JsSIP mutes its
	// microphone): logged, not checked.
	var m toneResult
	d.run("alice", "measureTone", map[string]any{"freq": bobHz, "ms": 800}, &m)
	t.Logf("on hold alice hears %.0f Hz in %d of %d windows (max %.0f dB)", float64(bobHz), m.Hits, m.Samples, m.MaxDB)

	d.run("alice", "unhold", nil, nil)
	same("resume", "sendrecv")
	if got := len(d.callInfo("alice").RemoteSDPs); got != n+2 {
		t.Errorf("alice got %d SDPs after hold and resume, want %d (one answer each)", got, n+2)
	}
	if p := r.rec.relayed(t, d, "alice", ""); p != port {
		t.Errorf("after the resume alice's ICE pair ends at relay port %d, the call's was %d", p, port)
	}
	d.hears(t, "alice", "", bobHz)

	// baresip's side: the INVITE and both re-INVITEs offered the same
	// relay port, the hold one a=sendonly; its answer to the resume names
	// its RTP port, where the relay sends alice's tone again.
	invites := callMessages(bob, callID, "INVITE ", false)
	answers := callMessages(bob, callID, "SIP/2.0 200", true)
	if len(invites) != 3 || len(answers) < 3 {
		t.Fatalf("baresip's trace has %d INVITEs of call %s and %d 200s from it, want 3 each (the call, hold, resume):\n%s",
			len(invites), callID, len(answers), testbed.Tail(testbed.StripANSI(bob.Log()), 120))
	}
	ports := make([]int, len(invites))
	for i, inv := range invites {
		ports[i] = mPorts(inv)["audio"]
	}
	t.Logf("relay port towards baresip in the INVITE, hold and resume: %v; towards alice: %d", ports, port)
	if ports[0] < r.rec.lo || ports[0] > r.rec.hi || ports[1] != ports[0] || ports[2] != ports[0] {
		t.Errorf("the relay ports offered to baresip are %v: want one port of %d-%d throughout", ports, r.rec.lo, r.rec.hi)
	}
	if got := mediaDirection(invites[1]); got != "sendonly" {
		t.Errorf("baresip's hold re-INVITE says a=%s, want a=sendonly:\n%s", got, invites[1])
	}
	var resumed string
	for _, a := range answers {
		if strings.Contains(a, " INVITE") && strings.Contains(a, "m=audio") {
			resumed = a // the last 200 to an INVITE with SDP
		}
	}
	tone := capturedTone(t, r.ns, mPorts(resumed)["audio"], aliceHz)
	if tone.Seconds < 1.5 || tone.Active < 0.5 || tone.Share < 0.5 {
		t.Errorf("after the resume the relay does not send baresip alice's %d Hz tone: %+v", aliceHz, tone)
	}

	d.run("alice", "hangup", nil, nil)
	waitEvent(t, bob, "CALL_CLOSED", "", 10*time.Second)
	r.rec.next(t, "alice", "bob", "caller", 1)
	if n := recordsOf(t, r.sw, callID); n != 1 {
		t.Errorf("the switch has %d records of call %s (held and resumed), want 1", n, callID)
	}
}

// videoAdded: alice (JsSIP) makes an audio call to carol (JsSIP) through
// the relay, then adds her camera and renegotiates: the re-INVITE's offer
// has a new m=video, which the relay anchors on a new port pair while the
// audio keeps its ports; carol decodes alice's video, and the audio goes
// on both ways.
func (r *sipRig) videoAdded(t *testing.T) {
	d := r.d
	d.T = t
	r.idle(t)
	d.run("alice", "call", map[string]any{"target": userURI("carol"), "freq": aliceHz}, nil)
	d.run("carol", "answer", map[string]any{"freq": carolHz}, nil)
	d.run("alice", "waitConfirmed", nil, nil)
	pa := r.rec.relayed(t, d, "alice", "")
	pc := r.rec.relayed(t, d, "carol", "")
	if s := d.stats("carol", ""); s.VideoIn != nil {
		t.Fatalf("carol receives video in an audio call: %+v", s.VideoIn)
	}

	d.run("alice", "addVideo", nil, nil)
	ma := mPorts(d.callInfo("alice").lastRemote(t))
	mc := mPorts(d.callInfo("carol").lastRemote(t))
	t.Logf("after the video re-INVITE: relay ports towards alice %v (audio was %d), towards carol %v (audio was %d)", ma, pa, mc, pc)
	if ma["audio"] != pa || mc["audio"] != pc {
		t.Errorf("the video re-INVITE moved the audio: relay ports towards alice %v (was %d), carol %v (was %d)", ma, pa, mc, pc)
	}
	for who, m := range map[string]map[string]int{"alice": ma, "carol": mc} {
		if v := m["video"]; v < r.rec.lo || v > r.rec.hi || v == m["audio"] {
			t.Errorf("%s's SDP after the re-INVITE has m=video on port %d: want a relay port of %d-%d of its own", who, v, r.rec.lo, r.rec.hi)
		}
	}
	r.rec.relayed(t, d, "carol", "") // the re-INVITE's offer is the relay's too
	first := d.waitStats(t, "carol", "video decoded", func(s clientStats) bool { return s.VideoIn != nil && s.VideoIn.FramesDecoded > 10 })
	last := d.waitStats(t, "carol", "video frames growing", func(s clientStats) bool { return s.VideoIn.FramesDecoded > first.VideoIn.FramesDecoded+20 })
	t.Logf("carol: %d frames of alice's added video decoded", last.VideoIn.FramesDecoded)
	d.hears(t, "carol", "", aliceHz)
	d.hears(t, "alice", "", carolHz)
	d.run("alice", "hangup", nil, nil)
	d.ended(t, "carol", "remote")
	row := r.rec.next(t, "alice", "carol", "caller", 1)
	if !regexp.MustCompile(`m1 caller: pkts=[1-9]`).MatchString(row["media"]) {
		t.Errorf("the record has no video packets from alice (m1 caller): %q", row["media"])
	}
}

// earlyMedia: a SIPp UAS registered as sam answers alice's (JsSIP) INVITE
// with 183 Session Progress and plain RTP/AVP PCMU SDP, plays a 750 Hz tone
// (tone.pcap) at the relay, and sends its 200 only after a pause. JsSIP
// applies the 183's SDP (the relay's WebRTC form of it) as the answer: alice
// hears the tone before the 200 comes, and the 200 keeps the 183's relay
// port and credentials.
func (r *sipRig) earlyMedia(t *testing.T) {
	d := r.d
	d.T = t
	r.idle(t)
	addUsers(t, r.sw, "sam")
	work := t.TempDir()
	writeTonePCAP(t, filepath.Join(work, "tone.pcap"), samHz, 20)
	reg := testbed.RunSIPp(t, testbed.SIPp{
		Scenario: filepath.Join(r.dir, "..", "interop", "testdata", "register.xml"),
		Remote:   sipAddr, Port: samSIP, Name: "register-sam", Netns: r.ns,
		Inf:  testbed.WriteInf(t, filepath.Join(work, "sam.csv"), []testbed.Cred{{User: "sam", Password: "sampw"}}),
		Keys: map[string]string{"domain": domain, "expires": "600"},
		Args: []string{"-m", "1"}, Timeout: 20 * time.Second, TraceMessages: true,
	})
	if reg.ExitCode != 0 || reg.Successful != 1 {
		t.Fatalf("registering sam (SIPp): %v\n%s", reg, testbed.ReadFile(reg.MessageLog))
	}
	uas := testbed.StartSIPp(t, testbed.SIPp{
		Scenario: "early_media_uas.xml", Port: samSIP, Name: "uas-sam", Netns: r.ns, Dir: work,
		Args:    []string{"-m", "1", "-mp", strconv.Itoa(samMedia), "-d", strconv.Itoa(int(earlyPause.Milliseconds()))},
		Timeout: 40 * time.Second, TraceMessages: true,
	})
	sippLog := func() string { return testbed.Tail(testbed.ReadFile(filepath.Join(work, "uas-sam_messages.log")), 80) }

	d.run("alice", "call", map[string]any{"target": userURI("sam"), "freq": aliceHz}, nil)
	var c callInfo
	if !testbed.Poll(15*time.Second, 50*time.Millisecond, func() bool {
		c = d.callInfo("alice")
		return c.ProgressAt != 0 || c.Confirmed || len(c.EndInfo) > 4
	}) || c.ProgressAt == 0 {
		t.Fatalf("alice got no 18x with SDP within 15s: %+v\nSIPp:\n%s", c, sippLog())
	}
	if c.ProgressStatus != 183 || c.Confirmed {
		t.Fatalf("alice's early media came with %d (confirmed %v), want 183 before the 200", c.ProgressStatus, c.Confirmed)
	}
	early := c.lastRemote(t)
	port := r.rec.relayed(t, d, "alice", "")
	d.hears(t, "alice", "", samHz)
	c = d.callInfo("alice")
	t.Logf("alice heard sam's early media %d ms after the 183 applied", c.Now-c.ProgressAt)
	if c.AcceptedAt != 0 || c.Confirmed {
		t.Fatalf("the 200 came %d ms after the 183, before the tone was heard (the pause is %s): early media not shown", c.AcceptedAt-c.ProgressAt, earlyPause)
	}

	d.run("alice", "waitConfirmed", nil, nil)
	c = d.callInfo("alice")
	final := c.lastRemote(t)
	if p := mPorts(final)["audio"]; p != port || ufragOf(final) != ufragOf(early) {
		t.Errorf("the 200's SDP (relay port %d, ufrag %s) is not the 183's (port %d, ufrag %s):\n%s", p, ufragOf(final), port, ufragOf(early), final)
	}
	d.hears(t, "alice", "", samHz)
	d.run("alice", "hangup", nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if res := uas.Wait(ctx); res.ExitCode != 0 || res.Successful != 1 {
		t.Errorf("SIPp UAS: want 1 successful call: %v\n%s", res, sippLog())
	}
	row := r.rec.next(t, "alice", "sam", "caller", 1)
	t.Logf("sam's leg: %s", row["media"])
}

// garbage: during a JsSIP ⇄ baresip call, strangers (other source ports in
// the namespace) send the relay port alice's ICE pair uses, and the RTCP
// port beside it, random bytes, STUN checks with wrong credentials, DTLS
// records and SRTP: the call's audio goes on both ways, nothing is
// answered to them, and /metrics counts them as dropped (auth, stranger,
// malformed), as does the call record for alice's leg.
func (r *sipRig) garbage(t *testing.T) {
	d, bob := r.d, r.bob
	d.T = t
	r.idle(t)
	bob.ClearEvents()
	before := bob.ReceivedAudio()
	d.run("alice", "call", map[string]any{"target": userURI("bob"), "freq": aliceHz}, nil)
	d.run("alice", "waitConfirmed", nil, nil)
	waitEvent(t, bob, "CALL_ESTABLISHED", "", 15*time.Second)
	port := r.rec.relayed(t, d, "alice", "")
	ufrag := ufragOf(d.callInfo("alice").lastRemote(t))
	r.rec.recording(t, bob, before)
	m0 := nsMetrics(t, r.ns, httpAddr)

	// 4 s of garbage, ~1700 datagrams/s, while each side's hearing is
	// checked.
	relay := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	mark := recordedSamples(t, bob, before)
	f := startFlood(t, r.ns, []floodDst{{addr: relay}, {addr: relay}, {addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port+1)), rtcp: true}},
		ufrag, 400, 10*time.Millisecond)
	d.hears(t, "alice", "", bobHz)
	heardSince(t, bob, before, mark, aliceHz)
	if f.running() {
		t.Logf("alice and bob heard each other while the garbage went on")
	} else {
		t.Errorf("the flood ended before the hearing checks did: make it longer")
	}
	sent := f.wait(t)
	t.Logf("sent to relay port %d (and %d): %+v", port, port+1, sent)
	d.hears(t, "alice", "", bobHz)
	if n := f.answered.Load(); n != 0 {
		t.Errorf("the relay answered the strangers %d datagrams", n)
	}
	m1 := nsMetrics(t, r.ns, httpAddr)
	for _, k := range []struct {
		reason string
		min    int
	}{{"auth", sent.auth}, {"stranger", sent.stranger}, {"malformed", sent.malformed}} {
		key := `switchboard_media_packets_dropped_total{reason="` + k.reason + `"}`
		got := m1[key] - m0[key]
		t.Logf("%s: +%.0f (sent %d)", key, got, k.min)
		if got < float64(k.min) {
			t.Errorf("%s grew by %.0f while %d such datagrams were sent", key, got, k.min)
		}
	}
	d.run("alice", "hangup", nil, nil)
	waitEvent(t, bob, "CALL_CLOSED", "", 10*time.Second)
	row := r.rec.next(t, "alice", "bob", "caller", 1)
	if m := regexp.MustCompile(`m0 caller: [^;]*dropped=(\d+)`).FindStringSubmatch(row["media"]); m == nil {
		t.Errorf("the record has no dropped count for alice's leg: %q", row["media"])
	} else if n, _ := strconv.Atoi(m[1]); n < sent.total() {
		t.Errorf("the record counts %d datagrams dropped on alice's leg, %d were sent there", n, sent.total())
	}
}

// direct: with media.relay nat or never, on a second switch in the
// namespace, alice calls carol (both JsSIP): the call is not anchored (the
// relay makes no stream), each browser gets the other's SDP as it was sent
// (its candidates, ICE credentials and fingerprint, no ice-lite), their ICE
// pair joins them directly, and they hear each other. With never, alice
// also calls a baresip registered there: a WebRTC party and a plain one
// are anchored whatever media.relay says.
func (r *sipRig) direct(t *testing.T, mode string) {
	d := r.d
	d.T = t
	// Its media ports apart from the first switch's.
	lo := 10000
	if r.rec.lo < 10400 {
		lo = 15600
	}
	sw := testbed.StartServer(t, testbed.Binary(t), testbed.ServerConfig{
		Domain:      domain,
		Netns:       r.ns,
		LogLevel:    os.Getenv("SWITCHBOARD_LOG_LEVEL"),
		Listen:      []string{"udp://" + altSIP, "tcp://" + altSIP},
		HTTP:        altHTTP,
		HTTPOptions: "allowed_origins: [" + r.origin + "]",
		MediaRelay:  mode,
		Media:       fmt.Sprintf("rtp_ports: %d-%d", lo, lo+199),
	})
	addUsers(t, sw, "alice", "carol", "bob")
	rec := &records{sw: sw, seen: map[string]bool{}, lo: lo, hi: lo + 199}
	a, c := "alice-"+mode, "carol-"+mode
	for _, u := range []struct{ page, user string }{{a, "alice"}, {c, "carol"}} {
		d.Must("open", map[string]any{"name": u.page, "url": r.origin + "/"})
		t.Cleanup(func() { _, _ = d.Do("close", map[string]any{"name": u.page}) })
		var detail string
		d.run(u.page, "jssipStart", map[string]any{"url": "ws://" + altHTTP + "/sip", "user": u.user, "password": u.user + "pw", "domain": domain}, &detail)
		t.Logf("%s (jssip) on the relay-%s switch: %s", u.user, mode, detail)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range []string{a, c} {
				_, _ = d.Do("t", map[string]any{"name": p, "fn": "reset", "arg": map[string]any{}})
			}
		}
	})

	d.run(a, "call", map[string]any{"target": userURI("carol"), "freq": aliceHz}, nil)
	d.run(c, "answer", map[string]any{"freq": carolHz}, nil)
	d.run(a, "waitConfirmed", nil, nil)
	ia, ic := d.callInfo(a), d.callInfo(c)
	if len(ic.RemoteSDPs) == 0 {
		t.Fatal("carol's page saw no offer")
	}
	for _, x := range []struct{ who, sent, got string }{
		{"carol", ia.lastLocal(t, "offer"), ic.RemoteSDPs[0].SDP},
		{"alice", ic.lastLocal(t, "answer"), ia.lastRemote(t)},
	} {
		if x.got != x.sent {
			t.Errorf("relay %s: %s got another SDP than the other browser sent:\nas sent:\n%s\nas received:\n%s", mode, x.who, x.sent, x.got)
		}
		if strings.Contains(x.got, "a=ice-lite") {
			t.Errorf("relay %s: %s got the relay's ICE-lite SDP:\n%s", mode, x.who, x.got)
		}
		cands := allCands.FindAllString(x.got, -1)
		if len(cands) == 0 {
			t.Errorf("relay %s: the SDP %s got has no candidates:\n%s", mode, x.who, x.got)
		}
		t.Logf("%s got the other browser's candidates: %q", x.who, cands)
	}
	sa, sc := d.stats(a, ""), d.stats(c, "")
	if !testbed.Poll(10*time.Second, 200*time.Millisecond, func() bool {
		sa, sc = d.stats(a, ""), d.stats(c, "")
		return sa.Local != nil && sa.Remote != nil && sc.Local != nil && sc.Remote != nil
	}) {
		t.Fatalf("no selected ICE pairs within 10s: alice %+v, carol %+v", sa, sc)
	}
	t.Logf("ICE pairs: alice %s:%d -> %s:%d, carol %s:%d -> %s:%d", sa.Local.Address, sa.Local.Port, sa.Remote.Address, sa.Remote.Port,
		sc.Local.Address, sc.Local.Port, sc.Remote.Address, sc.Remote.Port)
	if sa.Remote.Port != sc.Local.Port || sc.Remote.Port != sa.Local.Port {
		t.Errorf("relay %s: the browsers' ICE pairs do not join them: alice -> %d, carol's own %d; carol -> %d, alice's own %d",
			mode, sa.Remote.Port, sc.Local.Port, sc.Remote.Port, sa.Local.Port)
	}
	d.hears(t, c, "", aliceHz)
	d.hears(t, a, "", carolHz)
	m := nsMetrics(t, r.ns, altHTTP)
	if v := m["switchboard_media_streams_total"]; v != 0 {
		t.Errorf("relay %s: the relay made %.0f streams for a call between two browsers", mode, v)
	}
	d.run(a, "hangup", nil, nil)
	d.ended(t, c, "remote")
	rec.next(t, "alice", "carol", "caller", 0)

	if mode != "never" {
		return
	}
	// A browser and a plain phone: anchored even with never.
	bob := testbed.StartBaresip(t, "bob-"+mode, testbed.BaresipConfig{
		User: "bob", Password: "bobpw", Domain: domain, Proxy: altSIP, AnswerMode: "auto",
		AudioFile: testbed.MakeTone(t, filepath.Join(t.TempDir(), "bob.wav"), bobHz, 60), Regint: 600,
		SIPPort: 5072, CtrlPort: 5092, Netns: r.ns,
	})
	bob.WaitRegistered(t, 15*time.Second)
	before := bob.ReceivedAudio()
	d.run(a, "call", map[string]any{"target": userURI("bob"), "freq": aliceHz}, nil)
	d.run(a, "waitConfirmed", nil, nil)
	waitEvent(t, bob, "CALL_ESTABLISHED", "", 15*time.Second)
	rec.relayed(t, d, a, "")
	d.hears(t, a, "", bobHz)
	rec.recording(t, bob, before)
	d.run(a, "hangup", nil, nil)
	waitEvent(t, bob, "CALL_CLOSED", "", 10*time.Second)
	heard(t, bob, before, aliceHz)
	rec.next(t, "alice", "bob", "caller", 1)
}

// recorded is what baresip has recorded of the current call so far: its
// new recordings beside before, in the order they were made (baresip starts
// a new one when a re-INVITE updates the stream), one after the other.
func recorded(b *testbed.Baresip, before []string) (testbed.WAV, error) {
	files := newFiles(b, before)
	slices.Sort(files) // dump-YYYY-MM-DD-hh-mm-ss-dec.wav
	var all testbed.WAV
	for _, f := range files {
		w, err := testbed.ReadWAV(f)
		if err != nil {
			return testbed.WAV{}, err
		}
		all.Rate, all.Channels = w.Rate, w.Channels
		all.Samples = append(all.Samples, w.Samples...)
	}
	if len(files) == 0 {
		return all, fmt.Errorf("baresip %s: no recording of the call", b.Name)
	}
	return all, nil
}

// recordedSamples is how many samples baresip has recorded of the current
// call so far.
func recordedSamples(t *testing.T, b *testbed.Baresip, before []string) int {
	t.Helper()
	w, err := recorded(b, before)
	if err != nil {
		t.Fatal(err)
	}
	return len(w.Samples)
}

// heardSince waits until baresip's recording of the current call has 2 s
// past sample mark, and checks those hold freq.
func heardSince(t *testing.T, b *testbed.Baresip, before []string, mark int, freq float64) {
	t.Helper()
	var w testbed.WAV
	if !testbed.Poll(15*time.Second, 100*time.Millisecond, func() bool {
		var err error
		w, err = recorded(b, before)
		return err == nil && len(w.Samples) >= mark+2*w.Rate
	}) {
		t.Fatalf("baresip %s recorded %d samples (%v), not 2 s past sample %d, within 15s", b.Name, len(w.Samples), newFiles(b, before), mark)
	}
	w.Samples = w.Samples[mark:]
	tone := testbed.MeasureTone(w, freq)
	t.Logf("baresip %s from %.1fs on: %.1fs, active %.0f%%, %.0f Hz share %.2f", b.Name, float64(mark)/float64(w.Rate), tone.Seconds, 100*tone.Active, freq, tone.Share)
	if tone.Active < 0.5 || tone.Share < 0.5 {
		t.Fatalf("baresip %s does not hear the browser's %.0f Hz tone from %.1fs of the call on: %+v", b.Name, freq, float64(mark)/float64(w.Rate), tone)
	}
}

// recordsOf counts the switch's records of a call.
func recordsOf(t *testing.T, sw *testbed.Server, callID string) int {
	t.Helper()
	n := 0
	for _, c := range sw.CDRs(t) {
		if c["call-id"] == callID {
			n++
		}
	}
	return n
}

// traceHead is the line baresip's SIP trace (-s) puts before each message:
// transport, source -> destination.
var traceHead = regexp.MustCompile(`(?m)^(?:UDP|TCP|TLS|udp|tcp|tls)\|?\s*(\S+) -> (\S+)`)

// traceMsg is one SIP message of a baresip trace.
type traceMsg struct{ src, dst, text string }

// sipTrace splits a baresip trace (StripANSI'd) into its messages.
func sipTrace(log string) []traceMsg {
	heads := traceHead.FindAllStringSubmatchIndex(log, -1)
	out := make([]traceMsg, 0, len(heads))
	for i, h := range heads {
		end := len(log)
		if i+1 < len(heads) {
			end = heads[i+1][0]
		}
		out = append(out, traceMsg{src: log[h[2]:h[3]], dst: log[h[4]:h[5]], text: strings.TrimLeft(log[h[1]:end], "\r\n")})
	}
	return out
}

// callMessages returns the messages of call callID in baresip b's trace
// whose first line starts with start, sent by b (fromB) or to it.
func callMessages(b *testbed.Baresip, callID, start string, fromB bool) []string {
	var out []string
	for _, m := range sipTrace(testbed.StripANSI(b.Log())) {
		if (fromB && m.src != b.SIPAddr()) || (!fromB && m.dst != b.SIPAddr()) || !strings.HasPrefix(m.text, start) {
			continue
		}
		if c := callIDHdr.FindStringSubmatch(m.text); c != nil && c[1] == callID {
			out = append(out, m.text)
		}
	}
	return out
}

// capturedTone captures for 2.5 s (tcpdump on the namespace's lo) the RTP
// sent to UDP port dst and measures how much of its PCMU audio is freq.
func capturedTone(t *testing.T, ns string, dst int, freq float64) testbed.Tone {
	t.Helper()
	testbed.RequireTool(t, "tcpdump")
	c := testbed.Capture(t, ns, "lo", t.TempDir())
	if c == nil {
		t.Fatal("tcpdump did not start")
	}
	var w testbed.WAV
	testbed.Poll(10*time.Second, 250*time.Millisecond, func() bool {
		w = pcmuTo(c.File, dst)
		return len(w.Samples) >= 2*8000
	})
	c.Stop()
	w = pcmuTo(c.File, dst)
	tone := testbed.MeasureTone(w, freq)
	t.Logf("RTP to port %d: %.1fs of PCMU, active %.0f%%, %.0f Hz share %.2f", dst, tone.Seconds, 100*tone.Active, freq, tone.Share)
	return tone
}

// pcmuTo reads a pcap file (Ethernet, as tcpdump writes lo) and decodes
// the PCMU payloads of the RTP packets to UDP port dst, in capture order.
func pcmuTo(file string, dst int) testbed.WAV {
	w := testbed.WAV{Rate: 8000, Channels: 1}
	b, err := os.ReadFile(file)
	if err != nil || len(b) < 24 {
		return w
	}
	le := binary.LittleEndian
	for p := 24; p+16 <= len(b); {
		n := int(le.Uint32(b[p+8:]))
		if p+16+n > len(b) {
			break
		}
		pkt := b[p+16 : p+16+n]
		p += 16 + n
		if len(pkt) < 14+20 || binary.BigEndian.Uint16(pkt[12:]) != 0x0800 {
			continue
		}
		ip := pkt[14:]
		ihl := int(ip[0]&0x0f) * 4
		if ip[9] != 17 || len(ip) < ihl+8+12 {
			continue
		}
		udp := ip[ihl:]
		if int(binary.BigEndian.Uint16(udp[2:])) != dst {
			continue
		}
		rtp := udp[8:]
		if rtp[0]>>6 != 2 || rtp[1]&0x7f != 0 {
			continue // not RTP PCMU (RTCP, telephone-event)
		}
		hdr := 12 + 4*int(rtp[0]&0x0f)
		if rtp[0]&0x10 != 0 && len(rtp) >= hdr+4 {
			hdr += 4 + 4*int(binary.BigEndian.Uint16(rtp[hdr+2:]))
		}
		if hdr > len(rtp) {
			continue
		}
		for _, u := range rtp[hdr:] {
			w.Samples = append(w.Samples, ulawDecode(u))
		}
	}
	return w
}

// nsMetrics reads a switch's /metrics from inside ns into name{labels} →
// value.
func nsMetrics(t *testing.T, ns, addr string) map[string]float64 {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext:       func(context.Context, string, string) (net.Conn, error) { return testbed.DialIn(ns, addr) },
	}}
	res, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("metrics: %s", res.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && !strings.HasPrefix(f[0], "#") {
			if v, err := strconv.ParseFloat(f[1], 64); err == nil {
				out[f[0]] = v
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("metrics: %v", err)
	}
	return out
}

// floodCounts is what a flood sent, by the drop reason the relay should
// count it under.
type floodCounts struct{ auth, stranger, malformed int }

func (c floodCounts) total() int { return c.auth + c.stranger + c.malformed }

// flood is strangers sending garbage to a relay's ports from sockets in a
// namespace, and reading whatever comes back.
type flood struct {
	done     chan floodCounts
	finished chan struct{} // closed when its goroutines have ended
	sending  atomic.Bool
	answered atomic.Int64
	err      atomic.Value // error
}

// floodDst is where a flood sends: a WebRTC leg's RTP port, or the RTCP
// port beside it (unused: WebRTC multiplexes RTCP).
type floodDst struct {
	addr string
	rtcp bool
}

// startFlood sends, from one new socket per destination (so from a source
// port of its own), garbage every interval, rounds times: to an RTP port
// random bytes that are neither STUN, DTLS nor RTP, bytes that look like
// STUN but are not, STUN checks with a wrong password, a wrong ufrag and no
// integrity, a DTLS ClientHello record and SRTP and SRTCP packets with
// made-up keys; to an RTCP port random RTP-looking bytes. ufrag is the
// relay's, so that one kind of check names it and fails on the password.
// Whatever comes back on the sockets is counted in answered.
func startFlood(t *testing.T, ns string, dsts []floodDst, ufrag string, rounds int, interval time.Duration) *flood {
	t.Helper()
	f := &flood{done: make(chan floodCounts, 1), finished: make(chan struct{})}
	conns := make([]net.Conn, len(dsts))
	for i, dst := range dsts {
		c, err := testbed.DialUDPIn(ns, dst.addr)
		if err != nil {
			for _, c := range conns[:i] {
				c.Close()
			}
			t.Fatal(err)
		}
		conns[i] = c
	}
	var readers sync.WaitGroup
	for _, c := range conns {
		readers.Add(1)
		go func() {
			defer readers.Done()
			buf := make([]byte, 2048)
			for {
				if _, err := c.Read(buf); err != nil {
					return // closed at the end of the flood
				}
				f.answered.Add(1)
			}
		}()
	}
	f.sending.Store(true)
	go func() {
		var n floodCounts
		tick := time.NewTicker(interval)
		defer tick.Stop()
		send := func(c net.Conn, b []byte) bool {
			if _, err := c.Write(b); err != nil {
				f.err.Store(err)
				return false
			}
			return true
		}
		for i := range rounds {
			<-tick.C
			for ci, c := range conns {
				if dsts[ci].rtcp {
					if send(c, fakeRTP(0x80, 0, i)) {
						n.stranger++ // no party sends there
					}
					continue
				}
				for _, b := range [][]byte{randomPrefixed(64+byte(i%64), 40+i%200), randomPrefixed(byte(ci%2), 20+i%60)} {
					if send(c, b) {
						n.malformed++
					}
				}
				for _, user := range []string{ufrag + ":evil", "EVIL:" + ufrag, ""} {
					if send(c, fakeCheck(user, user != "")) {
						n.auth++
					}
				}
				for _, b := range [][]byte{fakeDTLS(i), fakeRTP(0x80, 111, i), fakeRTP(0x80, 200, i)} {
					if send(c, b) {
						n.stranger++
					}
				}
			}
		}
		f.sending.Store(false)
		// Replies would be on their way by now; give them a moment.
		grace := time.NewTimer(500 * time.Millisecond)
		<-grace.C
		for _, c := range conns {
			c.Close()
		}
		readers.Wait()
		f.done <- n
		close(f.finished)
	}()
	t.Cleanup(func() { <-f.finished }) // bounded: rounds*interval and a grace
	return f
}

// running reports whether the flood is still sending.
func (f *flood) running() bool { return len(f.done) == 0 && f.sending.Load() }

// wait waits for the flood to end and returns what it sent.
func (f *flood) wait(t *testing.T) floodCounts {
	t.Helper()
	select {
	case n := <-f.done:
		if err, _ := f.err.Load().(error); err != nil {
			t.Errorf("sending garbage: %v", err)
		}
		return n
	case <-time.After(30 * time.Second):
		t.Fatal("the flood did not end within 30s")
		return floodCounts{}
	}
}

func randomPrefixed(first byte, n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	b[0] = first
	return b
}

// fakeCheck is an ICE connectivity check (RFC 8445 §7.1.2) with USERNAME
// user (none if ""), signed (if sign) with a password that is not the
// relay's.
func fakeCheck(user string, sign bool) []byte {
	prio := make([]byte, 4)
	binary.BigEndian.PutUint32(prio, 1853824767)
	tie := make([]byte, 8)
	_, _ = rand.Read(tie)
	setters := []stun.Setter{stun.TransactionID, stun.BindingRequest,
		stun.RawAttribute{Type: stun.AttrPriority, Value: prio},
		stun.RawAttribute{Type: stun.AttrICEControlling, Value: tie},
		stun.RawAttribute{Type: stun.AttrUseCandidate}}
	if user != "" {
		setters = append(setters, stun.NewUsername(user))
	}
	if sign {
		setters = append(setters, stun.NewShortTermIntegrity("not-the-relays-password-x"))
	}
	m, err := stun.Build(append(setters, stun.Fingerprint)...)
	if err != nil {
		panic("stun: " + err.Error()) // fixed attributes: cannot fail
	}
	return m.Raw
}

// fakeDTLS is a DTLS 1.2 handshake record holding the start of a
// ClientHello (RFC 6347 §4.1), followed by random bytes.
func fakeDTLS(seq int) []byte {
	b := randomPrefixed(22, 13+60)
	b[1], b[2] = 0xfe, 0xfd // DTLS 1.2
	b[3], b[4] = 0, 0       // epoch 0
	binary.BigEndian.PutUint32(b[7:], uint32(seq))
	binary.BigEndian.PutUint16(b[11:], 60)
	b[13] = 1 // client_hello
	return b
}

// fakeRTP is an RTP (or, with pt 200..204, RTCP) header with random
// payload: SRTP whose tag no key makes.
func fakeRTP(first, pt byte, seq int) []byte {
	b := randomPrefixed(first, 12+100)
	b[1] = pt
	binary.BigEndian.PutUint16(b[2:], uint16(seq))
	return b
}

// writeTonePCAP writes a pcap file (Ethernet, IPv4, UDP) of seconds of RTP
// PCMU packets (20 ms each) holding a sine at freq Hz, from and to port
// samMedia, for SIPp's play_pcap_audio (which sends their UDP payloads to
// the remote SDP's address, keeping their timing).
func writeTonePCAP(t *testing.T, path string, freq float64, seconds int) {
	t.Helper()
	const payload = 160
	var b []byte
	le := binary.LittleEndian
	b = le.AppendUint32(b, 0xa1b2c3d4)
	b = le.AppendUint16(b, 2)
	b = le.AppendUint16(b, 4)
	b = le.AppendUint32(b, 0)
	b = le.AppendUint32(b, 0)
	b = le.AppendUint32(b, 65535)
	b = le.AppendUint32(b, 1) // DLT_EN10MB
	be := binary.BigEndian
	for i := range seconds * 50 {
		rtp := make([]byte, 12, 12+payload)
		rtp[0] = 0x80
		be.PutUint16(rtp[2:], uint16(i))
		be.PutUint32(rtp[4:], uint32(i*payload))
		be.PutUint32(rtp[8:], 0x5a3c1234)
		for k := range payload {
			n := i*payload + k
			rtp = append(rtp, ulaw(int16(0.3*32767*math.Sin(2*math.Pi*freq*float64(n)/8000))))
		}
		udp := make([]byte, 8, 8+len(rtp))
		be.PutUint16(udp[0:], samMedia)
		be.PutUint16(udp[2:], samMedia)
		be.PutUint16(udp[4:], uint16(8+len(rtp)))
		udp = append(udp, rtp...)
		ip := []byte{0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1}
		be.PutUint16(ip[2:], uint16(20+len(udp)))
		be.PutUint16(ip[4:], uint16(i))
		var sum uint32
		for k := 0; k < 20; k += 2 {
			sum += uint32(be.Uint16(ip[k:]))
		}
		for sum > 0xffff {
			sum = sum>>16 + sum&0xffff
		}
		be.PutUint16(ip[10:], ^uint16(sum))
		frame := append(append(make([]byte, 12), 0x08, 0x00), append(ip, udp...)...)
		us := i * 20000
		b = le.AppendUint32(b, uint32(us/1e6))
		b = le.AppendUint32(b, uint32(us%1e6))
		b = le.AppendUint32(b, uint32(len(frame)))
		b = le.AppendUint32(b, uint32(len(frame)))
		b = append(b, frame...)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// ulaw encodes a linear sample as G.711 µ-law (ITU-T G.711, with the usual
// bias of 0x84 and clipping at 32635).
func ulaw(s int16) byte {
	v, sign := int(s), byte(0)
	if v < 0 {
		v, sign = -v, 0x80
	}
	v = min(v, 32635) + 0x84
	exp := 7
	for mask := 0x4000; v&mask == 0 && exp > 0; mask >>= 1 {
		exp--
	}
	return ^(sign | byte(exp<<4) | byte((v>>(exp+3))&0x0f))
}

// ulawDecode is ulaw's inverse (ITU-T G.711).
func ulawDecode(u byte) int16 {
	u = ^u
	exp := (u >> 4) & 7
	v := (int(u&0x0f)<<3 + 0x84) << exp
	v -= 0x84
	if u&0x80 != 0 {
		return int16(-v)
	}
	return int16(v)
}

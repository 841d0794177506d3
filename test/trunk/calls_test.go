package trunk

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	gosip "github.com/emiago/sipgo/sip"

	"github.com/switchboard/switchboard/internal/siptest"
	"github.com/switchboard/switchboard/test/internal/testbed"
)

// callsRig is a switch with trunks to carrier1 and carrier2 (IP
// authentication, digest credentials, no registration) and the users of
// the call tests.
type callsRig struct {
	*rig
	c1, c2 *carrier
}

func newCallsRig(t *testing.T) *callsRig {
	t.Helper()
	testbed.RequireBaresip(t)
	testbed.RequireTool(t, "sox")
	r := &rig{t: t, tr: siptest.NewTrace(t)}
	r.newNetwork()
	pc1, pc2 := carrierSocket(t, r.car, carrier1IP, 0), carrierSocket(t, r.car, carrier2IP, 0)
	r.startSwitch(trunkYAML(pc1.LocalAddr().String(), pc2.LocalAddr().String(), false), map[string]string{
		"alice": "national", "ingrid": "internal", "ivan": "international", "dave": "national",
	})
	return &callsRig{rig: r,
		c1: newCarrier(t, r.car, pc1, "carrier1", r.proxy, "sb1", "pw1", r.tr),
		c2: newCarrier(t, r.car, pc2, "carrier2", r.proxy, "sb2", "pw2", r.tr)}
}

// TestTrunkCalls drives calls to and from the telephone network through
// the switch's trunks, against the carrier stand-ins: a national number
// dialled by baresip goes out over carrier1 with digest credentials and
// carries tones both ways through the relay; carrier1 failing (503) sends
// the same call over carrier2; the carrier's call to our number rings
// baresip; classes, the blocked list and calls_per_user refuse with 403 and
// a Warning; a stranger posing as the carrier is refused.
func TestTrunkCalls(t *testing.T) {
	t.Parallel()
	r := newCallsRig(t)
	alice := r.baresip("alice", 1000, "auto")
	t.Run("outbound", func(t *testing.T) { r.outbound(t, alice) })
	t.Run("failover", func(t *testing.T) { r.failover(t, alice) })
	t.Run("inbound", func(t *testing.T) { r.inbound(t, alice) })
	t.Run("limits", r.limits)
}

// outbound: alice dials "030 1234567" (escaped in the URI): it reaches carrier1 as
// +49301234567, from her number, with the trunk's credentials after its
// 407; each side hears the other's tone through the relay.
func (r *callsRig) outbound(t *testing.T, alice *testbed.Baresip) {
	ctx := context.Background()
	c1 := r.c1
	c1.Drain()
	alice.ClearEvents()
	// A Request-URI cannot hold a space: "030 1234567" as a phone sends it
	// (baresip sends the space itself, which no SIP parser takes).
	if _, err := alice.Command(ctx, "dial", "sip:030%201234567@"+domain); err != nil {
		t.Fatal(err)
	}
	first, inv := c1.authInvite(407)
	if got := inv.Recipient.String(); !strings.HasPrefix(got, "sip:+49301234567@"+c1.addr+";") || !strings.Contains(got, "user=phone") {
		t.Errorf("Request-URI %s, want the E.164 number at carrier1 (user=phone)", got)
	}
	for _, req := range []*gosip.Request{first, inv} {
		if got := req.From().Address.User; got != "+4930123456" {
			t.Errorf("From %s, want alice's number +4930123456", req.From().Address.String())
		}
		if pai := req.GetHeader("P-Asserted-Identity"); pai == nil || !strings.Contains(pai.Value(), "+4930123456@") {
			t.Errorf("P-Asserted-Identity %v, want alice's number", pai)
		}
	}
	leg := c1.answer(inv, 600)
	alice.WaitEventType(t, "CALL_ESTABLISHED", 10*time.Second)
	ack := c1.waitAck()
	if ack.CSeq().SeqNo != inv.CSeq().SeqNo {
		t.Errorf("ACK CSeq %d, want the re-sent INVITE's %d", ack.CSeq().SeqNo, inv.CSeq().SeqNo)
	}
	// 2 s of audio each way (44-byte WAV header, 16 bytes per ms).
	testbed.Eventually(t, 15*time.Second, func() bool {
		return leg.received() >= 2 && alice.ReceivedBytes() >= 44+2*16000
	}, "two seconds of audio each way")
	if _, err := alice.Command(ctx, "hangup", ""); err != nil {
		t.Fatal(err)
	}
	bye := c1.WaitRequest("BYE")
	if bye.CSeq().SeqNo <= inv.CSeq().SeqNo || bye.From().Address.User != "+4930123456" {
		t.Errorf("BYE at carrier1: CSeq %d after the INVITE's %d, From %s", bye.CSeq().SeqNo, inv.CSeq().SeqNo, bye.From().Address.String())
	}
	c1.Reply(bye, 200, "OK")
	alice.WaitEventType(t, "CALL_CLOSED", 10*time.Second)
	leg.close()

	tone := leg.tone(1000)
	t.Logf("carrier1 received %.1fs, %.0f%% active, %.0f%% at 1000 Hz", tone.Seconds, 100*tone.Active, 100*tone.Share)
	if tone.Active < 0.5 || tone.Share < 0.8 {
		t.Errorf("carrier1 did not hear alice's 1000 Hz tone: %+v", tone)
	}
	files := alice.ReceivedAudio()
	if len(files) == 0 {
		t.Fatal("alice recorded nothing")
	}
	w, err := testbed.ReadWAV(files[len(files)-1])
	if err != nil {
		t.Fatal(err)
	}
	heard := testbed.MeasureTone(w, 600)
	t.Logf("alice received %.1fs, %.0f%% active, %.0f%% at 600 Hz", heard.Seconds, 100*heard.Active, 100*heard.Share)
	if heard.Active < 0.5 || heard.Share < 0.8 {
		t.Errorf("alice did not hear carrier1's 600 Hz tone: %+v", heard)
	}
	rec := r.record(inv.CallID().Value())
	if rec["trunk"] != "carrier1" || rec["number"] != "+49301234567" || rec["route"] != `^\+49` ||
		!strings.Contains(rec["dialled"], "030") || rec["status"] != "200" {
		t.Errorf("call record %v", rec)
	}
}

// failover: carrier1 answers 503; the same call goes to carrier2 (401,
// credentials) and is answered.
func (r *callsRig) failover(t *testing.T, alice *testbed.Baresip) {
	ctx := context.Background()
	r.c1.Drain()
	r.c2.Drain()
	alice.ClearEvents()
	if _, err := alice.Command(ctx, "dial", "0301234567"); err != nil {
		t.Fatal(err)
	}
	inv1 := r.c1.WaitRequest("INVITE")
	r.c1.Reply(inv1, 503, "Service Unavailable")
	_, inv := r.c2.authInvite(401)
	if inv.CallID().Value() != inv1.CallID().Value() || inv.Recipient.User != "+49301234567" {
		t.Errorf("carrier2 got call %s to %s; want carrier1's %s", inv.CallID().Value(), inv.Recipient.User, inv1.CallID().Value())
	}
	leg := r.c2.answer(inv, 600)
	alice.WaitEventType(t, "CALL_ESTABLISHED", 10*time.Second)
	r.c2.waitAck()
	testbed.Eventually(t, 10*time.Second, func() bool { return leg.received() >= 0.5 }, "audio at carrier2")
	if _, err := alice.Command(ctx, "hangup", ""); err != nil {
		t.Fatal(err)
	}
	r.c2.Reply(r.c2.WaitRequest("BYE"), 200, "OK")
	alice.WaitEventType(t, "CALL_CLOSED", 10*time.Second)
	rec := r.record(inv.CallID().Value())
	if rec["trunk"] != "carrier2" || rec["status"] != "200" {
		t.Errorf("call record %v, want answered over carrier2", rec)
	}
	if n := r.logCount("trunk failover", map[string]string{"trunk": "carrier2", "call_id": inv.CallID().Value()}); n != 1 {
		t.Errorf("%d \"trunk failover\" log lines for the call, want 1", n)
	}
}

// carrierCall sends an INVITE from c (at its address, or one pretending
// to be its) to number at the switch, with an SDP offer of leg.
func (r *callsRig) carrierCall(c *carrier, number string, leg *rtpLeg) *siptest.Msg {
	r.t.Helper()
	m := c.Request("INVITE", "sip:"+number+"@"+r.proxy)
	m.Set("From", "<sip:+4917012345678@"+carrier1IP+">;tag="+siptest.Rand(6))
	m.Set("Content-Type", "application/sdp")
	ip := c.Addr().Addr().String()
	m.Body = fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\nm=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n", ip, ip, leg.port())
	c.Send(m)
	return m
}

// inbound: carrier1's call to +4930123456 rings alice's baresip (which
// answers); a number that is not ours is 404; the same call from the
// carrier's neighbour, whose From names the carrier, is a stranger's: 403.
func (r *callsRig) inbound(t *testing.T, alice *testbed.Baresip) {
	c1 := r.c1
	c1.Drain()
	alice.ClearEvents()
	leg := newRTPLeg(t, r.car, carrier1IP)
	inv := r.carrierCall(c1, "+4930123456", leg)
	ok := c1.WaitResponse(inv, 200, 200) // alice answers by herself
	sdp, err := sdpAudio(ok.Body())
	if err != nil {
		t.Fatalf("200 SDP: %v\n%s", err, ok.Body())
	}
	if sdp.Addr().String() != switchIP {
		t.Errorf("answer's media at %s, want the relay at %s", sdp, switchIP)
	}
	d := c1.UACDialog(inv, ok)
	c1.Send(d.Request("ACK"))
	leg.play(sdp, 600)
	ev := alice.WaitEventType(t, "CALL_ESTABLISHED", 10*time.Second)
	if !strings.Contains(ev.PeerURI, "+4917012345678") {
		t.Errorf("alice sees the call from %q", ev.PeerURI)
	}
	testbed.Eventually(t, 10*time.Second, func() bool { return leg.received() >= 0.5 }, "alice's audio at the carrier")
	bye := d.Request("BYE")
	c1.Send(bye)
	if res := c1.WaitFinal(bye); res.StatusCode != 200 {
		t.Errorf("BYE: %d", res.StatusCode)
	}
	alice.WaitEventType(t, "CALL_CLOSED", 10*time.Second)
	leg.close()
	rec := r.record(inv.Get("Call-ID"))
	if rec["trunk"] != "carrier1" || rec["number"] != "+4930123456" || rec["route"] != "inbound" || rec["status"] != "200" {
		t.Errorf("call record %v", rec)
	}

	unknown := r.carrierCall(c1, "+4930654321", newRTPLeg(t, r.car, carrier1IP))
	if res := c1.WaitFinal(unknown); res.StatusCode != 404 {
		t.Errorf("call to a number not ours: %d, want 404", res.StatusCode)
	}
	// The carrier's neighbour: not in inbound_from.
	pc := carrierSocket(t, r.car, strangerIP, 0)
	stranger := newCarrier(t, r.car, pc, "stranger", r.proxy, "", "", r.tr)
	alice.ClearEvents()
	fake := r.carrierCall(stranger, "+4930123456", newRTPLeg(t, r.car, strangerIP))
	if res := stranger.WaitFinal(fake); res.StatusCode != 403 {
		t.Errorf("stranger posing as carrier1: %d, want 403", res.StatusCode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if ev, err := alice.WaitEvent(ctx, func(e testbed.BaresipEvent) bool { return strings.HasPrefix(e.Type, "CALL_") }); err == nil {
		t.Errorf("the stranger's call rang alice: %+v", ev)
	}
}

// warning returns the Warning of res, or "".
func warning(res *gosip.Response) string {
	if h := res.GetHeader("Warning"); h != nil {
		return h.Value()
	}
	return ""
}

// limits: a user of class internal may not call a national number, nobody
// may call a blocked one, and a user's third concurrent call over trunks
// (calls_per_user: 2) is refused, each with 403 and a Warning saying which.
func (r *callsRig) limits(t *testing.T) {
	r.c1.Drain()
	invite := func(p *siptest.Phone, number string) *siptest.Msg {
		m := p.Request("INVITE", "sip:"+number+"@"+domain)
		m.Set("Content-Type", "application/sdp")
		ip := p.Addr().Addr().String()
		m.Body = "v=0\r\no=- 1 1 IN IP4 " + ip + "\r\ns=-\r\nc=IN IP4 " + ip + "\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
		return p.SendAuthenticated(m)
	}
	refused := func(p *siptest.Phone, number, want string) {
		t.Helper()
		res := p.WaitFinal(invite(p, number))
		if res.StatusCode != 403 || !strings.Contains(warning(res), want) {
			t.Errorf("%s calling %s: %d %s, Warning %q; want 403 with a Warning saying %q", p.User(), number, res.StatusCode, res.Reason, warning(res), want)
		}
	}
	ingrid, ivan, dave := r.phone("ingrid"), r.phone("ivan"), r.phone("dave")
	// (Each refusal is logged once per user and limit a minute, counted in
	// the metrics every time.)
	refused(ingrid, "0301234567", "calling class internal")
	refused(dave, "00441234567", "calling class national")
	for _, p := range []*siptest.Phone{dave, ivan} {
		refused(p, "0900-123456", "blocked destination")
		refused(p, "+8821234567", "blocked destination")
	}

	// dave's two calls up at carrier1, then a third.
	var dialogs []*siptest.Dialog
	for i := 0; i < 2; i++ {
		inv := invite(dave, "0301234567")
		_, authed := r.c1.authInvite(407)
		r.c1.answer(authed, 600)
		ok := dave.WaitResponse(inv, 200, 200)
		d := dave.UACDialog(inv, ok)
		dave.Send(d.Request("ACK"))
		r.c1.waitAck()
		dialogs = append(dialogs, d)
	}
	refused(dave, "0301234567", "limit calls_per_user (2) reached")
	r.c1.ExpectNone(siptest.IsRequest("INVITE"), 200*time.Millisecond, "the third call at the carrier")
	if n := r.logCount("call limit reached", map[string]string{"limit": "calls_per_user", "subject": "dave"}); n != 1 {
		t.Errorf("%d log lines for dave's calls_per_user, want 1", n)
	}
	for _, d := range dialogs {
		bye := d.Request("BYE")
		dave.Send(bye)
		r.c1.Reply(r.c1.WaitRequest("BYE"), 200, "OK")
		dave.WaitFinal(bye)
	}
	// Once a call has ended there is room again.
	inv := invite(dave, "0301234567")
	_, authed := r.c1.authInvite(407)
	r.c1.Reply(authed, 486, "Busy Here")
	if res := dave.WaitFinal(inv); res.StatusCode != 486 {
		t.Errorf("after the calls ended: %d, want the carrier's 486", res.StatusCode)
	}
	if n, err := r.metric("switchboard_trunk_limit_refusals_total", `limit="calls_per_user"`); err != nil || n != "1" {
		t.Errorf("switchboard_trunk_limit_refusals_total{limit=calls_per_user} = %q, %v; want 1", n, err)
	}
	if n, err := r.metric("switchboard_trunk_limit_refusals_total", `limit="blocked"`); err != nil || n != "4" {
		t.Errorf("switchboard_trunk_limit_refusals_total{limit=blocked} = %q, %v; want 4", n, err)
	}
}

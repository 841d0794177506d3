package sip

import (
	"strconv"
	"testing"
	"time"

	gosip "github.com/emiago/sipgo/sip"

	"github.com/switchboard/switchboard/cdr"
	"github.com/switchboard/switchboard/internal/siptest"
)

// bobs registers n phones of bob (bob1..bobn) and returns them.
func bobs(sw *testSwitch, n int) []*siptest.Phone {
	sw.t.Helper()
	var ps []*siptest.Phone
	for i := 1; i <= n; i++ {
		ps = append(ps, sw.registered("bob", "bob"+strconv.Itoa(i)))
	}
	if bs := sw.reg.Location().Lookup("bob"); len(bs) != n {
		sw.t.Fatalf("bob has %d bindings, want %d", len(bs), n)
	}
	return ps
}

// cancelled expects p to get a CANCEL for the INVITE req and answers it as
// a UAS does: 200 for the CANCEL, 487 for the INVITE.
func cancelled(t *testing.T, p *siptest.Phone, req *gosip.Request) {
	t.Helper()
	c := p.Wait(siptest.And(siptest.IsRequest("CANCEL"), siptest.CallID(req.CallID().Value())), 0, "CANCEL").(*gosip.Request)
	if c.Via().Params.GetOr("branch", "") != req.Via().Params.GetOr("branch", "") {
		t.Errorf("CANCEL branch %v does not match the INVITE's %v", c.Via(), req.Via())
	}
	if c.Recipient.String() != req.Recipient.String() {
		t.Errorf("CANCEL Request-URI %s, INVITE's %s", c.Recipient.String(), req.Recipient.String())
	}
	p.Reply(c, 200, "OK")
	p.Reply(req, 487, "Request Terminated")
	// The proxy's INVITE client transaction ACKs the 487 (RFC 3261 §17.1.1.3).
	p.Wait(siptest.And(siptest.IsRequest("ACK"), siptest.CallID(req.CallID().Value())), 0, "ACK for 487")
}

func TestForkFirst2xxWins(t *testing.T) {
	sw := startSwitch(t)
	b := bobs(sw, 3)
	alice := sw.registered("alice", "")
	inv := invite(t, alice, "bob")
	reqs := make([]*gosip.Request, 3)
	for i, p := range b {
		reqs[i] = p.WaitRequest("INVITE")
	}
	if reqs[0].Via().Params.GetOr("branch", "") == reqs[1].Via().Params.GetOr("branch", "") {
		t.Errorf("forked branches share a branch parameter")
	}

	// bob1 is busy, bob3 rings for ever, bob2 rings and answers.
	b[0].Reply(reqs[0], 486, "Busy Here")
	b[0].Wait(siptest.IsRequest("ACK"), 0, "ACK for 486")
	b[2].Reply(reqs[2], 180, "Ringing")
	alice.WaitResponse(inv, 180, 180)
	b[1].Reply(reqs[1], 180, "Ringing")
	b[1].Reply(reqs[1], 200, "OK")

	ok := alice.WaitFinal(inv)
	wantStatus(t, ok, 200)
	if tag, _ := ok.To().Params.Get("tag"); tag != b[1].Tag(reqs[1].CallID().Value()) {
		t.Errorf("200 To tag %q is not bob2's", tag)
	}
	cancelled(t, b[2], reqs[2])

	ad := alice.UACDialog(inv, ok)
	alice.Send(ad.Request("ACK"))
	b[1].WaitRequest("ACK")
	bye := ad.Request("BYE")
	alice.Send(bye)
	b[1].Reply(b[1].WaitRequest("BYE"), 200, "OK")
	wantStatus(t, alice.WaitFinal(bye), 200)

	// alice saw exactly one final response; bob1 never got a CANCEL.
	alice.ExpectNone(siptest.IsResponseTo(inv, 300, 699), 100*time.Millisecond, "second final response")
	b[0].ExpectNone(siptest.IsRequest("CANCEL"), 50*time.Millisecond, "CANCEL after a final response")
	r := sw.record(inv.Get("Call-ID"), "ended", func(r cdr.Record) bool { return !r.Ended.IsZero() })
	if r.Status != 200 || r.HangupBy != "caller" {
		t.Errorf("CDR %+v", r)
	}
}

func TestForkBestResponse(t *testing.T) {
	tests := []struct {
		codes []int
		want  []int
	}{
		{codes: []int{486, 404}, want: []int{486, 404}},
		{codes: []int{503, 486}, want: []int{486}},
		{codes: []int{480, 302}, want: []int{302}},
		{codes: []int{503, 503}, want: []int{500}}, // §16.7 step 6: 503 becomes 500
		{codes: []int{486, 401}, want: []int{401}}, // a challenge the caller can act on
	}
	for _, tc := range tests {
		t.Run(strconv.Itoa(tc.codes[0])+"+"+strconv.Itoa(tc.codes[1]), func(t *testing.T) {
			sw := startSwitch(t)
			b := bobs(sw, 2)
			alice := sw.registered("alice", "")
			inv := invite(t, alice, "bob")
			reqs := []*gosip.Request{b[0].WaitRequest("INVITE"), b[1].WaitRequest("INVITE")}
			for i, code := range tc.codes {
				var extra []string
				switch code {
				case 302:
					extra = []string{"Contact: <sip:bob@192.0.2.99>"}
				case 401:
					extra = []string{`WWW-Authenticate: Digest realm="bob.example", nonce="abc", qop="auth"`}
				}
				b[i].Reply(reqs[i], 180, "Ringing")
				b[i].Reply(reqs[i], code, "Status "+strconv.Itoa(code), extra...)
			}
			res := alice.WaitFinal(inv)
			wantStatus(t, res, tc.want...)
			alice.Send(siptest.Ack(inv, res))
			if res.StatusCode == 401 && len(headerValues(res, "WWW-Authenticate")) != 1 {
				t.Errorf("401 lost its challenge:\n%s", res)
			}
			alice.ExpectNone(siptest.IsResponseTo(inv, 200, 699), 100*time.Millisecond, "second final response")
		})
	}
}

func TestFork6xxCancelsOtherBranches(t *testing.T) {
	sw := startSwitch(t)
	b := bobs(sw, 2)
	alice := sw.registered("alice", "")
	inv := invite(t, alice, "bob")
	r1, r2 := b[0].WaitRequest("INVITE"), b[1].WaitRequest("INVITE")
	b[0].Reply(r1, 180, "Ringing")
	alice.WaitResponse(inv, 180, 180)
	b[1].Reply(r2, 603, "Decline")
	res := alice.WaitFinal(inv)
	wantStatus(t, res, 603)
	alice.Send(siptest.Ack(inv, res))
	cancelled(t, b[0], r1)
	alice.ExpectNone(siptest.IsResponseTo(inv, 200, 699), 100*time.Millisecond, "second final response")
	r := sw.record(inv.Get("Call-ID"), "ended", func(r cdr.Record) bool { return !r.Ended.IsZero() })
	if r.Status != 603 || r.HangupBy != "callee" {
		t.Errorf("CDR %+v: want 603 by callee", r)
	}
}

func TestCallerCancels(t *testing.T) {
	sw := startSwitch(t)
	b := bobs(sw, 2)
	alice := sw.registered("alice", "")
	inv := invite(t, alice, "bob")
	r1, r2 := b[0].WaitRequest("INVITE"), b[1].WaitRequest("INVITE")
	b[0].Reply(r1, 180, "Ringing")
	b[1].Reply(r2, 183, "Session Progress")
	alice.WaitResponse(inv, 180, 180)
	alice.WaitResponse(inv, 183, 183)

	c := siptest.Cancel(inv)
	alice.Send(c)
	wantStatus(t, alice.WaitFinal(c), 200)
	res := alice.WaitFinal(inv)
	wantStatus(t, res, 487)
	alice.Send(siptest.Ack(inv, res))
	cancelled(t, b[0], r1)
	cancelled(t, b[1], r2)

	r := sw.record(inv.Get("Call-ID"), "ended", func(r cdr.Record) bool { return !r.Ended.IsZero() })
	if r.Status != 487 || r.HangupBy != "caller" || !r.Answered.IsZero() {
		t.Errorf("CDR %+v: want 487 by caller, not answered", r)
	}
}

// TestCallerCancelsBeforeProvisional: the caller gives up before the callee
// has sent any provisional response. The proxy may not CANCEL yet (RFC 3261
// §9.1), but must once the callee's 180 arrives, and the callee's phone must
// stop ringing.
func TestCallerCancelsBeforeProvisional(t *testing.T) {
	sw := startSwitch(t)
	bob := sw.registered("bob", "")
	alice := sw.registered("alice", "")
	inv := invite(t, alice, "bob")
	req := bob.WaitRequest("INVITE")

	c := siptest.Cancel(inv)
	alice.Send(c)
	wantStatus(t, alice.WaitFinal(c), 200)
	res := alice.WaitFinal(inv)
	wantStatus(t, res, 487)
	alice.Send(siptest.Ack(inv, res))

	bob.ExpectNone(siptest.IsRequest("CANCEL"), 200*time.Millisecond, "CANCEL before any provisional response (RFC 3261 §9.1)")
	bob.Reply(req, 180, "Ringing")
	cancelled(t, bob, req)
	alice.ExpectNone(siptest.IsResponseTo(inv, 101, 699), 100*time.Millisecond, "response after 487")
}

func TestCancelUnknownTransaction(t *testing.T) {
	sw := startSwitch(t)
	alice := sw.registered("alice", "")
	c := siptest.Cancel(alice.Request("INVITE", callURI("bob")))
	alice.Send(c)
	wantStatus(t, alice.WaitFinal(c), 481)
}

func TestTimerC(t *testing.T) {
	sw := startSwitch(t, func(c *Config) { c.TimerC = time.Second })
	bob := sw.registered("bob", "")
	alice := sw.registered("alice", "")
	inv := invite(t, alice, "bob")
	req := bob.WaitRequest("INVITE")
	start := time.Now()
	bob.Reply(req, 180, "Ringing")
	alice.WaitResponse(inv, 180, 180)

	cancelled(t, bob, req)
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Errorf("CANCEL after %s, before Timer C (1s)", d)
	}
	res := alice.WaitFinal(inv)
	wantStatus(t, res, 408)
	alice.Send(siptest.Ack(inv, res))
	r := sw.record(inv.Get("Call-ID"), "ended", func(r cdr.Record) bool { return !r.Ended.IsZero() })
	if r.Status != 408 || r.HangupBy != "switch" {
		t.Errorf("CDR %+v: want 408 by switch", r)
	}
}

// TestTimerCRestartsOnProvisional: each provisional response restarts
// Timer C (RFC 3261 §16.7 step 2), so a callee that keeps sending 180 is
// not cut off.
func TestTimerCRestartsOnProvisional(t *testing.T) {
	sw := startSwitch(t, func(c *Config) { c.TimerC = 2 * time.Second })
	bob := sw.registered("bob", "")
	alice := sw.registered("alice", "")
	inv := invite(t, alice, "bob")
	req := bob.WaitRequest("INVITE")
	// 5 provisionals 600ms apart: 3s in all, past Timer C unless restarted.
	for i := 0; i < 5; i++ {
		bob.Reply(req, 180+i%2*3, "Progress")
		bob.ExpectNone(siptest.IsRequest("CANCEL"), 600*time.Millisecond, "CANCEL while the callee sends provisionals")
	}
	bob.Reply(req, 200, "OK")
	ok := alice.WaitFinal(inv)
	wantStatus(t, ok, 200)
	ad := alice.UACDialog(inv, ok)
	alice.Send(ad.Request("ACK"))
	bob.WaitRequest("ACK")
}

func TestTimerCWithoutProvisional(t *testing.T) {
	sw := startSwitch(t, func(c *Config) { c.TimerC = time.Second })
	bob := sw.registered("bob", "")
	alice := sw.registered("alice", "")
	inv := invite(t, alice, "bob")
	bob.WaitRequest("INVITE") // and never a response
	res := alice.WaitFinal(inv)
	wantStatus(t, res, 408)
	alice.Send(siptest.Ack(inv, res))
	bob.ExpectNone(siptest.IsRequest("CANCEL"), 100*time.Millisecond, "CANCEL without a provisional response (RFC 3261 §9.1)")
}

// TestProvisionalBeforeFinal: a 180 and the 200 the callee sends right
// after it reach the caller in that order (responseorder.go): sipgo's
// goroutine per message, the last one started running first, had the
// fork see the 200 first and drop the 180.
func TestProvisionalBeforeFinal(t *testing.T) {
	sw := startSwitch(t)
	bob := sw.registered("bob", "")
	alice := sw.registered("alice", "")
	for i := range 50 {
		inv := invite(t, alice, "bob")
		answer(t, bob, bob.WaitRequest("INVITE"))
		first := alice.Wait(siptest.IsResponseTo(inv, 101, 699), 5*time.Second, "the 180").(*gosip.Response)
		if first.StatusCode != 180 {
			t.Errorf("call %d: the caller got %d before the 180", i, first.StatusCode)
		}
		ok := alice.WaitResponse(inv, 200, 200)
		alice.Send(alice.UACDialog(inv, ok).Request("ACK"))
	}
}

package sip

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	gosip "github.com/emiago/sipgo/sip"

	"github.com/switchboard/switchboard/cdr"
	"github.com/switchboard/switchboard/internal/siptest"
)

func TestCallAliceToBob(t *testing.T) {
	sw := startSwitch(t)
	udp := sw.srv.Addrs()["udp"]
	bob := sw.registered("bob", "")
	alice := sw.registered("alice", "")

	// The first INVITE is challenged for proxy credentials.
	first := sdpInvite(alice, "bob")
	alice.Send(first)
	res := alice.WaitFinal(first)
	wantStatus(t, res, 407)
	if len(headerValues(res, "Proxy-Authenticate")) != 2 || len(headerValues(res, "WWW-Authenticate")) != 0 {
		t.Errorf("407 must carry two Proxy-Authenticate (MD5, SHA-256) and no WWW-Authenticate:\n%s", res)
	}
	inv := alice.Authenticate(first, res, "SHA-256")
	alice.Send(inv)
	alice.WaitResponse(inv, 100, 100)

	req := bob.WaitRequest("INVITE")
	if got := req.Recipient.String(); got != bob.Contact() {
		t.Errorf("INVITE reached bob with Request-URI %s, want his contact %s", got, bob.Contact())
	}
	rr := headerValues(req, "Record-Route")
	if len(rr) != 1 || !strings.Contains(rr[0], udp) || !strings.Contains(rr[0], ";lr") {
		t.Errorf("Record-Route %q, want one loose-routing entry for %s", rr, udp)
	}
	if mf := req.MaxForwards(); mf == nil || mf.Val() != 69 {
		t.Errorf("Max-Forwards %v, want 69", mf)
	}
	if pa := headerValues(req, "Proxy-Authorization"); len(pa) != 0 {
		t.Errorf("our Proxy-Authorization was forwarded: %q", pa)
	}
	vias := headerValues(req, "Via")
	if len(vias) != 2 || !strings.Contains(vias[0], udp) || !strings.Contains(vias[1], alice.Addr().String()) {
		t.Errorf("Vias %q, want the proxy's over alice's", vias)
	}
	if string(req.Body()) != inv.Body {
		t.Errorf("SDP changed without a media relay:\n%s", req.Body())
	}
	if c := req.Contact(); c == nil || c.Address.String() != alice.Contact() {
		t.Errorf("Contact %v, want alice's %s unchanged", c, alice.Contact())
	}

	// (sipgo handles each datagram in a goroutine of its own, so a 180 and
	// a 200 sent back to back may be relayed in either order, and a 180
	// after the 200 is dropped; a phone rings before it answers.)
	bob.Reply(req, 180, "Ringing")
	alice.WaitResponse(inv, 180, 180)
	bob.Reply(req, 200, "OK")
	ok := alice.WaitResponse(inv, 200, 200)
	if vias := headerValues(ok, "Via"); len(vias) != 1 || !strings.Contains(vias[0], alice.Addr().String()) {
		t.Errorf("200 reached alice with Vias %q, want only hers", vias)
	}
	if rr := headerValues(ok, "Record-Route"); len(rr) != 1 {
		t.Errorf("200 Record-Route %q, want the proxy's", rr)
	}

	ad := alice.UACDialog(inv, ok)
	ack := ad.Request("ACK")
	alice.Send(ack)
	got := bob.WaitRequest("ACK")
	if got.Recipient.String() != bob.Contact() {
		t.Errorf("ACK Request-URI %s, want %s", got.Recipient.String(), bob.Contact())
	}
	if r := headerValues(got, "Route"); len(r) != 0 {
		t.Errorf("ACK reached bob with Route %q; the proxy must pop its own", r)
	}

	bye := ad.Request("BYE")
	alice.Send(bye)
	b := bob.WaitRequest("BYE")
	if r := headerValues(b, "Route"); len(r) != 0 {
		t.Errorf("BYE reached bob with Route %q", r)
	}
	if mf := b.MaxForwards(); mf == nil || mf.Val() != 69 {
		t.Errorf("BYE Max-Forwards %v, want 69", mf)
	}
	bob.Reply(b, 200, "OK")
	wantStatus(t, alice.WaitFinal(bye), 200)

	r := sw.record(inv.Get("Call-ID"), "ended", func(r cdr.Record) bool { return !r.Ended.IsZero() })
	if r.Caller != "alice@"+testDomain || r.Callee != "bob@"+testDomain {
		t.Errorf("CDR caller %q callee %q", r.Caller, r.Callee)
	}
	if r.Answered.IsZero() || r.Status != 200 || r.HangupBy != "caller" {
		t.Errorf("CDR %+v: want answered, status 200, hangup_by caller", r)
	}
	if r.Answered.Before(r.Started) || r.Ended.Before(r.Answered) {
		t.Errorf("CDR times out of order: %+v", r)
	}
	if rs := sw.records("count", func([]cdr.Record) bool { return true }); len(rs) != 1 {
		t.Errorf("%d call records for one call (the 407 retry is the same call), want 1: %+v", len(rs), rs)
	}
}

func TestCalleeHangsUp(t *testing.T) {
	sw := startSwitch(t)
	bob := sw.registered("bob", "")
	alice := sw.registered("alice", "")
	inv := invite(t, alice, "bob")
	req := bob.WaitRequest("INVITE")
	bd := answer(t, bob, req)
	ok := alice.WaitResponse(inv, 200, 200)
	ad := alice.UACDialog(inv, ok)
	alice.Send(ad.Request("ACK"))
	bob.WaitRequest("ACK")

	bye := bd.Request("BYE")
	bob.Send(bye)
	b := alice.WaitRequest("BYE")
	if b.Recipient.String() != alice.Contact() {
		t.Errorf("BYE reached alice with Request-URI %s, want %s", b.Recipient.String(), alice.Contact())
	}
	if r := headerValues(b, "Route"); len(r) != 0 {
		t.Errorf("BYE reached alice with Route %q", r)
	}
	alice.Reply(b, 200, "OK")
	wantStatus(t, bob.WaitFinal(bye), 200)

	r := sw.record(inv.Get("Call-ID"), "ended", func(r cdr.Record) bool { return !r.Ended.IsZero() })
	if r.HangupBy != "callee" || r.Answered.IsZero() || r.Status != 200 {
		t.Errorf("CDR %+v: want answered, hangup_by callee", r)
	}
}

func TestCallRefused(t *testing.T) {
	tests := []struct {
		name string
		// send sends the INVITE (with or without credentials) and returns it.
		send     func(t *testing.T, sw *testSwitch, alice *siptest.Phone) *siptest.Msg
		want     []int
		check    func(t *testing.T, res *gosip.Response)
		cdr      int  // status of the call record; 0: no record
		forwards bool // bob gets the INVITE (must not)
	}{
		{name: "authenticated as another user", send: func(t *testing.T, sw *testSwitch, alice *siptest.Phone) *siptest.Msg {
			m := alice.Request("INVITE", callURI("bob"))
			alice.Send(m)
			res := alice.WaitFinal(m)
			wantStatus(t, res, 407)
			alice.Send(siptest.Ack(m, res))
			m = alice.Retry(m)
			if err := siptest.Authorize(m, res, "MD5", siptest.Credentials{User: "carol", Password: passwords["carol"]}); err != nil {
				t.Fatal(err)
			}
			alice.Send(m)
			return m
		}, want: []int{403}},
		{name: "wrong password", send: func(t *testing.T, sw *testSwitch, alice *siptest.Phone) *siptest.Msg {
			m := alice.Request("INVITE", callURI("bob"))
			alice.Send(m)
			res := alice.WaitFinal(m)
			alice.Send(siptest.Ack(m, res))
			m = alice.Retry(m)
			if err := siptest.Authorize(m, res, "MD5", siptest.Credentials{User: "alice", Password: "nope"}); err != nil {
				t.Fatal(err)
			}
			alice.Send(m)
			return m
		}, want: []int{407}},
		{name: "unknown callee", send: func(t *testing.T, sw *testSwitch, alice *siptest.Phone) *siptest.Msg {
			return invite(t, alice, "nobody")
		}, want: []int{404}, cdr: 404},
		{name: "callee not registered", send: func(t *testing.T, sw *testSwitch, alice *siptest.Phone) *siptest.Msg {
			return invite(t, alice, "dave")
		}, want: []int{480}, cdr: 480},
		{name: "no user in Request-URI", send: func(t *testing.T, sw *testSwitch, alice *siptest.Phone) *siptest.Msg {
			m := alice.Request("INVITE", "sip:"+testDomain)
			return alice.SendAuthenticated(m)
		}, want: []int{404}, cdr: 404},
		{name: "Max-Forwards 0", send: func(t *testing.T, sw *testSwitch, alice *siptest.Phone) *siptest.Msg {
			m := alice.Request("INVITE", callURI("bob"))
			m.Set("Max-Forwards", "0")
			alice.Send(m)
			return m
		}, want: []int{483}},
		{name: "Proxy-Require", send: func(t *testing.T, sw *testSwitch, alice *siptest.Phone) *siptest.Msg {
			m := alice.Request("INVITE", callURI("bob"))
			m.Add("Proxy-Require", "foo")
			alice.Send(m)
			return m
		}, want: []int{420}, check: func(t *testing.T, res *gosip.Response) {
			if u := headerValues(res, "Unsupported"); len(u) != 1 || u[0] != "foo" {
				t.Errorf("420 Unsupported %q, want [foo]", u)
			}
		}},
		{name: "CSeq method differs", send: func(t *testing.T, sw *testSwitch, alice *siptest.Phone) *siptest.Msg {
			m := alice.Request("INVITE", callURI("bob"))
			m.Set("CSeq", "1 OPTIONS")
			alice.Send(m)
			return m
		}, want: []int{400}},
		{name: "relaying for a stranger", send: func(t *testing.T, sw *testSwitch, alice *siptest.Phone) *siptest.Msg {
			m := alice.Request("INVITE", "sip:someone@example.com")
			m.Set("From", "<sip:mallory@example.org>;tag=x1")
			alice.Send(m)
			return m
		}, want: []int{403}},
		{name: "pre-loaded route from a stranger", send: func(t *testing.T, sw *testSwitch, alice *siptest.Phone) *siptest.Msg {
			m := alice.Request("INVITE", callURI("bob"))
			m.Set("From", "<sip:mallory@example.org>;tag=x2")
			m.Add("Route", "<sip:127.0.0.1:9;lr>")
			alice.Send(m)
			return m
		}, want: []int{403}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sw := startSwitch(t)
			bob := sw.registered("bob", "")
			alice := sw.registered("alice", "")
			m := tc.send(t, sw, alice)
			res := alice.WaitFinal(m)
			wantStatus(t, res, tc.want...)
			if tc.check != nil {
				tc.check(t, res)
			}
			if m.Method() == "INVITE" {
				alice.Send(siptest.Ack(m, res))
			}
			if tc.cdr != 0 {
				r := sw.record(m.Get("Call-ID"), "ended", func(r cdr.Record) bool { return !r.Ended.IsZero() })
				if r.Status != tc.cdr || !r.Answered.IsZero() {
					t.Errorf("CDR %+v: want status %d, never answered", r, tc.cdr)
				}
			}
			// Nothing reached bob. (Checked last, by which time anything
			// forwarded would have arrived.)
			bob.ExpectNone(siptest.IsRequest("INVITE"), 100*time.Millisecond, "INVITE for a refused call")
		})
	}
}

// TestStrangersRefusedByDefault: with external callers off (the default) a
// call from a foreign domain is refused with 403 whatever the user — one
// that exists and is registered, one that exists but is not, one that does
// not exist — and reaches nobody.
func TestStrangersRefusedByDefault(t *testing.T) {
	sw := startSwitch(t)
	bob := sw.registered("bob", "")
	stranger := sw.phone("alice", "udp", "stranger")
	for _, method := range []string{"INVITE", "MESSAGE", "OPTIONS"} {
		for _, user := range []string{"bob", "carol", "nobody"} {
			m := stranger.Request(method, callURI(user))
			m.Set("From", "<sip:someone@example.org>;tag=s1")
			stranger.Send(m)
			res := stranger.WaitFinal(m)
			wantStatus(t, res, 403)
			if method == "INVITE" {
				stranger.Send(siptest.Ack(m, res))
			}
		}
	}
	bob.ExpectNone(siptest.IsRequest(""), 100*time.Millisecond, "a request from a stranger")
}

// TestCallFromForeignDomainWithExternalCallers: with external callers on, a
// stranger's call needs no credentials; unknown and unregistered users get
// the same answer.
func TestCallFromForeignDomainWithExternalCallers(t *testing.T) {
	sw := startSwitch(t, func(c *Config) { c.ExternalCallers = true; c.ExternalCallRate = 100 })
	bob := sw.registered("bob", "")
	stranger := sw.phone("alice", "udp", "stranger")
	m := stranger.Request("INVITE", callURI("bob"))
	m.Set("From", "<sip:someone@example.org>;tag=s1")
	stranger.Send(m)
	req := bob.WaitRequest("INVITE")
	bob.Reply(req, 486, "Busy Here")
	res := stranger.WaitFinal(m)
	wantStatus(t, res, 486)
	stranger.Send(siptest.Ack(m, res))
	for _, user := range []string{"carol", "nobody"} {
		m := stranger.Request("INVITE", callURI(user))
		m.Set("From", "<sip:someone@example.org>;tag=s2")
		stranger.Send(m)
		res := stranger.WaitFinal(m)
		wantStatus(t, res, 480)
		stranger.Send(siptest.Ack(m, res))
	}
}

// TestLoopDetected sends the INVITE bob received straight back to the
// proxy unchanged but for bob's own Via (a UA that forwards to its own AOR):
// the proxy recognises its Via and answers 482 (RFC 3261 §16.3 step 4).
func TestLoopDetected(t *testing.T) {
	sw := startSwitch(t)
	bob := sw.registered("bob", "")
	alice := sw.registered("alice", "")
	inv := invite(t, alice, "bob")
	req := bob.WaitRequest("INVITE")

	loop := req.Clone()
	loop.Recipient = gosip.Uri{Scheme: "sip", User: "bob", Host: testDomain}
	via := gosip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: "127.0.0.1", Port: int(bob.Addr().Port()), Params: gosip.NewParams()}
	via.Params.Add("branch", siptest.NewBranch())
	loop.PrependHeader(&via)
	bob.Send(loop)
	res := bob.Wait(func(m gosip.Message) bool {
		r, ok := m.(*gosip.Response)
		return ok && r.StatusCode >= 200 && r.Via() != nil && r.Via().Params.GetOr("branch", "") == via.Params.GetOr("branch", "")
	}, 0, "final response to the looped INVITE").(*gosip.Response)
	wantStatus(t, res, 482)

	bob.Reply(req, 482, "Loop Detected")
	wantStatus(t, alice.WaitFinal(inv), 482)
}

// TestLoopThroughRegisteredContact registers bob with a Contact that is the
// proxy itself (its TCP listener; the REGISTER comes from a UDP socket on
// the same port number, so the Contact is taken as the real address). A
// call to bob must end with 482 or 483, never ring forever or bounce.
func TestLoopThroughRegisteredContact(t *testing.T) {
	var sw *testSwitch
	var pc net.PacketConn
	for i := 0; pc == nil; i++ {
		// The UDP port of the TCP listener's number may be taken: try
		// another switch.
		sw = startSwitch(t)
		_, port, _ := net.SplitHostPort(sw.srv.Addrs()["tcp"])
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:"+port); err != nil && i == 5 {
			t.Fatal(err)
		}
	}
	tcp := sw.srv.Addrs()["tcp"]
	bob := siptest.NewPhone(t, siptest.Config{Server: sw.srv.Addrs()["udp"], PacketConn: pc, User: "bob", Password: passwords["bob"], Trace: sw.tr})
	reg := bob.Register(3600)
	reg.Set("Contact", "<sip:bob@"+tcp+";transport=tcp>")
	bob.Send(reg)
	res := bob.WaitFinal(reg)
	reg = bob.Authenticate(reg, res, "MD5")
	bob.Send(reg)
	wantStatus(t, bob.WaitFinal(reg), 200)
	bs := sw.reg.Location().Lookup("bob")
	if len(bs) != 1 || bs[0].NAT {
		t.Fatalf("bindings %+v: want one binding whose Contact (the proxy) is trusted", bs)
	}

	alice := sw.registered("alice", "")
	inv := invite(t, alice, "bob")
	res = alice.WaitFinalWithin(inv, 15*time.Second)
	if res.StatusCode != 482 && res.StatusCode != 483 {
		t.Errorf("call to a Contact that is the proxy itself: got %d %s, want 482 Loop Detected (or 483)", res.StatusCode, res.Reason)
	}
	alice.Send(siptest.Ack(inv, res))
	bob.ExpectNone(siptest.IsRequest("INVITE"), 50*time.Millisecond, "INVITE")
}

// TestMaxForwardsDecrementedAlongTheWay checks a request with
// Max-Forwards 1 still goes out (with 0) and one with none gets 70.
func TestMaxForwardsDecrementedAlongTheWay(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{{"1", 0}, {"", 70}, {"255", 254}} {
		t.Run("Max-Forwards "+tc.in, func(t *testing.T) {
			sw := startSwitch(t)
			bob := sw.registered("bob", "")
			alice := sw.registered("alice", "")
			m := alice.Request("INVITE", callURI("bob"))
			if tc.in == "" {
				m.Del("Max-Forwards")
			} else {
				m.Set("Max-Forwards", tc.in)
			}
			inv := alice.SendAuthenticated(m)
			req := bob.WaitRequest("INVITE")
			if mf := req.MaxForwards(); mf == nil || int(mf.Val()) != tc.want {
				t.Errorf("Max-Forwards %v, want %d", mf, tc.want)
			}
			bob.Reply(req, 486, "Busy Here")
			res := alice.WaitFinal(inv)
			wantStatus(t, res, 486)
			alice.Send(siptest.Ack(inv, res))
		})
	}
}

func TestInDialogRequestNotThroughUs(t *testing.T) {
	sw := startSwitch(t)
	alice := sw.registered("alice", "")
	m := alice.Request("BYE", callURI("bob"))
	m.Set("To", "<"+callURI("bob")+">;tag=nope")
	alice.Send(m)
	wantStatus(t, alice.WaitFinal(m), 481)
}

func TestFailedCallRecords(t *testing.T) {
	tests := []struct {
		code int
		by   string
	}{{486, "callee"}, {603, "callee"}, {500, "switch"}}
	for _, tc := range tests {
		t.Run(strconv.Itoa(tc.code), func(t *testing.T) {
			sw := startSwitch(t)
			bob := sw.registered("bob", "")
			alice := sw.registered("alice", "")
			inv := invite(t, alice, "bob")
			req := bob.WaitRequest("INVITE")
			bob.Reply(req, 180, "Ringing")
			bob.Reply(req, tc.code, "Nope")
			res := alice.WaitFinal(inv)
			wantStatus(t, res, tc.code)
			alice.Send(siptest.Ack(inv, res))
			r := sw.record(inv.Get("Call-ID"), "ended", func(r cdr.Record) bool { return !r.Ended.IsZero() })
			if r.Status != tc.code || !r.Answered.IsZero() || r.HangupBy != tc.by {
				t.Errorf("CDR %+v: want status %d, not answered, hangup_by %s", r, tc.code, tc.by)
			}
		})
	}
}

// TestAckWithForeignRouteNotRelayed: the switch follows a pre-loaded Route
// only for its own users (targets: "pre-loaded route from a foreign user"
// → 403). An ACK from a stranger that names someone else's Route must not be
// relayed either, or anyone can make the switch send datagrams anywhere.
func TestAckWithForeignRouteNotRelayed(t *testing.T) {
	sw := startSwitch(t)
	victim := siptest.NewPhone(t, siptest.Config{User: "victim", Name: "victim", Trace: sw.tr})
	stranger := sw.phone("alice", "udp", "stranger")
	for _, method := range []string{"ACK", "INVITE"} {
		m := stranger.Request(method, "sip:victim@"+victim.Addr().String())
		m.Set("From", "<sip:mallory@example.org>;tag=m1")
		m.Add("Route", "<sip:"+victim.Addr().String()+";lr>")
		stranger.Send(m)
		if method == "INVITE" {
			res := stranger.WaitFinal(m)
			wantStatus(t, res, 403)
			stranger.Send(siptest.Ack(m, res))
		}
	}
	// Anything relayed would have arrived by the time the INVITE was refused.
	victim.ExpectNone(siptest.IsRequest(""), 100*time.Millisecond, "request relayed for a stranger")
}

func TestReInviteAndInfoInDialog(t *testing.T) {
	sw := startSwitch(t)
	bob := sw.registered("bob", "")
	alice := sw.registered("alice", "")
	inv := invite(t, alice, "bob")
	req := bob.WaitRequest("INVITE")
	bd := answer(t, bob, req)
	ok := alice.WaitFinal(inv)
	ad := alice.UACDialog(inv, ok)
	alice.Send(ad.Request("ACK"))
	bob.WaitRequest("ACK")

	// alice puts bob on hold: re-INVITE through the proxy, not challenged.
	re := ad.Request("INVITE")
	re.Set("Contact", "<"+alice.Contact()+">")
	re.Set("Content-Type", "application/sdp")
	re.Body = strings.Replace(sdpOffer(alice), "a=rtpmap", "a=sendonly\r\na=rtpmap", 1)
	alice.Send(re)
	got := bob.WaitRequest("INVITE")
	if got.CSeq().SeqNo != uint32(re.CSeq()) || !strings.Contains(string(got.Body()), "sendonly") {
		t.Errorf("re-INVITE reached bob as CSeq %d with body %q", got.CSeq().SeqNo, got.Body())
	}
	if rr := headerValues(got, "Record-Route"); len(rr) != 0 {
		t.Errorf("re-INVITE was record-routed again: %q", rr)
	}
	bob.Reply(got, 200, "OK")
	ok2 := alice.WaitFinal(re)
	wantStatus(t, ok2, 200)
	alice.Send(ad.Request("ACK"))
	bob.WaitRequest("ACK")

	// bob sends INFO the other way.
	info := bd.Request("INFO")
	info.Set("Content-Type", "application/dtmf-relay")
	info.Body = "Signal=5\r\nDuration=160\r\n"
	bob.Send(info)
	gi := alice.WaitRequest("INFO")
	if string(gi.Body()) != info.Body {
		t.Errorf("INFO body %q", gi.Body())
	}
	alice.Reply(gi, 200, "OK")
	wantStatus(t, bob.WaitFinal(info), 200)
}

func TestCallAfterTCPPhoneDisconnects(t *testing.T) {
	sw := startSwitch(t)
	bob := sw.phone("bob", "tcp", "")
	bob.MustRegister()
	bob.Close()
	eventually(t, 5*time.Second, "TCP binding dropped", func() bool { return len(sw.reg.Location().Lookup("bob")) == 0 })
	alice := sw.registered("alice", "")
	inv := invite(t, alice, "bob")
	res := alice.WaitFinal(inv)
	wantStatus(t, res, 480)
	alice.Send(siptest.Ack(inv, res))
}

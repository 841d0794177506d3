package gateway_test

import (
	"strings"
	"testing"
	"time"

	gosip "github.com/emiago/sipgo/sip"

	"github.com/switchboard/switchboard/gateway"
	"github.com/switchboard/switchboard/internal/siptest"
)

// answerCall makes bob answer the INVITE the gateway sent for a browser's
// call, and returns it.
func (p *phone) answerCall(t *testing.T) *gosip.Request {
	t.Helper()
	inv := p.WaitRequest("INVITE")
	p.learn(inv.Body())
	p.respond(inv, 180, "Ringing", "")
	p.respond(inv, 200, "OK", p.sdp(""))
	p.Wait(siptest.IsRequest("ACK"), 5*time.Second, "ACK")
	return inv
}

func TestOutgoingCallAudioBothWaysAndHangup(t *testing.T) {
	e := newEnv(t, nil)
	bob := e.phone("bob")
	bob.MustRegister()
	alice := e.browser("alice")
	alice.mustLogin("alice")

	alice.call("c1", "bob", false)
	if m := alice.wait("call_state", "trying"); m.Call != "c1" {
		t.Fatalf("trying for call %q", m.Call)
	}
	inv := bob.answerCall(t)
	if !strings.Contains(string(inv.Body()), "PCMU/8000") {
		t.Errorf("INVITE SDP lacks the browser's PCMU:\n%s", inv.Body())
	}
	ans := alice.wait("answer", "")
	alice.applyAnswer(ans.SDP)
	alice.wait("call_state", "answered")
	alice.startSending()

	eventually(t, 10*time.Second, "audio from bob reaches the browser", func() bool { return alice.rxAudio.Load() > 20 })
	eventually(t, 10*time.Second, "audio from the browser reaches bob", func() bool { return bob.rx.Load() > 20 })

	alice.send(map[string]string{"type": "hangup", "call": "c1"})
	bye := bob.WaitRequest("BYE")
	bob.respond(bye, 200, "OK", "")
	if m := alice.wait("call_state", "ended"); m.Call != "c1" {
		t.Fatalf("ended for %q", m.Call)
	}
}

func TestLogin(t *testing.T) {
	e := newEnv(t, nil)
	b := e.browser("tab")
	if m := b.login("alice", "wrong"); m.Type != "error" || m.Code != "auth_failed" || m.ID != "l1" {
		t.Fatalf("wrong password: %+v, want error auth_failed", m)
	}
	if m := b.login("nobody", "x"); m.Type != "error" || m.Code != "auth_failed" {
		t.Fatalf("unknown user: %+v, want error auth_failed", m)
	}
	if got := e.reg.Location().Lookup("alice"); len(got) != 0 {
		t.Fatalf("a refused sign-in left bindings: %+v", got)
	}
	m := b.login("alice", "alicepw")
	if m.Type != "logged_in" || m.User != "alice" || m.AOR != "sip:alice@switchboard.local" {
		t.Fatalf("login: %+v", m)
	}
	if got := e.reg.Location().Lookup("alice"); len(got) != 1 {
		t.Fatalf("bindings after sign-in: %+v, want 1", got)
	}
	if m := b.login("alice", "alicepw"); m.Code != "already_signed_in" {
		t.Fatalf("second login on one connection: %+v", m)
	}
	// A second tab of the same user shares the registration, and a wrong
	// password there is refused without touching it.
	b2 := e.browser("tab2")
	if m := b2.login("alice", "nope"); m.Code != "auth_failed" {
		t.Fatalf("second tab, wrong password: %+v", m)
	}
	b2.mustLogin("alice")
	if got := e.reg.Location().Lookup("alice"); len(got) != 1 {
		t.Fatalf("bindings with two tabs: %d, want 1", len(got))
	}
	// The registration ends with the last tab.
	b.close()
	time.Sleep(200 * time.Millisecond)
	if got := e.reg.Location().Lookup("alice"); len(got) != 1 {
		t.Fatalf("bindings with one tab left: %d, want 1", len(got))
	}
	b2.send(map[string]string{"type": "logout", "id": "o"})
	b2.wait("logged_out", "")
	eventually(t, 5*time.Second, "unregistered after the last tab", func() bool { return len(e.reg.Location().Lookup("alice")) == 0 })
}

func TestLoginRateLimit(t *testing.T) {
	e := newEnv(t, func(c *gateway.Config) { c.LoginFailures = 2 })
	b := e.browser("tab")
	for range 2 {
		if m := b.login("alice", "bad"); m.Code != "auth_failed" {
			t.Fatalf("%+v", m)
		}
	}
	if m := b.login("alice", "alicepw"); m.Code != "rate_limited" {
		t.Fatalf("third try: %+v, want rate_limited", m)
	}
}

func TestProtocolErrors(t *testing.T) {
	e := newEnv(t, func(c *gateway.Config) { c.MaxMessageSize = 4096 })
	b := e.browser("tab")
	for _, tc := range []struct {
		name, send, code string
	}{
		{"malformed JSON", `{"type": "login", `, "bad_request"},
		{"not an object", `[1,2,3]`, "bad_request"},
		{"no type", `{"user":"x"}`, "bad_request"},
		{"unknown type", `{"type":"teleport"}`, "unknown_type"},
		{"call before login", `{"type":"call","to":"bob","sdp":"v=0"}`, "not_signed_in"},
		{"hangup before login", `{"type":"hangup","call":"x"}`, "not_signed_in"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b.sendRaw(tc.send)
			m := b.next()
			if m.Type != "error" || m.Code != tc.code || m.Message == "" {
				t.Fatalf("%s: got %+v, want error %s with a message", tc.send, m, tc.code)
			}
		})
	}
	b.mustLogin("alice")
	for _, tc := range []struct {
		name, send, code string
	}{
		{"unknown call", `{"type":"hangup","call":"nope"}`, "unknown_call"},
		{"hangup without call", `{"type":"hangup"}`, "bad_request"},
		{"bad address", `{"type":"call","to":"a b c","sdp":"v=0"}`, "bad_address"},
		{"call without sdp", `{"type":"call","to":"bob"}`, "bad_request"},
		{"message without text", `{"type":"message","to":"bob"}`, "bad_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b.sendRaw(tc.send)
			m := b.next()
			if m.Type != "error" || m.Code != tc.code {
				t.Fatalf("%s: got %+v, want error %s", tc.send, m, tc.code)
			}
		})
	}
	// A bad SDP fails the call with a clear error.
	b.sendRaw(`{"type":"call","call":"x1","to":"bob","sdp":"this is not sdp"}`)
	if m := b.wait("error", "bad_sdp"); m.Call != "x1" {
		t.Fatalf("bad sdp error for call %q", m.Call)
	}
	// The connection still works.
	b.sendRaw(`{"type":"ping","id":"p"}`)
	if m := b.wait("pong", ""); m.ID != "p" {
		t.Fatalf("pong %+v", m)
	}
	// An oversized message closes the connection with 1009.
	b.sendRaw(`{"type":"ping","pad":"` + strings.Repeat("x", 5000) + `"}`)
	select {
	case <-b.ended:
	case <-time.After(5 * time.Second):
		t.Fatal("connection still open after an oversized message")
	}
	eventually(t, 5*time.Second, "unregistered after the connection closed", func() bool { return len(e.reg.Location().Lookup("alice")) == 0 })
}

func TestOutgoingCallFailures(t *testing.T) {
	e := newEnv(t, nil)
	bob := e.phone("bob")
	bob.MustRegister()
	alice := e.browser("alice")
	alice.mustLogin("alice")
	for i, tc := range []struct {
		code   int
		reason string
		state  string
	}{
		{486, "Busy Here", "busy"},
		{603, "Decline", "declined"},
		{480, "Temporarily Unavailable", "unavailable"},
		{488, "Not Acceptable Here", "failed"},
	} {
		id := "f" + string(rune('0'+i))
		alice.call(id, "bob", false)
		inv := bob.WaitRequest("INVITE")
		bob.respond(inv, tc.code, tc.reason, "")
		bob.Wait(siptest.IsRequest("ACK"), 5*time.Second, "ACK")
		if tc.code == 488 {
			alice.waitCall(id, "error", "no_common_codec")
		}
		m := alice.waitCall(id, "call_state", tc.state)
		if m.Status != tc.code || m.Call != id {
			t.Errorf("%d: %+v", tc.code, m)
		}
		alice.stopMedia()
	}
	// Users that do not exist or are not registered.
	alice.call("nf", "nobody", false)
	if m := alice.waitCall("nf", "call_state", "not_found"); m.Status != 404 {
		t.Errorf("unknown user: %+v", m)
	}
	alice.call("un", "carol", false)
	if m := alice.waitCall("un", "call_state", "unavailable"); m.Status != 480 {
		t.Errorf("unregistered user: %+v", m)
	}
}

func TestOutgoingCancel(t *testing.T) {
	e := newEnv(t, nil)
	bob := e.phone("bob")
	bob.MustRegister()
	alice := e.browser("alice")
	alice.mustLogin("alice")
	alice.call("c", "bob", false)
	inv := bob.WaitRequest("INVITE")
	bob.respond(inv, 180, "Ringing", "")
	alice.wait("call_state", "ringing")
	alice.send(map[string]string{"type": "hangup", "call": "c"})
	cancel := bob.WaitRequest("CANCEL")
	bob.respond(cancel, 200, "OK", "")
	bob.respond(inv, 487, "Request Terminated", "")
	if m := alice.wait("call_state", "cancelled"); m.Status != 487 {
		t.Fatalf("%+v", m)
	}
}

func TestOutgoingNoAnswerTimeout(t *testing.T) {
	e := newEnv(t, func(c *gateway.Config) { c.AnswerTimeout = time.Second })
	bob := e.phone("bob")
	bob.MustRegister()
	alice := e.browser("alice")
	alice.mustLogin("alice")
	alice.call("c", "bob", false)
	inv := bob.WaitRequest("INVITE")
	bob.respond(inv, 180, "Ringing", "")
	cancel := bob.WaitRequest("CANCEL")
	bob.respond(cancel, 200, "OK", "")
	bob.respond(inv, 487, "Request Terminated", "")
	if m := alice.wait("call_state", "unavailable"); m.Reason != "no answer" {
		t.Fatalf("%+v", m)
	}
}

func TestHangupBySIPSide(t *testing.T) {
	e := newEnv(t, nil)
	bob := e.phone("bob")
	bob.MustRegister()
	alice := e.browser("alice")
	alice.mustLogin("alice")
	alice.call("c", "bob", false)
	inv := bob.answerCall(t)
	alice.applyAnswer(alice.wait("answer", "").SDP)
	alice.wait("call_state", "answered")
	bye := bob.byeAsCallee(inv)
	if res := bob.WaitFinal(bye); res.StatusCode != 200 {
		t.Fatalf("BYE got %d", res.StatusCode)
	}
	if m := alice.wait("call_state", "ended"); m.Reason == "" {
		t.Fatalf("%+v", m)
	}
}

// incoming has bob (a SIP phone) call alice, and returns the INVITE bob
// sent (with credentials).
func (p *phone) callUser(t *testing.T, user string) *siptest.Msg {
	t.Helper()
	inv := p.Request("INVITE", "sip:"+user+"@"+domain)
	inv.Add("Content-Type", "application/sdp")
	inv.Body = p.sdp("")
	return p.SendAuthenticated(inv)
}

func TestIncomingCallRingsEveryTab(t *testing.T) {
	e := newEnv(t, nil)
	bob := e.phone("bob")
	bob.MustRegister()
	tab1, tab2 := e.browser("tab1"), e.browser("tab2")
	tab1.mustLogin("alice")
	tab2.mustLogin("alice")

	inv := bob.callUser(t, "alice")
	in1, in2 := tab1.wait("incoming", ""), tab2.wait("incoming", "")
	if in1.Call != in2.Call || !strings.Contains(in1.From, "sip:bob@") || in1.SDP == "" {
		t.Fatalf("incoming: %+v / %+v", in1, in2)
	}
	bob.WaitResponse(inv, 180, 180)
	tab2.answer(in2, false)
	if m := tab1.wait("call_state", "answered_elsewhere"); m.Call != in1.Call {
		t.Fatalf("%+v", m)
	}
	tab2.wait("call_state", "answered")
	res := bob.WaitResponse(inv, 200, 200)
	bob.learn(res.Body())
	bob.Send(bob.inDialog("ACK", inv, res, inv.CSeq()))
	tab2.startSending()
	eventually(t, 10*time.Second, "audio from bob reaches the browser", func() bool { return tab2.rxAudio.Load() > 20 })
	eventually(t, 10*time.Second, "audio from the browser reaches bob", func() bool { return bob.rx.Load() > 20 })

	// DTMF from the SIP side is reported to the browser.
	bob.sendDTMF(5)
	if m := tab2.wait("dtmf", ""); m.Digit != "5" {
		t.Fatalf("dtmf %+v", m)
	}
	// Hold from the browser: a re-INVITE with a=sendonly.
	tab2.send(map[string]string{"type": "hold", "call": in2.Call})
	re := bob.WaitRequest("INVITE")
	if !strings.Contains(string(re.Body()), "a=sendonly") {
		t.Fatalf("hold re-INVITE:\n%s", re.Body())
	}
	bob.respond(re, 200, "OK", bob.sdp("recvonly"))
	bob.Wait(siptest.IsRequest("ACK"), 5*time.Second, "ACK for re-INVITE")
	if m := tab2.wait("hold_state", ""); m.Held == nil || !*m.Held || m.By != "local" {
		t.Fatalf("hold %+v", m)
	}
	tab2.send(map[string]string{"type": "resume", "call": in2.Call})
	re = bob.WaitRequest("INVITE")
	if !strings.Contains(string(re.Body()), "a=sendrecv") {
		t.Fatalf("resume re-INVITE:\n%s", re.Body())
	}
	bob.respond(re, 200, "OK", bob.sdp(""))
	if m := tab2.wait("hold_state", ""); m.Held == nil || *m.Held {
		t.Fatalf("resume %+v", m)
	}
	// Hold from the SIP side: the browser is told.
	reinv := bob.inDialog("INVITE", inv, res, inv.CSeq()+10)
	reinv.Add("Contact", "<"+bob.Contact()+">")
	reinv.Add("Content-Type", "application/sdp")
	reinv.Body = bob.sdp("sendonly")
	bob.Send(reinv)
	ok := bob.WaitFinal(reinv)
	if ok.StatusCode != 200 || !strings.Contains(string(ok.Body()), "a=recvonly") {
		t.Fatalf("re-INVITE sendonly answered %d:\n%s", ok.StatusCode, ok.Body())
	}
	bob.Send(bob.inDialog("ACK", inv, res, inv.CSeq()+10))
	if m := tab2.wait("hold_state", ""); m.Held == nil || !*m.Held || m.By != "remote" {
		t.Fatalf("remote hold %+v", m)
	}
	// bob hangs up.
	bye := bob.inDialog("BYE", inv, res, inv.CSeq()+20)
	bob.Send(bye)
	if r := bob.WaitFinal(bye); r.StatusCode != 200 {
		t.Fatalf("BYE %d", r.StatusCode)
	}
	tab2.wait("call_state", "ended")
}

func TestIncomingDeclineAndBusy(t *testing.T) {
	e := newEnv(t, nil)
	bob := e.phone("bob")
	bob.MustRegister()
	alice := e.browser("alice")
	alice.mustLogin("alice")

	// Every wait names its call: the gateway tells the tab "declined" after
	// it answered the caller, so that message of one call may come after
	// the next call's "incoming".
	inv := bob.callUser(t, "alice")
	in := alice.wait("incoming", "")
	alice.send(map[string]string{"type": "decline", "call": in.Call})
	if r := bob.WaitFinal(inv); r.StatusCode != 603 {
		t.Fatalf("decline: %d", r.StatusCode)
	}
	alice.waitCall(in.Call, "call_state", "declined")

	inv = bob.callUser(t, "alice")
	in = alice.wait("incoming", "")
	alice.send(map[string]string{"type": "decline", "call": in.Call, "reason": "busy"})
	if r := bob.WaitFinal(inv); r.StatusCode != 486 {
		t.Fatalf("decline busy: %d", r.StatusCode)
	}
	if m := alice.waitCall(in.Call, "call_state", "declined"); m.Status != 486 {
		t.Fatalf("decline busy, tab told %+v", m)
	}

	// The caller gives up: the tab is told.
	inv = bob.callUser(t, "alice")
	in = alice.wait("incoming", "")
	bob.WaitResponse(inv, 180, 180)
	bob.Send(siptest.Cancel(inv))
	if r := bob.WaitFinal(inv); r.StatusCode != 487 {
		t.Fatalf("cancel: %d", r.StatusCode)
	}
	if m := alice.waitCall(in.Call, "call_state", "cancelled"); m.Call != in.Call {
		t.Fatalf("%+v", m)
	}
	// SRTP/DTLS offers cannot be relayed to plain RTP: 488.
	inv = bob.Request("INVITE", "sip:alice@"+domain)
	inv.Add("Content-Type", "application/sdp")
	inv.Body = strings.Replace(bob.sdp(""), "RTP/AVP", "UDP/TLS/RTP/SAVPF", 1)
	inv = bob.SendAuthenticated(inv)
	if r := bob.WaitFinal(inv); r.StatusCode != 488 {
		t.Fatalf("SAVPF offer: %d", r.StatusCode)
	}
	// Nobody signed in: 480.
	carolInv := bob.callUser(t, "carol")
	if r := bob.WaitFinal(carolInv); r.StatusCode != 480 {
		t.Fatalf("carol: %d", r.StatusCode)
	}
}

func TestBrowserToBrowserVideo(t *testing.T) {
	e := newEnv(t, nil)
	alice, bob := e.browser("alice"), e.browser("bob")
	alice.mustLogin("alice")
	bob.mustLogin("bob")
	alice.call("v", "bob", true)
	in := bob.wait("incoming", "")
	if in.Video == nil || !*in.Video {
		t.Fatalf("incoming without video: %+v", in)
	}
	bob.answer(in, true)
	bob.wait("call_state", "answered")
	ans := alice.wait("answer", "")
	if ans.Video == nil || !*ans.Video {
		t.Fatalf("answer without video: %+v", ans)
	}
	alice.applyAnswer(ans.SDP)
	alice.wait("call_state", "answered")
	alice.startSending()
	bob.startSending()
	eventually(t, 10*time.Second, "video alice→bob", func() bool { return bob.rxVideo.Load() > 20 })
	eventually(t, 10*time.Second, "video bob→alice", func() bool { return alice.rxVideo.Load() > 20 })
	eventually(t, 10*time.Second, "audio both ways", func() bool { return alice.rxAudio.Load() > 20 && bob.rxAudio.Load() > 20 })
	bob.send(map[string]string{"type": "hangup", "call": in.Call})
	bob.wait("call_state", "ended")
	alice.wait("call_state", "ended")
}

func TestBrowserVanishesMidCall(t *testing.T) {
	e := newEnv(t, nil)
	bob := e.phone("bob")
	bob.MustRegister()
	alice := e.browser("alice")
	alice.mustLogin("alice")
	alice.call("c", "bob", false)
	bob.answerCall(t)
	alice.applyAnswer(alice.wait("answer", "").SDP)
	alice.wait("call_state", "answered")
	start := time.Now()
	alice.ws.CloseNow() // the tab is killed: no close handshake
	bye := bob.Wait(siptest.IsRequest("BYE"), 5*time.Second, "BYE").(*gosip.Request)
	bob.respond(bye, 200, "OK", "")
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("BYE %s after the browser vanished", d)
	}
	eventually(t, 5*time.Second, "unregistered", func() bool { return len(e.reg.Location().Lookup("alice")) == 0 })
}

func TestICEFailureEndsCall(t *testing.T) {
	e := newEnv(t, func(c *gateway.Config) { c.ICETimeout = 2 * time.Second })
	bob := e.phone("bob")
	bob.MustRegister()
	alice := e.browser("alice")
	alice.mustLogin("alice")
	alice.call("c", "bob", false)
	bob.answerCall(t)
	alice.wait("answer", "") // never applied: ICE cannot connect
	alice.wait("call_state", "answered")
	if m := alice.wait("error", "ice_failed"); m.Call != "c" || m.Message == "" {
		t.Fatalf("%+v", m)
	}
	bye := bob.Wait(siptest.IsRequest("BYE"), 5*time.Second, "BYE").(*gosip.Request)
	bob.respond(bye, 200, "OK", "")
	alice.wait("call_state", "ended")
}

func TestMessages(t *testing.T) {
	e := newEnv(t, nil)
	bob := e.phone("bob")
	bob.MustRegister()
	alice := e.browser("alice")
	alice.mustLogin("alice")
	alice.send(map[string]string{"type": "message", "id": "m1", "to": "bob", "text": "hello bob"})
	req := bob.WaitRequest("MESSAGE")
	if string(req.Body()) != "hello bob" {
		t.Fatalf("MESSAGE body %q", req.Body())
	}
	bob.respond(req, 200, "OK", "")
	if m := alice.wait("message_sent", ""); m.ID != "m1" {
		t.Fatalf("%+v", m)
	}
	in := bob.Request("MESSAGE", "sip:alice@"+domain)
	in.Add("Content-Type", "text/plain")
	in.Body = "hi alice"
	res := bob.WaitFinal(bob.SendAuthenticated(in))
	if res.StatusCode != 200 {
		t.Fatalf("MESSAGE to alice: %d", res.StatusCode)
	}
	if m := alice.wait("message", ""); m.Text != "hi alice" || !strings.Contains(m.From, "bob") {
		t.Fatalf("%+v", m)
	}
}

func TestOutgoingEarlyMedia(t *testing.T) {
	e := newEnv(t, nil)
	bob := e.phone("bob")
	bob.MustRegister()
	alice := e.browser("alice")
	alice.mustLogin("alice")
	alice.call("em", "bob", false)
	inv := bob.WaitRequest("INVITE")
	bob.learn(inv.Body())
	sdp := bob.sdp("")
	bob.respond(inv, 183, "Session Progress", sdp)
	ans := alice.wait("answer", "")
	alice.applyAnswer(ans.SDP)
	if m := alice.wait("call_state", "ringing"); !m.EarlyMedia || m.Status != 183 {
		t.Fatalf("early media state %+v", m)
	}
	alice.startSending()
	eventually(t, 10*time.Second, "early media reaches the browser", func() bool { return alice.rxAudio.Load() > 20 })
	bob.respond(inv, 200, "OK", sdp)
	bob.Wait(siptest.IsRequest("ACK"), 5*time.Second, "ACK")
	alice.wait("call_state", "answered")
	eventually(t, 10*time.Second, "audio from the browser reaches bob", func() bool { return bob.rx.Load() > 20 })
	alice.send(map[string]string{"type": "hangup", "call": "em"})
	bob.respond(bob.WaitRequest("BYE"), 200, "OK", "")
	alice.wait("call_state", "ended")
}

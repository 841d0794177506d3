package sip

import (
	"net"
	"strings"
	"testing"
	"time"

	gosip "github.com/emiago/sipgo/sip"

	"github.com/switchboard/switchboard/internal/siptest"
)

// alive checks that the server still answers an OPTIONS from p.
func alive(t *testing.T, sw *testSwitch, p *siptest.Phone) {
	t.Helper()
	m := p.Request("OPTIONS", "sip:"+sw.srv.Addrs()["udp"])
	p.Send(m)
	wantStatus(t, p.WaitFinal(m), 200)
}

func TestOptionsToTheSwitch(t *testing.T) {
	sw := startSwitch(t)
	for _, tc := range []struct{ name, ruri, maxForwards string }{
		{"address", "sip:" + sw.srv.Addrs()["udp"], "70"},
		{"domain", "sip:" + testDomain, "70"},
		{"Max-Forwards 0", "sip:" + testDomain, "0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := sw.phone("alice", "udp", "")
			m := p.Request("OPTIONS", tc.ruri)
			m.Set("Max-Forwards", tc.maxForwards)
			p.Send(m)
			res := p.WaitFinal(m)
			wantStatus(t, res, 200)
			allow := strings.Join(headerValues(res, "Allow"), ",")
			for _, meth := range []string{"INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "REGISTER"} {
				if !strings.Contains(allow, meth) {
					t.Errorf("Allow %q lacks %s", allow, meth)
				}
			}
		})
	}
}

func TestOptionsToAUserIsProxied(t *testing.T) {
	sw := startSwitch(t)
	bob := sw.registered("bob", "")
	p := sw.phone("carol", "udp", "")
	m := p.Request("OPTIONS", callURI("bob"))
	// From a local user it is authenticated like any request to a user.
	m = p.SendAuthenticated(m)
	req := bob.WaitRequest("OPTIONS")
	bob.Reply(req, 200, "OK", "Allow: INVITE")
	res := p.WaitFinal(m)
	wantStatus(t, res, 200)
	if a := headerValues(res, "Allow"); len(a) != 1 || a[0] != "INVITE" {
		t.Errorf("bob's 200 was not relayed as is: Allow %q", a)
	}
}

func TestMalformedRequests(t *testing.T) {
	tests := []struct {
		name string
		edit func(m *siptest.Msg)
	}{
		{"no Call-ID", func(m *siptest.Msg) { m.Del("Call-ID") }},
		{"no From", func(m *siptest.Msg) { m.Del("From") }},
		{"no To", func(m *siptest.Msg) { m.Del("To") }},
		{"no CSeq", func(m *siptest.Msg) { m.Del("CSeq") }},
		{"no Via", func(m *siptest.Msg) { m.Del("Via") }},
		{"bad CSeq", func(m *siptest.Msg) { m.Set("CSeq", "x INVITE") }},
		{"bad Content-Length", func(m *siptest.Msg) { m.Set("Content-Length", "9999") }},
		{"bad Max-Forwards", func(m *siptest.Msg) { m.Set("Max-Forwards", "many") }},
		{"bad From", func(m *siptest.Msg) { m.Set("From", "<<<") }},
		{"bad Request-URI", func(m *siptest.Msg) { m.Start = "INVITE sip: SIP/2.0" }},
		{"unsupported scheme", func(m *siptest.Msg) { m.Start = "INVITE http://example.com/ SIP/2.0" }},
		{"wrong version", func(m *siptest.Msg) { m.Start = "INVITE " + callURI("bob") + " SIP/3.0" }},
		{"bad Contact", func(m *siptest.Msg) { m.Set("Contact", "<sip:a@b;;;>>") }},
	}
	sw := startSwitch(t)
	bob := sw.registered("bob", "")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := sw.phone("alice", "udp", "")
			m := p.Request("INVITE", callURI("bob"))
			tc.edit(m)
			p.Send(m)
			// Either a 4xx (400, 416, 505...) or silence, but never a crash,
			// a 2xx, or a forwarded request.
			if msg, ok := p.TryWait(func(msg gosip.Message) bool { _, ok := msg.(*gosip.Response); return ok }, 300*time.Millisecond); ok {
				res := msg.(*gosip.Response)
				if res.StatusCode < 400 && res.StatusCode != 100 && res.StatusCode != 407 {
					t.Errorf("malformed request answered %d %s", res.StatusCode, res.Reason)
				}
			}
			alive(t, sw, p)
		})
	}
	bob.ExpectNone(siptest.IsRequest("INVITE"), 50*time.Millisecond, "forwarded malformed request")
}

func TestMissingCallIDGets400(t *testing.T) {
	sw := startSwitch(t)
	p := sw.phone("alice", "udp", "")
	m := p.Request("OPTIONS", "sip:"+testDomain)
	m.Del("Call-ID")
	p.Send(m)
	msg := p.Wait(func(msg gosip.Message) bool { _, ok := msg.(*gosip.Response); return ok }, 0, "response to a request without Call-ID")
	wantStatus(t, msg.(*gosip.Response), 400)
	alive(t, sw, p)
}

func TestGarbageDatagrams(t *testing.T) {
	sw := startSwitch(t)
	p := sw.phone("alice", "udp", "")
	before := sw.srv.Stats.Malformed.Load()
	garbage := []string{
		"\x00\x01\x02\x03\x04\x05\x06\x07",
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n", // looks like a request line; sipgo refuses it
		strings.Repeat("A", 1000),
		"INVITE\r\n\r\n",
		"SIP/2.0 200\r\n\r\n",
		"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", // a TLS ClientHello
		"REGISTER sip:x SIP/2.0\r\nVia: \r\n\r\n",
		"INVITE sip:bob@switchboard.local SIP/2.0\r\nContent-Length: -5\r\n\r\n",
		"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKx\r\nCSeq: 99999999999999999999 OPTIONS\r\n\r\n",
		"\r\n\r\n", // keep-alive: not counted
	}
	for _, g := range garbage {
		p.SendRaw(g)
	}
	alive(t, sw, p)
	eventually(t, 5*time.Second, "garbage counted as malformed", func() bool {
		return sw.srv.Stats.Malformed.Load()-before >= 4
	})
	// Nothing answered the garbage but what sipgo answers statelessly (400).
	for _, m := range p.Drain() {
		if r, ok := m.(*gosip.Response); ok && r.StatusCode < 400 {
			t.Errorf("garbage answered %d", r.StatusCode)
		}
	}
}

func TestOversizedDatagramDropped(t *testing.T) {
	sw := startSwitch(t, func(c *Config) { c.MaxMessageSize = 2048 })
	p := sw.phone("alice", "udp", "")
	before := sw.srv.Stats.Malformed.Load()
	m := p.Request("OPTIONS", "sip:"+testDomain)
	m.Add("X-Padding", strings.Repeat("x", 3000))
	p.Send(m)
	p.ExpectNone(siptest.IsResponseTo(m, 100, 699), 300*time.Millisecond, "response to an oversized datagram")
	if got := sw.srv.Stats.Malformed.Load() - before; got != 1 {
		t.Errorf("Malformed grew by %d, want 1", got)
	}
	// Just under the limit is fine.
	m = p.Request("OPTIONS", "sip:"+testDomain)
	m.Add("X-Padding", strings.Repeat("x", 1500))
	if len(m.String()) > 2048 {
		t.Fatalf("test message is %d bytes", len(m.String()))
	}
	p.Send(m)
	wantStatus(t, p.WaitFinal(m), 200)
}

// TestDatagramAboveReadBuffer sends datagrams larger than sipgo's UDP read
// buffer (32 KiB) but within the default MaxMessageSize (65535): they must be
// refused or carried whole, never parsed from their first 32 KiB as if that
// were the whole message. Over UDP a message may omit Content-Length; its
// body then runs to the end of the datagram (RFC 3261 §18.3).
func TestDatagramAboveReadBuffer(t *testing.T) {
	for _, withLength := range []bool{true, false} {
		name := "without Content-Length"
		if withLength {
			name = "with Content-Length"
		}
		t.Run(name, func(t *testing.T) {
			sw := startSwitch(t)
			// bob is on TCP, where the switch may send a message this big.
			bob := sw.phone("bob", "tcp", "")
			bob.MustRegister()
			p := sw.phone("carol", "udp", "")
			m := p.Request("MESSAGE", callURI("bob"))
			m.Set("From", "<sip:carol@example.org>;tag=c1") // no credentials needed
			m.Set("Content-Type", "text/plain")
			m.Body = strings.Repeat("y", 40000)
			text := m.String()
			if !withLength {
				text = strings.Replace(text, "Content-Length: 40000\r\n", "", 1)
			}
			p.SendRaw(text)
			if msg, ok := bob.TryWait(siptest.IsRequest("MESSAGE"), 500*time.Millisecond); ok {
				if got := len(msg.(*gosip.Request).Body()); got != len(m.Body) {
					t.Errorf("a %d-byte MESSAGE was forwarded with a %d-byte body (a truncated datagram was parsed)", len(m.Body), got)
				}
			}
			alive(t, sw, p)
		})
	}
}

func TestWebSocketRegister(t *testing.T) {
	sw := startSwitch(t)
	url := sw.serveWS()
	ws := siptest.NewPhone(t, siptest.Config{Transport: "ws", Server: url, User: "bob", Password: passwords["bob"], Trace: sw.tr})
	res := ws.DoRegister(3600)
	wantStatus(t, res, 200)
	bs := sw.reg.Location().Lookup("bob")
	if len(bs) != 1 || bs[0].Transport != "WS" {
		t.Fatalf("bindings %+v, want one over WS", bs)
	}

	// A call to bob goes down the WebSocket.
	alice := sw.registered("alice", "")
	inv := invite(t, alice, "bob")
	req := ws.WaitRequest("INVITE")
	if rr := headerValues(req, "Record-Route"); len(rr) != 2 || !contains(rr, "transport=ws") || !contains(rr, "transport=udp") {
		t.Errorf("Record-Route %q: want two entries (udp and ws, RFC 5658)", rr)
	}
	answer(t, ws, req)
	ok := alice.WaitFinal(inv)
	wantStatus(t, ok, 200)
	ad := alice.UACDialog(inv, ok)
	alice.Send(ad.Request("ACK"))
	ws.WaitRequest("ACK")
	bye := ad.Request("BYE")
	alice.Send(bye)
	ws.Reply(ws.WaitRequest("BYE"), 200, "OK")
	wantStatus(t, alice.WaitFinal(bye), 200)

	// Closing the WebSocket ends the binding.
	ws.Close()
	eventually(t, 5*time.Second, "WebSocket binding removed", func() bool { return len(sw.reg.Location().Lookup("bob")) == 0 })
}

func TestWebSocketEndpointRefusesPlainHTTP(t *testing.T) {
	sw := startSwitch(t)
	url := sw.serveWS()
	c, err := net.Dial("tcp", strings.TrimSuffix(strings.TrimPrefix(url, "ws://"), "/sip"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("GET /sip HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	n, _ := c.Read(buf)
	if !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 426") {
		t.Errorf("plain GET /sip answered %q, want 426 Upgrade Required", strings.SplitN(string(buf[:n]), "\r\n", 2)[0])
	}
}

func TestCallToTCPPhone(t *testing.T) {
	sw := startSwitch(t)
	bob := sw.phone("bob", "tcp", "")
	bob.MustRegister()
	alice := sw.registered("alice", "")
	inv := invite(t, alice, "bob")
	req := bob.WaitRequest("INVITE")
	if req.Transport() != "TCP" {
		t.Fatalf("INVITE arrived over %s", req.Transport())
	}
	rr := headerValues(req, "Record-Route")
	if len(rr) != 2 || !contains(rr, "transport=tcp") || !contains(rr, "transport=udp") || !contains(rr, "r2=on") {
		t.Errorf("Record-Route %q: want a tcp and a udp entry with r2=on (RFC 5658)", rr)
	}
	if v := req.Via(); v == nil || !strings.EqualFold(v.Transport, "TCP") {
		t.Errorf("top Via %v, want the proxy's over TCP", v)
	}
	bd := answer(t, bob, req)
	ok := alice.WaitFinal(inv)
	wantStatus(t, ok, 200)
	ad := alice.UACDialog(inv, ok)
	alice.Send(ad.Request("ACK"))
	bob.WaitRequest("ACK")

	// bob hangs up over his connection; the BYE reaches alice over UDP.
	bye := bd.Request("BYE")
	bob.Send(bye)
	b := alice.WaitRequest("BYE")
	alice.Reply(b, 200, "OK")
	wantStatus(t, bob.WaitFinal(bye), 200)
}

func TestCallFromTCPPhone(t *testing.T) {
	sw := startSwitch(t)
	bob := sw.registered("bob", "")
	alice := sw.phone("alice", "tcp", "")
	alice.MustRegister()
	inv := invite(t, alice, "bob")
	req := bob.WaitRequest("INVITE")
	answer(t, bob, req)
	ok := alice.WaitFinal(inv)
	wantStatus(t, ok, 200)
	ad := alice.UACDialog(inv, ok)
	alice.Send(ad.Request("ACK"))
	bob.WaitRequest("ACK")
	bye := ad.Request("BYE")
	alice.Send(bye)
	bob.Reply(bob.WaitRequest("BYE"), 200, "OK")
	wantStatus(t, alice.WaitFinal(bye), 200)
}

func TestShutdownRefusesNewCalls(t *testing.T) {
	sw := startSwitch(t)
	alice := sw.registered("alice", "")
	sw.srv.draining.Store(true)
	m := alice.Request("INVITE", callURI("bob"))
	alice.Send(m)
	res := alice.WaitFinal(m)
	wantStatus(t, res, 503)
	alice.Send(siptest.Ack(m, res))
}

package main

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// RFC 2617 §3.5's example.
func TestDigestResponseRFC2617(t *testing.T) {
	ha1 := md5hex("Mufasa:testrealm@host.com:Circle Of Life")
	got := digestResponse(ha1, "dcd98b7102dd2f0e8b11d0f600bfb0c093", "00000001", "0a4f113b", "auth", "GET", "/dir/index.html")
	if want := "6629fae49393a05397450978507c4ef1"; got != want {
		t.Fatalf("response %s, want %s", got, want)
	}
}

func TestScanning(t *testing.T) {
	m := []byte("SIP/2.0 200 OK\r\nv: SIP/2.0/UDP a;branch=z9hG4bK1\r\nRecord-Route: <sip:p1;lr>, <sip:p2;lr>\r\n" +
		"record-route: <sip:p3;lr>\r\ni: abc\r\nCSeq: 2 INVITE\r\nm: \"x, y\" <sip:u@h:5;transport=udp>;expires=3\r\n\r\nbody: no\r\n")
	if status(m) != 200 {
		t.Errorf("status %d", status(m))
	}
	if n, meth := cseq(m); n != 2 || meth != "INVITE" {
		t.Errorf("cseq %d %q", n, meth)
	}
	if string(header(m, "Call-ID", "i")) != "abc" || string(header(m, "Via", "v")) != "SIP/2.0/UDP a;branch=z9hG4bK1" {
		t.Error("compact headers not found")
	}
	if header(m, "body", "") != nil {
		t.Error("a header read from the body")
	}
	if u := uriOf(header(m, "Contact", "m")); string(u) != "sip:u@h:5;transport=udp" {
		t.Errorf("contact URI %q", u)
	}
	o := &op{}
	(&gen{}).dialog(o, m)
	if want := "Route: <sip:p3;lr>\r\nRoute: <sip:p2;lr>\r\nRoute: <sip:p1;lr>\r\n"; string(o.routes) != want {
		t.Errorf("route set %q, want %q", o.routes, want)
	}
	p := digestParams([]byte(`realm="a, b", nonce=xyz, qop="auth,auth-int" ,opaque=""`))
	if p["realm"] != "a, b" || p["nonce"] != "xyz" || !qopAuth(p["qop"]) || p["opaque"] != "" {
		t.Errorf("challenge parameters %q", p)
	}
}

// fakeServer answers sipload's datagrams with respond until the test ends.
func fakeServer(t *testing.T, respond func(m []byte, send func(string))) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		b := make([]byte, 65536)
		for {
			n, from, err := c.ReadFromUDPAddrPort(b)
			if err != nil {
				return
			}
			respond(bytes.Clone(b[:n]), func(s string) { _, _ = c.WriteToUDPAddrPort([]byte(s), from) })
		}
	}()
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// reply is a response to req copying its Via, From, To, Call-ID and CSeq.
func reply(req []byte, first string, extra string) string {
	var b strings.Builder
	b.WriteString("SIP/2.0 " + first + "\r\n")
	each(req, func(name, value []byte) {
		for _, h := range []string{"Via", "From", "To", "Call-ID", "CSeq"} {
			if string(name) == h {
				b.WriteString(h + ": " + string(value) + "\r\n")
			}
		}
	})
	b.WriteString(extra + "Content-Length: 0\r\n\r\n")
	return b.String()
}

func newTestGen(t *testing.T, o options, server netip.AddrPort) *gen {
	t.Helper()
	o.server, o.domain = server, "example.test"
	s, err := openSock(0, server)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = closeSock(s) })
	return newGen(o, s)
}

// Registrations against a registrar that challenges each first REGISTER
// and checks the digest of the second, computed here independently.
func TestRegisterWithDigest(t *testing.T) {
	bad := make(chan string, 10)
	server := fakeServer(t, func(m []byte, send func(string)) {
		auth := string(header(m, "Authorization", ""))
		if auth == "" {
			send(reply(m, "401 Unauthorized", `WWW-Authenticate: Digest realm="example.test", nonce="n0nce", qop="auth"`+"\r\n"))
			return
		}
		p := digestParams([]byte(strings.TrimPrefix(auth, "Digest ")))
		user := p["username"]
		h := func(s string) string { x := md5.Sum([]byte(s)); return hex.EncodeToString(x[:]) }
		want := h(h(user+":example.test:pw-"+user) + ":n0nce:" + p["nc"] + ":" + p["cnonce"] + ":auth:" + h("REGISTER:sip:example.test"))
		if p["response"] != want || p["uri"] != "sip:example.test" || p["qop"] != "auth" {
			bad <- auth
			send(reply(m, "403 Forbidden", ""))
			return
		}
		send(reply(m, "200 OK", ""))
	})
	g := newTestGen(t, options{mode: "reg", rate: 200, count: 5, limit: 100, users: 3, waitMax: 5 * time.Second, tick: time.Millisecond}, server)
	r := g.load()
	if r.ok != 5 || r.failed != 0 || r.unfinished != 0 {
		t.Fatalf("result %+v", r)
	}
	select {
	case a := <-bad:
		t.Fatalf("wrong credentials: %s", a)
	default:
	}
}

// The UAS registers itself, then answers an INVITE with 180 and a 200
// carrying its tag, the Record-Route and SDP, retransmits the 200 until the
// ACK, and answers the BYE.
func TestUASAnswers(t *testing.T) {
	got := make(chan []byte, 20)
	server := fakeServer(t, func(m []byte, send func(string)) {
		if bytes.HasPrefix(m, []byte("REGISTER ")) {
			send(reply(m, "200 OK", ""))
			return
		}
		got <- m
	})
	g := newTestGen(t, options{mode: "uas", user: "u000002", runFor: 3 * time.Second, tick: time.Millisecond}, server)
	to := g.s.local
	done := make(chan error, 1)
	go func() { done <- g.serveUAS() }()
	invite := "INVITE sip:u000002@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKp\r\n" +
		"Record-Route: <sip:proxy;lr>\r\nVia: SIP/2.0/UDP 127.0.0.1:2;branch=z9hG4bKc\r\nFrom: <sip:a@x>;tag=1\r\n" +
		"To: <sip:u000002@x>\r\nCall-ID: call-1\r\nCSeq: 2 INVITE\r\nContent-Length: 0\r\n\r\n"
	time.Sleep(100 * time.Millisecond) // registered by then
	sendTo(t, to, invite)
	want := func(prefix string) []byte {
		t.Helper()
		select {
		case m := <-got:
			if !bytes.HasPrefix(m, []byte(prefix)) {
				t.Fatalf("got %q, want %s", m, prefix)
			}
			return m
		case <-time.After(2 * time.Second):
			t.Fatalf("no %s", prefix)
		}
		return nil
	}
	want("SIP/2.0 180 ")
	ok := want("SIP/2.0 200 ")
	if !bytes.Contains(ok, []byte("Record-Route: <sip:proxy;lr>")) || !bytes.Contains(ok, []byte(";tag=")) ||
		!bytes.Contains(ok, []byte("m=audio")) || bytes.Count(ok, []byte("Via: ")) != 2 {
		t.Fatalf("200: %q", ok)
	}
	want("SIP/2.0 200 ") // retransmitted: no ACK yet (500 ms)
	sendTo(t, to, "ACK sip:u000002@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKa\r\nCall-ID: call-1\r\nCSeq: 2 ACK\r\nContent-Length: 0\r\n\r\n")
	sendTo(t, to, "BYE sip:u000002@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKb\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:u000002@x>;tag=2\r\nCall-ID: call-1\r\nCSeq: 3 BYE\r\nContent-Length: 0\r\n\r\n")
	bye := want("SIP/2.0 200 ")
	if !bytes.Contains(bye, []byte("CSeq: 3 BYE")) {
		t.Fatalf("BYE's answer: %q", bye)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// sendTo sends s to the UAS, as the proxy would (the UAS answers to the
// server address it was given, whatever the source).
func sendTo(t *testing.T, to netip.AddrPort, s string) {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.WriteToUDPAddrPort([]byte(s), to); err != nil {
		t.Fatal(err)
	}
}

func FuzzScan(f *testing.F) {
	f.Add([]byte("SIP/2.0 407 x\r\nProxy-Authenticate: Digest realm=\"r\", nonce=\"n\"\r\nRecord-Route: <sip:a;lr>,<sip:b>\r\nContact: <sip:c>\r\nTo: <sip:t>;tag=1\r\n\r\n"))
	f.Add([]byte("INVITE sip:x SIP/2.0\r\nv: a\r\ni: b\r\nCSeq: 1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, m []byte) {
		_ = status(m)
		_, _ = cseq(m)
		g := &gen{ha1: map[string]string{}}
		_ = g.authorization("u", "INVITE", "sip:x", m, 407)
		_ = g.authorization("u", "REGISTER", "sip:x", m, 401)
		(&gen{}).dialog(&op{}, m)
		g.buf = nil
		_ = g.answer(m, 200, 1, true)
	})
}

package sip

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	gosip "github.com/emiago/sipgo/sip"

	"github.com/switchboard/switchboard/internal/siptest"
)

func FuzzParseListen(f *testing.F) {
	for _, s := range []string{
		"udp://0.0.0.0:5060", "tcp://127.0.0.1:0", "tls://[::1]:5061", "UDP://10.0.0.1:65535",
		"ws://127.0.0.1:8080", "udp://host.example:5060", "udp://127.0.0.1:65536", "udp://:5060",
		"udp://127.0.0.1", "udp//127.0.0.1:5060", "", "://", "udp://[::1]:-1", "tcp://[fe80::1%eth0]:5060",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseListen(s)
		if err != nil {
			if l != (Listen{}) {
				t.Errorf("ParseListen(%q) returned %+v with error %v", s, l, err)
			}
			return
		}
		switch l.Transport {
		case "udp", "tcp", "tls":
		default:
			t.Fatalf("ParseListen(%q): transport %q", s, l.Transport)
		}
		host, port, err := net.SplitHostPort(l.Addr)
		if err != nil {
			t.Fatalf("ParseListen(%q): Addr %q does not split: %v", s, l.Addr, err)
		}
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			t.Fatalf("ParseListen(%q): port %q", s, port)
		}
		if host != "" {
			if _, err := netip.ParseAddr(host); err != nil {
				t.Fatalf("ParseListen(%q): host %q is not an IP address", s, host)
			}
		}
		again, err := ParseListen(l.Transport + "://" + l.Addr)
		if err != nil || again != l {
			t.Fatalf("ParseListen(%q) = %+v does not round-trip: %+v, %v", s, l, again, err)
		}
	})
}

func FuzzAliasTarget(f *testing.F) {
	for _, s := range []string{
		"192.0.2.1~5060~udp", "2001:db8::1~5061~tls", "127.0.0.1~0~ws", "192.0.2.1~65536~udp",
		"192.0.2.1~5060", "~~", "192.0.2.1~5060~udp~x", "host~5060~tcp", "::ffff:192.0.2.1~1~TCP", "",
		"192.0.2.1~-1~udp", "192.0.2.1~0x10~udp", "[::1]~5060~udp",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		// The parameter as a parsed Request-URI carries it...
		u := gosip.Uri{Scheme: "sip", User: "bob", Host: "192.0.2.9", Port: 5070, UriParams: gosip.NewParams()}
		u.UriParams.Add("transport", "tcp")
		u.UriParams.Add(aliasParam, v)
		checkAlias(t, u, v)
		// ...and as text a UA sends.
		var p gosip.Uri
		if err := gosip.ParseUri("sip:bob@192.0.2.9:5070;alias="+v+";lr", &p); err == nil {
			if got, ok := p.UriParams.Get(aliasParam); ok {
				checkAlias(t, p, got)
			}
		}
	})
}

func checkAlias(t *testing.T, u gosip.Uri, v string) {
	t.Helper()
	before := u.String()
	tg, ok := aliasTarget(&u)
	if !ok {
		if u.String() != before {
			t.Fatalf("aliasTarget refused %q but changed the URI to %s", v, u.String())
		}
		return
	}
	if u.UriParams.Has(aliasParam) {
		t.Fatalf("aliasTarget(%q) left the alias parameter in %s", v, u.String())
	}
	if tg.uri.String() != u.String() {
		t.Fatalf("target URI %s is not the URI without alias %s", tg.uri.String(), u.String())
	}
	ap, err := netip.ParseAddrPort(tg.dest)
	if err != nil {
		t.Fatalf("aliasTarget(%q): destination %q is not ip:port: %v", v, tg.dest, err)
	}
	parts := strings.Split(v, "~")
	if want, _ := netip.ParseAddr(parts[0]); ap.Addr() != want {
		t.Fatalf("aliasTarget(%q): destination %s, want address %s", v, ap, want)
	}
	if tg.transport != strings.ToUpper(tg.transport) {
		t.Fatalf("aliasTarget(%q): transport %q not upper case", v, tg.transport)
	}
}

func FuzzLooksLikeSIP(f *testing.F) {
	for _, s := range []string{
		"INVITE sip:bob@example.com SIP/2.0\r\n", "SIP/2.0 200 OK\r\n", "OPTIONS sip:x SIP/2.0",
		"REGISTER", " INVITE", "\x00\x01\x02\x03\x04", "GET / HTTP/1.1", "\r\n\r\n",
		strings.Repeat("A", 33) + " x", strings.Repeat("A", 32) + " x", "x-y.z!%*_+`'~ z", "\x16\x03\x01",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got := looksLikeSIP(b)
		sp := strings.IndexByte(string(b), ' ')
		if !got {
			// Every well-formed start line is accepted.
			if sp > 0 && sp <= 32 {
				if _, err := gosip.NewParser().ParseSIP(append(append([]byte(nil), b...), "\r\n\r\n"...)); err == nil && isToken(b[:sp]) {
					t.Fatalf("looksLikeSIP(%q) = false for a parsable message", b)
				}
			}
			return
		}
		if sp < 1 || sp > 33 {
			t.Fatalf("looksLikeSIP(%q) = true with the first space at %d", b, sp)
		}
		if !isToken(b[:sp]) {
			t.Fatalf("looksLikeSIP(%q) = true for a non-token start %q", b, b[:sp])
		}
		// Only the start matters.
		if !looksLikeSIP(b[:sp+1]) {
			t.Fatalf("looksLikeSIP(%q) but not of its prefix %q", b, b[:sp+1])
		}
	})
}

func isToken(b []byte) bool {
	for _, c := range b {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("/.-_!%*+`'~", c) >= 0) {
			return false
		}
	}
	return len(b) > 0
}

// FuzzDatagram sends each input as a UDP datagram to a running switch and
// then checks that it still answers: whatever the input, the read path
// (filter, parse, transaction layer, handler) must neither panic nor stop.
//
// Inputs that parse as SIP naming any host but a loopback address are
// skipped: the switch would send to them, and tests send only to 127.0.0.0/8.
func FuzzDatagram(f *testing.F) {
	seeds := []string{
		"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK1;rport\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
		"REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK2;rport\r\nFrom: <sip:bob@127.0.0.1>;tag=2\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: c2\r\nCSeq: 1 REGISTER\r\nContact: <sip:bob@127.0.0.1:9>\r\nContact: *\r\nExpires: 0\r\nAuthorization: Digest username=\"bob\", realm=\"switchboard.local\", nonce=\"AAAA\", uri=\"sip:127.0.0.1\", response=\"00\", qop=auth, nc=zz, cnonce=\"x\"\r\nContent-Length: 0\r\n\r\n",
		"INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK3;rport\r\nFrom: <sip:alice@127.0.0.1>;tag=3\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: c3\r\nCSeq: 1 INVITE\r\nMax-Forwards: 1\r\nProxy-Require: x, , y\r\nContent-Type: application/sdp\r\nContent-Length: 10\r\n\r\nv=0\r\nc=IN ",
		"BYE sip:bob@127.0.0.1:9;alias=127.0.0.1~9~udp SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK4\r\nRoute: <sip:127.0.0.1;lr>\r\nRoute: <sip:127.0.0.1;lr>\r\nFrom: <sip:a@127.0.0.1>;tag=4\r\nTo: <sip:b@127.0.0.1>;tag=5\r\nCall-ID: c4\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
		"ACK sip:bob@127.0.0.1:9 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK5\r\nRoute: <sip:127.0.0.1;lr>\r\nFrom: <sip:a@127.0.0.1>;tag=4\r\nTo: <sip:b@127.0.0.1>;tag=5\r\nCall-ID: c5\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
		"CANCEL sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK3\r\nFrom: <sip:a@127.0.0.1>;tag=3\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: c3\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n",
		"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKsb0000.x\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK6\r\nFrom: <sip:a@127.0.0.1>;tag=6\r\nTo: <sip:b@127.0.0.1>;tag=7\r\nCall-ID: c6\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
		"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK7\r\nCSeq: 1 INVITE\r\n\r\n",
		"MESSAGE sip:127.0.0.1 SIP/2.0\r\nv: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK8\r\nf: <sip:a@127.0.0.1>;tag=8\r\nt: <sip:127.0.0.1>\r\ni: c8\r\nCSeq: 1 MESSAGE\r\nl: 0\r\n\r\n",
		"INVITE sip:bob@127.0.0.1 SIP/2.0\r\n\r\n",
		"\x00\x00\x00\x00", "\r\n\r\n", "GET / HTTP/1.1\r\n\r\n", "SIP/2.0 999\r\n\r\n", strings.Repeat("INVITE ", 100),
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	sw := startSwitch(f)
	raw, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { raw.Close() })
	dst, _ := net.ResolveUDPAddr("udp", sw.srv.Addrs()["udp"])
	parser := gosip.NewParser()
	n := 0
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 60000 {
			return
		}
		if msg, err := parser.ParseSIP(b); err == nil && !loopbackOnly(msg) {
			t.Skip("names a host off this machine")
		}
		if _, err := raw.WriteTo(b, dst); err != nil {
			t.Fatal(err)
		}
		n++
		// (A phone per input: F's methods may not be used in here.)
		p := siptest.NewPhone(t, siptest.Config{Server: sw.srv.Addrs()["udp"], User: "carol", Password: passwords["carol"], Trace: sw.tr})
		m := p.Request("OPTIONS", "sip:"+sw.srv.Addrs()["udp"])
		m.Set("Call-ID", "ping-"+strconv.Itoa(n)+"@siptest")
		p.Send(m)
		if _, ok := p.TryWait(siptest.IsResponseTo(m, 200, 200), 5*time.Second); !ok {
			t.Fatalf("the switch stopped answering after the datagram %q", b)
		}
	})
}

// loopbackOnly reports whether every address a message could make the switch
// send to (Request-URI, Route, Via, Contact, alias) is a loopback IP literal.
func loopbackOnly(msg gosip.Message) bool {
	ok := func(host string) bool {
		ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
		return host == "" || err == nil && ip.Unmap().IsLoopback()
	}
	uriOK := func(u gosip.Uri) bool {
		if !ok(u.Host) {
			return false
		}
		for _, name := range []string{aliasParam, "maddr"} {
			if v, has := u.UriParams.Get(name); has {
				if !ok(strings.Split(v, "~")[0]) {
					return false
				}
			}
		}
		return true
	}
	if req, isReq := msg.(*gosip.Request); isReq && !uriOK(req.Recipient) {
		return false
	}
	for _, h := range msg.GetHeaders("Via") {
		v, isVia := h.(*gosip.ViaHeader)
		if !isVia || !ok(v.Host) {
			return false
		}
		for _, name := range []string{"received", "maddr"} {
			if r, has := v.Params.Get(name); has && !ok(r) {
				return false
			}
		}
	}
	for _, name := range []string{"Route", "Record-Route", "Contact", "Path"} {
		for _, h := range msg.GetHeaders(name) {
			switch v := h.(type) {
			case *gosip.RouteHeader:
				if !uriOK(v.Address) {
					return false
				}
			case *gosip.RecordRouteHeader:
				if !uriOK(v.Address) {
					return false
				}
			case *gosip.ContactHeader:
				if !v.Address.Wildcard && !uriOK(v.Address) {
					return false
				}
			default:
				return false
			}
		}
	}
	return true
}

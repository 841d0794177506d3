package sip

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	gosip "github.com/emiago/sipgo/sip"

	"github.com/switchboard/switchboard/internal/siptest"
)

// TestPickIfaceByFamily: a destination goes out of a listener of its own
// address family, one bound to :: serving either when no listener of that
// family is configured, and is advertised with that family's address.
func TestPickIfaceByFamily(t *testing.T) {
	v4 := iface{transport: "udp", bound: netip.MustParseAddrPort("127.0.0.1:5060"), adv: "127.0.0.1", port: 5060}
	v6 := iface{transport: "udp", bound: netip.MustParseAddrPort("[::1]:5062"), adv: "::1", port: 5062}
	any4 := iface{transport: "udp", bound: netip.MustParseAddrPort("0.0.0.0:5064"), adv: "192.0.2.1", port: 5064}
	dual := iface{transport: "udp", bound: netip.MustParseAddrPort("[::]:5066"), adv: "192.0.2.1", adv6: "2001:db8::1", port: 5066}
	dualNo6 := iface{transport: "udp", bound: netip.MustParseAddrPort("[::]:5068"), adv: "192.0.2.1", port: 5068}
	tcp6 := iface{transport: "tcp", bound: netip.MustParseAddrPort("[::1]:5060"), adv: "::1", port: 5060}
	for _, c := range []struct {
		name     string
		ifaces   []iface
		tr, dest string
		want     string // adv:port, or "" for none
	}{
		{"v6 to v6 listener, v4 listed first", []iface{v4, v6}, "udp", "[::1]:7000", "::1:5062"},
		{"v4 to v4 listener, v6 listed first", []iface{v6, v4}, "udp", "127.0.0.1:7000", "127.0.0.1:5060"},
		{"v6 with only v4 listeners", []iface{v4, any4}, "udp", "[2001:db8::9]:7000", ""},
		{"v4 with only a v6 listener", []iface{v6}, "udp", "127.0.0.1:7000", ""},
		{"dual serves v4", []iface{dual}, "udp", "198.51.100.7:7000", "192.0.2.1:5066"},
		{"dual serves v6 with its v6 address", []iface{dual}, "udp", "[2001:db8::9]:7000", "2001:db8::1:5066"},
		{"own family before dual", []iface{dual, v4}, "udp", "127.0.0.1:7000", "127.0.0.1:5060"},
		{"dual without advertise6 to loopback", []iface{dualNo6}, "udp", "[::1]:7000", "::1:5068"},
		{"host name: first of the transport", []iface{v6, v4}, "udp", "example.com:5060", "::1:5062"},
		{"transport first", []iface{v4, tcp6}, "tcp", "[::1]:7000", "::1:5060"},
		{"v4-mapped is v4", []iface{v6, v4}, "udp", "[::ffff:127.0.0.1]:7000", "127.0.0.1:5060"},
	} {
		i, ok := pickIface(c.ifaces, c.tr, destAddr(c.dest))
		got := ""
		if ok {
			got = i.adv + ":" + strconv.Itoa(i.port)
		}
		if got != c.want {
			t.Errorf("%s: %s to %s went out of %q, want %q", c.name, c.tr, c.dest, got, c.want)
		}
	}
}

// TestCallAcrossAddressFamilies: with an IPv4 and an IPv6 UDP listener, a
// call from an IPv4 phone to one registered over IPv6 goes out of the IPv6
// socket with an IPv6 Via, is record-routed twice (the IPv6 entry on top,
// RFC 5658), and requests inside the dialog — from either side — route
// through both of our entries, are verified by their signature and reach the
// other side over its own family.
func TestCallAcrossAddressFamilies(t *testing.T) {
	sw := startSwitch(t, func(c *Config) {
		c.Listen = []Listen{{Transport: "udp", Addr: "127.0.0.1:0"}, {Transport: "udp", Addr: "[::1]:0"}}
	})
	var l4, l6 string
	for _, i := range sw.srv.ifaces {
		if i.bound.Addr().Is4() {
			l4 = i.bound.String()
		} else {
			l6 = i.bound.String()
		}
	}
	bob := siptest.NewPhone(t, siptest.Config{Server: l6, Local: "[::1]:0", User: "bob", Password: passwords["bob"], Trace: sw.tr})
	bob.MustRegister()
	alice := siptest.NewPhone(t, siptest.Config{Server: l4, User: "alice", Password: passwords["alice"], Trace: sw.tr})
	alice.MustRegister()

	m := alice.Request("INVITE", callURI("bob"))
	inv := alice.SendAuthenticated(m)
	req := bob.WaitRequest("INVITE")
	if via := headerValues(req, "Via"); len(via) < 2 || !strings.Contains(via[0], l6) {
		t.Fatalf("INVITE reached bob with Via %q, want the switch's IPv6 %s on top", via, l6)
	}
	rr := headerValues(req, "Record-Route")
	if len(rr) != 2 || !strings.Contains(rr[0], l6) || !strings.Contains(rr[1], l4) ||
		!strings.Contains(rr[0], "sbd=") || !strings.Contains(rr[1], "sbd=") {
		t.Fatalf("Record-Route %q, want %s (IPv6, to bob) over %s (IPv4, to alice), both signed", rr, l6, l4)
	}
	bob.Reply(req, 180, "Ringing")
	alice.WaitResponse(inv, 180, 180)
	bob.Reply(req, 200, "OK")
	ok := alice.WaitResponse(inv, 200, 200)
	ad := alice.UACDialog(inv, ok)
	bd := bob.UASDialog(req)
	alice.Send(ad.Request("ACK"))
	if a := bob.WaitRequest("ACK"); len(headerValues(a, "Route")) != 0 {
		t.Errorf("ACK reached bob with Route %q: both of our entries must be popped", headerValues(a, "Route"))
	}

	// bob (IPv6) sends a request in the dialog: through our IPv6 entry
	// first, then our IPv4 one, to alice over IPv4.
	info := bd.Request("INFO")
	bob.Send(info)
	got := alice.WaitRequest("INFO")
	if r := headerValues(got, "Route"); len(r) != 0 {
		t.Errorf("INFO reached alice with Route %q", r)
	}
	if via := headerValues(got, "Via"); len(via) < 2 || !strings.Contains(via[0], l4) {
		t.Errorf("INFO reached alice with Via %q, want the switch's IPv4 %s on top", via, l4)
	}
	alice.Reply(got, 200, "OK")
	wantStatus(t, bob.WaitFinal(info), 200)

	bye := ad.Request("BYE")
	alice.Send(bye)
	b := bob.WaitRequest("BYE")
	if r := headerValues(b, "Route"); len(r) != 0 {
		t.Errorf("BYE reached bob with Route %q", r)
	}
	bob.Reply(b, 200, "OK")
	wantStatus(t, alice.WaitFinal(bye), 200)
}

// TestForgedRouteAcrossFamiliesRefused: our two Record-Route entries
// without a valid signature do not make the switch relay an in-dialog
// request.
func TestForgedRouteAcrossFamiliesRefused(t *testing.T) {
	sw := startSwitch(t, func(c *Config) {
		c.Listen = []Listen{{Transport: "udp", Addr: "127.0.0.1:0"}, {Transport: "udp", Addr: "[::1]:0"}}
	})
	var l4, l6 string
	for _, i := range sw.srv.ifaces {
		if i.bound.Addr().Is4() {
			l4 = i.bound.String()
		} else {
			l6 = i.bound.String()
		}
	}
	mallory := siptest.NewPhone(t, siptest.Config{Server: l4, User: "alice", Trace: sw.tr})
	target := siptest.NewPhone(t, siptest.Config{Local: "[::1]:0", User: "bob", Trace: sw.tr})
	m := mallory.Request("BYE", target.Contact())
	m.Set("To", "<sip:bob@"+testDomain+">;tag=x")
	m.Add("Route", "<sip:"+l4+";transport=udp;lr;r2=on;sbd=00112233445566778899>")
	m.Add("Route", "<sip:"+l6+";transport=udp;lr;r2=on;sbd=00112233445566778899>")
	mallory.Send(m)
	wantStatus(t, mallory.WaitFinal(m), 403)
	target.ExpectNone(func(m gosip.Message) bool {
		r, ok := m.(*gosip.Request)
		return ok && r.Method == gosip.BYE
	}, 200*time.Millisecond, "forged BYE relayed")
}

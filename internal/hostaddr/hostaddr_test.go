package hostaddr

import (
	"net/netip"
	"testing"
)

// TestPrimary: the address is an IPv4 address of an interface that is up
// and not loopback, or 127.0.0.1 exactly when there is none.
func TestPrimary(t *testing.T) {
	ip := Primary()
	if !ip.Is4() {
		t.Fatalf("Primary = %v, want IPv4", ip)
	}
	want, found := pick(upInterfaces(), true)
	if ip != want {
		t.Fatalf("Primary = %v, want the first such address %v", ip, want)
	}
	if !found && ip != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("no usable interface address, but Primary = %v", ip)
	}
	if found && (ip.IsLoopback() || ip.IsLinkLocalUnicast()) {
		t.Fatalf("Primary = %v", ip)
	}
	if v6, ok := Primary6(); ok && (!v6.Is6() || v6.IsLoopback() || v6.IsLinkLocalUnicast()) {
		t.Fatalf("Primary6 = %v", v6)
	}
}

// TestPick: which address each rule takes on hosts of every kind — IPv4
// only, IPv6 only, dual, loopback only — skipping link-local, loopback and
// v4-mapped addresses, interface by interface.
func TestPick(t *testing.T) {
	a := netip.MustParseAddr
	for _, c := range []struct {
		name         string
		ifs          [][]netip.Addr
		v4, v6       string
		loopbackOnly bool
	}{
		{"nothing", nil, "127.0.0.1", "", true},
		{"link-local only", [][]netip.Addr{{a("fe80::1"), a("169.254.3.4")}}, "127.0.0.1", "", true},
		{"IPv4 only", [][]netip.Addr{{a("fe80::1"), a("192.168.1.5")}}, "192.168.1.5", "", false},
		{"IPv6 only", [][]netip.Addr{{a("fe80::1"), a("2001:db8::5")}}, "127.0.0.1", "2001:db8::5", false},
		{"ULA counts", [][]netip.Addr{{a("fd00::7")}}, "127.0.0.1", "fd00::7", false},
		{"dual, first interface first", [][]netip.Addr{{a("2001:db8::5")}, {a("10.0.0.2"), a("2001:db8::6")}}, "10.0.0.2", "2001:db8::5", false},
		{"v4-mapped is IPv4", [][]netip.Addr{{a("::ffff:10.1.1.1")}}, "10.1.1.1", "", false},
	} {
		v4, ok4 := pick(c.ifs, true)
		v6, ok6 := pick(c.ifs, false)
		if v4.String() != c.v4 || ok4 != (c.v4 != "127.0.0.1") {
			t.Errorf("%s: IPv4 %v (%v), want %s", c.name, v4, ok4, c.v4)
		}
		if got := ""; ok6 {
			got = v6.String()
			if got != c.v6 {
				t.Errorf("%s: IPv6 %v, want %q", c.name, v6, c.v6)
			}
		} else if c.v6 != "" || v6 != netip.IPv6Loopback() {
			t.Errorf("%s: no IPv6 (%v), want %q", c.name, v6, c.v6)
		}
		if lo := !ok4 && !ok6; lo != c.loopbackOnly {
			t.Errorf("%s: loopback only = %v, want %v", c.name, lo, c.loopbackOnly)
		}
	}
}

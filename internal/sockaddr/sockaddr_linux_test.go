//go:build linux

package sockaddr

import (
	"net/netip"
	"testing"
)

// TestRoundTrip: what Put writes Parse reads back, for each family; an
// IPv4 address through an IPv6 socket comes back unmapped with no scope;
// an IPv4 socket refuses an IPv6 (or v4-mapped) address.
func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		ap    string
		scope uint32
		v6    bool
		size  uint32
	}{
		{"192.0.2.1:5060", 0, false, 16},
		{"192.0.2.1:5060", 0, true, 28},
		{"[2001:db8::1]:40000", 0, true, 28},
		{"[fe80::1]:5060", 3, true, 28},
	} {
		var b [Size]byte
		ap := netip.MustParseAddrPort(tc.ap)
		n, ok := Put(&b, ap, tc.scope, tc.v6)
		if !ok || n != tc.size {
			t.Fatalf("Put(%s, v6 %v) = %d, %v", ap, tc.v6, n, ok)
		}
		got, scope := Parse(&b)
		if got != ap || scope != tc.scope {
			t.Fatalf("Parse(Put(%s)) = %s scope %d", ap, got, scope)
		}
	}
	var b [Size]byte
	for _, s := range []string{"[2001:db8::1]:1", "[::ffff:192.0.2.1]:1"} {
		if _, ok := Put(&b, netip.MustParseAddrPort(s), 0, false); ok {
			t.Fatalf("an IPv4 socket takes %s", s)
		}
	}
	if ap, _ := Parse(&[Size]byte{}); ap.IsValid() {
		t.Fatalf("family 0 read as %s", ap)
	}
}

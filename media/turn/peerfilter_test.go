package turn

import (
	"net/netip"
	"testing"
)

func TestPeerAllowed(t *testing.T) {
	p := netip.MustParsePrefix
	tests := []struct {
		name  string
		ip    string
		allow []netip.Prefix
		want  bool
	}{
		{"public v4", "203.0.113.7", nil, true},
		{"public v4 other", "8.8.8.8", nil, true},
		{"public v6", "2001:db8::1", nil, true},
		{"loopback", "127.0.0.1", nil, false},
		{"loopback high", "127.255.0.9", nil, false},
		{"rfc1918 10", "10.1.2.3", nil, false},
		{"rfc1918 172.16", "172.16.0.1", nil, false},
		{"rfc1918 172.31", "172.31.255.255", nil, false},
		{"not rfc1918 172.32", "172.32.0.1", nil, true},
		{"rfc1918 192.168", "192.168.1.1", nil, false},
		{"link-local", "169.254.1.1", nil, false},
		{"cgnat", "100.64.0.1", nil, false},
		{"cgnat top", "100.127.255.254", nil, false},
		{"not cgnat", "100.128.0.1", nil, true},
		{"this network", "0.1.2.3", nil, false},
		{"unspecified v4", "0.0.0.0", nil, false},
		{"multicast v4", "224.0.0.1", nil, false},
		{"multicast v4 high", "239.255.255.250", nil, false},
		{"reserved", "240.0.0.1", nil, false},
		{"broadcast", "255.255.255.255", nil, false},
		{"metadata v4", "169.254.169.254", nil, false},
		{"metadata v6", "fd00:ec2::254", nil, false},
		{"loopback v6", "::1", nil, false},
		{"unspecified v6", "::", nil, false},
		{"link-local v6", "fe80::1", nil, false},
		{"link-local v6 zone", "fe80::1%eth0", nil, false},
		{"ula", "fd12:3456::1", nil, false},
		{"ula fc", "fc00::1", nil, false},
		{"multicast v6", "ff02::1", nil, false},
		{"v4-mapped loopback", "::ffff:127.0.0.1", nil, false},
		{"v4-mapped private", "::ffff:10.0.0.1", nil, false},
		{"v4-mapped public", "::ffff:203.0.113.7", nil, true},
		{"v4-compatible loopback", "::127.0.0.1", nil, false},
		{"nat64 private", "64:ff9b::a00:1", nil, false},
		{"nat64 public", "64:ff9b::cb00:7107", nil, true},
		{"6to4 private", "2002:c0a8:0101::1", nil, false},
		{"6to4 public", "2002:cb00:7107::1", nil, true},
		{"invalid", "", nil, false},

		{"loopback allowed", "127.0.0.1", []netip.Prefix{p("127.0.0.0/8")}, true},
		{"10 allowed", "10.1.2.3", []netip.Prefix{p("10.0.0.0/8")}, true},
		{"10 not in allow", "10.1.2.3", []netip.Prefix{p("192.168.0.0/16")}, false},
		{"v4-mapped allowed by v4 prefix", "::ffff:10.1.2.3", []netip.Prefix{p("10.0.0.0/8")}, true},
		{"ula allowed", "fd12:3456::1", []netip.Prefix{p("fd12::/16")}, true},
		{"metadata not allowed by covering prefix", "169.254.169.254", []netip.Prefix{p("169.254.0.0/16")}, false},
		{"link-local allowed by covering prefix", "169.254.1.1", []netip.Prefix{p("169.254.0.0/16")}, true},
		{"metadata allowed by exact prefix", "169.254.169.254", []netip.Prefix{p("169.254.169.254/32")}, true},
		{"metadata v6 not allowed by ula prefix", "fd00:ec2::254", []netip.Prefix{p("fc00::/7")}, false},
		{"metadata v6 allowed by exact prefix", "fd00:ec2::254", []netip.Prefix{p("fd00:ec2::254/128")}, true},
		{"public with allow list", "8.8.8.8", []netip.Prefix{p("10.0.0.0/8")}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ip netip.Addr
			if tt.ip != "" {
				ip = netip.MustParseAddr(tt.ip)
			}
			if got := PeerAllowed(ip, tt.allow); got != tt.want {
				t.Errorf("PeerAllowed(%s, %v) = %v, want %v", tt.ip, tt.allow, got, tt.want)
			}
		})
	}
}

func TestNetIPToAddr(t *testing.T) {
	if got := netIPToAddr([]byte{1, 2}); got.IsValid() {
		t.Errorf("malformed IP gave %v", got)
	}
	if got := netIPToAddr(netip.MustParseAddr("::ffff:10.0.0.1").AsSlice()); got != netip.MustParseAddr("10.0.0.1") {
		t.Errorf("4-in-6 gave %v", got)
	}
}

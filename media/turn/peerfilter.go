package turn

import (
	"net"
	"net/netip"
)

// refusedPeers are the ranges a TURN client may not relay to by default: a
// relay that reaches them would let anyone on the Internet talk to the
// server's own host, its private networks or its cloud provider. RFC 8656
// §10.2 (CreatePermission) and §12.2 (ChannelBind) let a server refuse a peer
// address by local policy with 403 (Forbidden); see also the security
// considerations of RFC 8656 §21.
var refusedPeers = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),      // "this network", incl. 0.0.0.0 (RFC 791, RFC 1122)
	netip.MustParsePrefix("10.0.0.0/8"),     // private (RFC 1918)
	netip.MustParsePrefix("100.64.0.0/10"),  // shared address space, CGNAT (RFC 6598)
	netip.MustParsePrefix("127.0.0.0/8"),    // loopback (RFC 1122)
	netip.MustParsePrefix("169.254.0.0/16"), // link-local (RFC 3927), incl. metadata 169.254.169.254
	netip.MustParsePrefix("172.16.0.0/12"),  // private (RFC 1918)
	netip.MustParsePrefix("192.168.0.0/16"), // private (RFC 1918)
	netip.MustParsePrefix("224.0.0.0/4"),    // multicast (RFC 5771)
	netip.MustParsePrefix("240.0.0.0/4"),    // reserved (RFC 1112), incl. broadcast 255.255.255.255
	netip.MustParsePrefix("::/96"),          // unspecified, loopback, IPv4-compatible (RFC 4291 §2.5)
	netip.MustParsePrefix("fe80::/10"),      // link-local (RFC 4291)
	netip.MustParsePrefix("fec0::/10"),      // site-local, deprecated (RFC 3879)
	netip.MustParsePrefix("fc00::/7"),       // unique local (RFC 4193), incl. metadata fd00:ec2::254
	netip.MustParsePrefix("ff00::/8"),       // multicast (RFC 4291)
}

// metadataPeers are cloud instance-metadata endpoints. They are refused even
// when an AllowPeers prefix covers them, unless AllowPeers names the exact
// address (a /32 or /128).
var metadataPeers = []netip.Addr{
	netip.MustParseAddr("169.254.169.254"), // AWS, GCP, Azure, OpenStack, ...
	netip.MustParseAddr("fd00:ec2::254"),   // AWS IPv6 metadata
}

var (
	nat64Prefix = netip.MustParsePrefix("64:ff9b::/96") // RFC 6052 well-known prefix
	sixTo4      = netip.MustParsePrefix("2002::/16")    // 6to4 (RFC 3056)
)

// PeerAllowed reports whether a TURN client may relay to the peer address ip
// (CreatePermission, ChannelBind). Loopback, RFC 1918, CGNAT, link-local,
// unique-local, multicast, unspecified, reserved and broadcast addresses and
// the cloud metadata addresses are refused unless a prefix in allow contains
// ip; a metadata address needs an allow prefix of exactly that address.
// IPv4-mapped IPv6 addresses, and IPv6 addresses embedding an IPv4 address
// (NAT64 64:ff9b::/96, 6to4 2002::/16), are judged by that IPv4 address too.
// It is a pure function.
func PeerAllowed(ip netip.Addr, allow []netip.Prefix) bool {
	if !ip.IsValid() {
		return false
	}
	ip = ip.WithZone("")
	for _, m := range metadataPeers {
		if ip.Unmap() == m {
			for _, p := range allow {
				if p.IsSingleIP() && p.Addr().Unmap() == m {
					return true
				}
			}

			return false
		}
	}
	for _, p := range allow {
		if p.Contains(ip) || (ip.Is4In6() && p.Contains(ip.Unmap())) {
			return true
		}
	}

	return !refused(ip)
}

// refused reports whether ip falls in a default-refused range, looking
// through IPv4-in-IPv6 encodings.
func refused(ip netip.Addr) bool {
	if ip.Is4In6() {
		return refused(ip.Unmap())
	}
	for _, p := range refusedPeers {
		if p.Contains(ip) {
			return true
		}
	}
	if ip.Is6() {
		b := ip.As16()
		if nat64Prefix.Contains(ip) {
			return refused(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
		}
		if sixTo4.Contains(ip) {
			return refused(netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}))
		}
	}

	return false
}

// netIPToAddr converts a net.IP to a netip.Addr (invalid when ip is malformed).
func netIPToAddr(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}
	}
	if a.Is4In6() {
		a = a.Unmap()
	}

	return a
}

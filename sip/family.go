package sip

import (
	"net/netip"
	"strings"
)

// Dual stack. A listener bound to an IPv4 address reaches IPv4 peers only,
// one bound to an IPv6 address IPv6 peers only, and one bound to :: both
// (Go opens it with IPV6_V6ONLY off; IPv4 peers appear as v4-mapped
// addresses, which addrPortOf unmaps). A request goes out of a listener
// that reaches its destination, and carries that listener's address of the
// destination's family in Via and Record-Route (RFC 3261 §16.6 steps 4 and
// 8); a call that crosses families is record-routed twice (RFC 5658), so
// that each party routes back to the address it can reach.

// destAddr returns the IP address of a host:port destination, or the zero
// Addr when its host is a name (or it cannot be parsed).
func destAddr(dest string) netip.Addr {
	if ap, err := netip.ParseAddrPort(dest); err == nil {
		return ap.Addr().Unmap()
	}
	host := dest
	if i := strings.LastIndexByte(dest, ':'); i >= 0 && !strings.HasSuffix(dest, "]") {
		host = dest[:i]
	}
	if ip, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return ip.Unmap()
	}
	return netip.Addr{}
}

// dualStack reports whether i's socket is bound to :: and so serves IPv4
// and IPv6 peers alike.
func (i iface) dualStack() bool {
	a := i.bound.Addr()
	return a.Is6() && a.IsUnspecified()
}

// reaches reports whether i's socket can send to dst (any address when dst
// is not known).
func (i iface) reaches(dst netip.Addr) bool {
	if !dst.IsValid() || i.dualStack() {
		return true
	}
	return i.bound.Addr().Is4() == dst.Is4()
}

// forFamily returns i as it is advertised to a peer at dst: a listener
// bound to :: has an IPv4 address to advertise (adv) and an IPv6 one
// (adv6; ::1 to a loopback peer when none is configured).
func (i iface) forFamily(dst netip.Addr) iface {
	if !i.dualStack() || !dst.IsValid() || dst.Is4() {
		return i
	}
	switch {
	case i.adv6 != "":
		i.adv = i.adv6
	case dst.IsLoopback():
		i.adv = "::1"
	}
	return i
}

// pickIface returns the first listener of transport t (lower case) of
// dst's own family, else the first bound to :: (or any, for an unknown
// dst), advertised for dst.
func pickIface(ifaces []iface, t string, dst netip.Addr) (iface, bool) {
	var dual *iface
	for k := range ifaces {
		i := &ifaces[k]
		if i.transport != t || !i.reaches(dst) {
			continue
		}
		if !i.dualStack() || !dst.IsValid() {
			return i.forFamily(dst), true
		}
		if dual == nil {
			dual = i
		}
	}
	if dual != nil {
		return dual.forFamily(dst), true
	}
	return iface{}, false
}

// sameSide reports whether i and o are advertised alike, so that one
// Record-Route entry serves both sides of a call.
func (i iface) sameSide(o iface) bool {
	return i.transport == o.transport && i.adv == o.adv && i.port == o.port
}

// sdpPeer returns the media address an SDP body names (the connection
// address of its first enabled m-line), the zero Addr when there is none:
// the family of the party that sent it, so that the SDP written back to
// that party names the relay's address of the same family
// (media.Relay.PublicIPFor).
func sdpPeer(body []byte) netip.Addr {
	if len(body) == 0 {
		return netip.Addr{}
	}
	_, lines, err := parseSDP(body)
	if err != nil {
		return netip.Addr{}
	}
	for _, l := range lines {
		if !l.disabled && !l.rtp.Addr().IsUnspecified() {
			return l.rtp.Addr()
		}
	}
	return netip.Addr{}
}

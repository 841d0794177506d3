package media

import (
	"log/slog"
	"net"
	"net/netip"

	"github.com/switchboard/switchboard/internal/hostaddr"
)

// Dual stack. Bound to "::" (the default), the relay's sockets take IPv4
// and IPv6 alike (IPV6_V6ONLY off; IPv4 parties appear as v4-mapped
// addresses, which the engines unmap), so one stream bridges an IPv4 party
// and an IPv6 one. Each party is told the relay address of its own family
// (PublicIPFor).

// PublicIPFor returns the address the party at peer (its SIP or media
// address) is to send media to, for the SDP written to it: an IPv6 party
// gets the relay's IPv6 address (Config.PublicIP6; ::1 for a loopback
// party when none is known) when the sockets take IPv6, and anyone else —
// an IPv4 party, an unknown one (the zero Addr), an IPv6 party when the
// relay has only IPv4 sockets — gets PublicIP.
func (r *Relay) PublicIPFor(peer netip.Addr) netip.Addr {
	peer = peer.Unmap()
	if !peer.IsValid() || peer.Is4() || !r.takesIPv6() {
		return r.publicIP
	}
	switch {
	case r.publicIP6.IsValid():
		return r.publicIP6
	case peer.IsLoopback():
		return netip.IPv6Loopback()
	}
	return r.publicIP
}

// PublicIP6 returns the address IPv6 parties send media to, invalid when
// the relay has none (see PublicIPFor).
func (r *Relay) PublicIP6() netip.Addr { return r.publicIP6 }

// takesIPv6 reports whether the sockets are IPv6 ones.
func (r *Relay) takesIPv6() bool {
	b := r.bindIP
	return b.Is6() && !b.Is4In6()
}

// bindAddr returns the address to bind the sockets to: ip, except that
// "::" on a host without IPv6 falls back to 0.0.0.0 (logged), so that the
// default works there too.
func bindAddr(ip netip.Addr, log *slog.Logger) netip.Addr {
	if ip != netip.IPv6Unspecified() {
		return ip
	}
	c, err := net.ListenPacket("udp6", "[::]:0")
	if err != nil {
		log.Warn("no IPv6 on this host: media sockets bound to 0.0.0.0 (IPv4 only)", "error", err)
		return netip.IPv4Unspecified()
	}
	c.Close()
	return ip
}

// publicAddr6 returns the configured IPv6 public address, or the host's
// own when none is configured and the sockets take IPv6; invalid if none.
func publicAddr6(configured string, bind netip.Addr) netip.Addr {
	if !bind.Is6() || bind.Is4In6() {
		return netip.Addr{}
	}
	if configured != "" {
		return netip.MustParseAddr(configured) // validated
	}
	if !bind.IsUnspecified() {
		return bind // the only address the sockets receive on
	}
	if ip, ok := hostaddr.Primary6(); ok {
		return ip
	}
	return netip.Addr{}
}

// Package hostaddr is the one place the switch works out which address of
// its host it is reached at when the configuration does not say: the
// binary resolves it once and passes it down to the SIP edge (Via and
// Record-Route), the media relay (SDP) and the TURN server (relayed
// addresses). It must not import any other package of the switch.
package hostaddr

import (
	"net"
	"net/netip"
)

// Primary returns the first IPv4 address of an interface that is up, not
// loopback, and neither link-local nor unspecified — a public or a private
// address — or 127.0.0.1 when the host has none (a namespace with only lo,
// or an IPv6-only host: see Primary6).
func Primary() netip.Addr {
	a, _ := pick(upInterfaces(), true)
	return a
}

// Primary6 returns the first IPv6 address of an interface that is up that
// other hosts can reach — global unicast, unique local (RFC 4193) included
// as private IPv4 addresses are; not loopback, link-local or v4-mapped —
// and whether there is one.
func Primary6() (netip.Addr, bool) {
	return pick(upInterfaces(), false)
}

// LoopbackOnly reports whether the host has no address other hosts could
// reach, of either family: Primary is then 127.0.0.1, and only parties on
// the host itself can use the switch.
func LoopbackOnly() bool {
	ifs := upInterfaces()
	_, v4 := pick(ifs, true)
	_, v6 := pick(ifs, false)
	return !v4 && !v6
}

// upInterfaces returns the addresses of the interfaces that are up and not
// loopback, interface by interface in the system's order.
func upInterfaces() [][]netip.Addr {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var out [][]netip.Addr
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		var as []netip.Addr
		for _, a := range addrs {
			if pfx, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(pfx.IP); ok {
					as = append(as, ip)
				}
			}
		}
		out = append(out, as)
	}
	return out
}

// pick returns the first usable address of the family asked for (v4 or
// IPv6) in ifs; with none, 127.0.0.1 (v4) or ::1, and false.
func pick(ifs [][]netip.Addr, v4 bool) (netip.Addr, bool) {
	for _, as := range ifs {
		for _, ip := range as {
			if v4 {
				ip = ip.Unmap()
			}
			if usable(ip) && ip.Is4() == v4 {
				return ip, true
			}
		}
	}
	if v4 {
		return netip.AddrFrom4([4]byte{127, 0, 0, 1}), false
	}
	return netip.IPv6Loopback(), false
}

// usable reports whether other hosts could send to ip.
func usable(ip netip.Addr) bool {
	return ip.IsValid() && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() && !ip.IsUnspecified() &&
		!ip.IsMulticast() && !ip.Is4In6()
}

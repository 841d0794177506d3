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
// address — or 127.0.0.1 when the host has none (a namespace with only lo).
func Primary() netip.Addr {
	ifs, err := net.Interfaces()
	if err == nil {
		for _, ifc := range ifs {
			if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
				continue
			}
			if ip, ok := firstIPv4(ifc); ok {
				return ip
			}
		}
	}
	return netip.AddrFrom4([4]byte{127, 0, 0, 1})
}

func firstIPv4(ifc net.Interface) (netip.Addr, bool) {
	addrs, err := ifc.Addrs()
	if err != nil {
		return netip.Addr{}, false
	}
	for _, a := range addrs {
		pfx, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(pfx.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if ip.Is4() && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() && !ip.IsUnspecified() && !ip.IsMulticast() {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

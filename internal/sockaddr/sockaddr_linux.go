//go:build linux

package sockaddr

import (
	"encoding/binary"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Size holds a struct sockaddr_in or sockaddr_in6.
const Size = unix.SizeofSockaddrInet6

// Parse reads a struct sockaddr_in or sockaddr_in6: the address (an IPv4
// one unmapped), and an IPv6 address's scope id (0 when none). It is the
// zero AddrPort for another family.
func Parse(b *[Size]byte) (ap netip.AddrPort, scope uint32) {
	port := binary.BigEndian.Uint16(b[2:4])
	switch binary.NativeEndian.Uint16(b[0:2]) {
	case unix.AF_INET:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), port), 0
	case unix.AF_INET6:
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[8:24])).Unmap(), port), binary.NativeEndian.Uint32(b[24:28])
	}
	return netip.AddrPort{}, 0
}

// Put writes ap as the sockaddr a socket of that family (v6: AF_INET6,
// where an IPv4 address is written v4-mapped) takes, with scope as an IPv6
// address's scope id, and returns its length; false when such a socket
// cannot reach ap (an IPv4 socket and an address that is not IPv4).
func Put(b *[Size]byte, ap netip.AddrPort, scope uint32, v6 bool) (uint32, bool) {
	a := ap.Addr()
	if !v6 {
		if !a.Is4() {
			return 0, false
		}
		binary.NativeEndian.PutUint16(b[0:2], unix.AF_INET)
		binary.BigEndian.PutUint16(b[2:4], ap.Port())
		*(*[4]byte)(b[4:8]) = a.As4()
		clear(b[8:16])
		return unix.SizeofSockaddrInet4, true
	}
	binary.NativeEndian.PutUint16(b[0:2], unix.AF_INET6)
	binary.BigEndian.PutUint16(b[2:4], ap.Port())
	clear(b[4:8]) // flow info
	*(*[16]byte)(b[8:24]) = a.As16()
	binary.NativeEndian.PutUint32(b[24:28], scope)
	return unix.SizeofSockaddrInet6, true
}

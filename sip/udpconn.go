package sip

import (
	"hash/maphash"
	"net"
	"net/netip"
	"sync/atomic"
)

// udpListener is a UDP listener socket as sipgo gets it (ServeUDP). sipgo
// asks the addresses of every datagram for their text, each time
// formatting them anew: its wire tracer (which the console and HEP use)
// both addresses of each datagram read and written, its connection pool
// the source of each datagram read, and the REGISTER fast path sets it as
// the request's source. Here the addresses carry their text, formatted
// once: the local address when bound, a datagram's source when read. With
// the console on, that formatting was 1–1.5 % of the CPU of registrations
// and calls in profiles (bench/sip/RESULTS.md).
//
// The sources are kept too, in a small table by address: a phone or a
// peer sends many datagrams, and each read formatted its address again
// (3 allocations, 4 % of a call's). A source not in the table replaces
// the one in its slot; the addresses handed out are never changed.
type udpListener struct {
	*net.UDPConn
	raw     *rawUDP // its reads and writes (udpconn_linux.go); nil: net's
	local   *textAddr
	sources [sourceSlots]atomic.Pointer[textAddr]
	seed    maphash.Seed
}

// sourceSlots is the size of a listener's table of sources.
const sourceSlots = 256

func newUDPListener(c *net.UDPConn) *udpListener {
	return &udpListener{UDPConn: c, raw: newRawUDP(c), local: newTextAddr(c.LocalAddr().(*net.UDPAddr).AddrPort()), seed: maphash.MakeSeed()}
}

// source returns the address ap with its text, from the table or new.
func (l *udpListener) source(ap netip.AddrPort) *textAddr {
	slot := &l.sources[maphash.Comparable(l.seed, ap)%sourceSlots]
	if a := slot.Load(); a != nil && a.ap == ap {
		return a
	}
	a := newTextAddr(ap)
	slot.Store(a)
	return a
}

// LocalAddr returns the socket's address, with its text.
func (l *udpListener) LocalAddr() net.Addr { return l.local }

// ReadFrom reads a datagram; its source comes with its text.
func (l *udpListener) ReadFrom(b []byte) (int, net.Addr, error) {
	var n int
	var ap netip.AddrPort
	var err error
	if l.raw != nil {
		n, ap, err = l.raw.read(b)
	} else {
		n, ap, err = l.ReadFromUDPAddrPort(b)
	}
	if err != nil {
		return n, nil, err
	}
	return n, l.source(ap), nil
}

// WriteTo writes a datagram to addr, which may be a textAddr.
func (l *udpListener) WriteTo(b []byte, addr net.Addr) (int, error) {
	if l.raw != nil {
		var ap netip.AddrPort
		switch a := addr.(type) {
		case *textAddr:
			ap = a.ap
		case *net.UDPAddr:
			ap = a.AddrPort()
		}
		if ap.IsValid() {
			n, err := l.raw.write(b, ap)
			if err != nil {
				err = &net.OpError{Op: "write", Net: "udp", Source: l.local, Addr: addr, Err: err}
			}
			return n, err
		}
	}
	if a, ok := addr.(*textAddr); ok {
		return l.UDPConn.WriteTo(b, &a.UDPAddr)
	}
	return l.UDPConn.WriteTo(b, addr)
}

// textAddr is a UDP address that carries its text (String without
// formatting).
type textAddr struct {
	net.UDPAddr
	ip   [16]byte // what UDPAddr.IP points into: one allocation for both
	text string
	ap   netip.AddrPort
}

func newTextAddr(ap netip.AddrPort) *textAddr {
	a := &textAddr{ap: ap}
	if ip := ap.Addr(); ip.Is4() {
		v4 := ip.As4()
		copy(a.ip[:], v4[:])
		a.IP = a.ip[:4]
	} else {
		a.ip = ip.As16()
		a.IP = a.ip[:]
		a.Zone = ip.Zone()
	}
	a.Port = int(ap.Port())
	a.text = a.UDPAddr.String()
	return a
}

// String returns the address as host:port.
func (a *textAddr) String() string { return a.text }

// udpAddrOf returns a UDP address as a *net.UDPAddr (nil if it is not one).
func udpAddrOf(a net.Addr) *net.UDPAddr {
	switch v := a.(type) {
	case *net.UDPAddr:
		return v
	case *textAddr:
		return &v.UDPAddr
	}
	return nil
}

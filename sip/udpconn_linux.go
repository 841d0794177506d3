//go:build linux

package sip

import (
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/switchboard/switchboard/internal/sockaddr"
)

// rawUDP reads and writes a UDP listener's datagrams with raw system calls
// (RawSyscall rather than Syscall) on its non-blocking socket, waiting in
// Go's netpoller, as net does, only when a read or write would block.
//
// A system call made through syscall.Syscall marks the goroutine's P as
// in a system call; sysmon, seeing one there across two of its ticks,
// hands the P to another thread. On the one core a switch runs on under
// load that is a thread switch for nothing: recvfrom and sendto on a
// non-blocking UDP socket never block, they only take a few microseconds
// (on loopback sendto does the receiver's work too). In profiles of
// registrations at 12,000/s sysmon waking every 20 µs and the thread
// switches it caused were ~10 % of the switch's CPU. The media relay's
// engine makes its system calls the same way (media/engine_linux.go).
type rawUDP struct {
	rc syscall.RawConn
	v6 bool // an AF_INET6 socket: IPv4 destinations are written v4-mapped

	rmu sync.Mutex // one read at a time: r is the read's state
	r   rawIO
	w   sync.Pool // *rawIO, a write's state
}

// rawIO is the state of a read or a write and the function RawConn.Read
// or Write calls, made once so that a read or write allocates nothing.
type rawIO struct {
	buf  []byte
	n    int
	name [sockaddr.Size]byte
	nlen uint32
	err  syscall.Errno
	fn   func(fd uintptr) bool
}

// settle records the result of a recvfrom or sendto that was not
// interrupted, and reports whether it is over (false: it would block, the
// netpoller waits until the socket is ready and fn runs again).
func (o *rawIO) settle(n uintptr, errno syscall.Errno) bool {
	switch errno {
	case 0:
		o.n, o.err = int(n), 0
	case unix.EAGAIN:
		return false
	default:
		o.n, o.err = 0, errno
	}
	return true
}

// newRawUDP returns the raw reads and writes of c, or nil when its socket
// cannot be reached (c then reads and writes as net does).
func newRawUDP(c *net.UDPConn) *rawUDP {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	u := &rawUDP{rc: rc}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		var sa unix.Sockaddr
		if sa, serr = unix.Getsockname(int(fd)); serr == nil {
			_, u.v6 = sa.(*unix.SockaddrInet6)
		}
	}); err != nil || serr != nil {
		return nil
	}
	r := &u.r
	r.fn = func(fd uintptr) bool {
		for {
			r.nlen = sockaddr.Size
			n, _, errno := unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(unsafe.SliceData(r.buf))), uintptr(len(r.buf)), 0,
				uintptr(unsafe.Pointer(&r.name[0])), uintptr(unsafe.Pointer(&r.nlen)))
			if errno != unix.EINTR {
				return r.settle(n, errno)
			}
		}
	}
	u.w.New = func() any {
		w := new(rawIO)
		w.fn = func(fd uintptr) bool {
			for {
				n, _, errno := unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(unsafe.Pointer(unsafe.SliceData(w.buf))), uintptr(len(w.buf)), 0,
					uintptr(unsafe.Pointer(&w.name[0])), uintptr(w.nlen))
				if errno != unix.EINTR {
					return w.settle(n, errno)
				}
			}
		}
		return w
	}
	return u
}

// read reads a datagram into b: its length and source.
func (u *rawUDP) read(b []byte) (int, netip.AddrPort, error) {
	u.rmu.Lock()
	defer u.rmu.Unlock()
	r := &u.r
	r.buf = b
	err := u.rc.Read(r.fn)
	r.buf = nil
	if err != nil {
		return 0, netip.AddrPort{}, err // closed: net.ErrClosed
	}
	if r.err != 0 {
		return 0, netip.AddrPort{}, os.NewSyscallError("recvfrom", r.err)
	}
	return r.n, sockaddrPort(&r.name), nil
}

// write writes b to ap.
func (u *rawUDP) write(b []byte, ap netip.AddrPort) (int, error) {
	w := u.w.Get().(*rawIO)
	defer u.w.Put(w)
	var ok bool
	if w.nlen, ok = putSockaddrPort(&w.name, ap, u.v6); !ok {
		return 0, os.NewSyscallError("sendto", unix.EAFNOSUPPORT)
	}
	w.buf = b
	err := u.rc.Write(w.fn)
	w.buf = nil
	if err != nil {
		return 0, err
	}
	if w.err != 0 {
		return 0, os.NewSyscallError("sendto", w.err)
	}
	return w.n, nil
}

// sockaddrPort reads a struct sockaddr_in or sockaddr_in6 (sockaddr.Parse:
// an IPv4 address unmapped) with an IPv6 scope as its interface's name, as
// net gives it.
func sockaddrPort(b *[sockaddr.Size]byte) netip.AddrPort {
	ap, scope := sockaddr.Parse(b)
	if scope == 0 || !ap.Addr().Is6() {
		return ap
	}
	zone := strconv.FormatUint(uint64(scope), 10)
	if ifc, err := net.InterfaceByIndex(int(scope)); err == nil {
		zone = ifc.Name
	}
	return netip.AddrPortFrom(ap.Addr().WithZone(zone), ap.Port())
}

// putSockaddrPort writes ap as the sockaddr a socket of that family (v6:
// AF_INET6) takes and returns its length (sockaddr.Put, an IPv4 address
// mapped or not, an IPv6 zone as its scope id); false if such a socket
// cannot reach it.
func putSockaddrPort(b *[sockaddr.Size]byte, ap netip.AddrPort, v6 bool) (uint32, bool) {
	a := ap.Addr()
	var scope uint32
	if z := a.Zone(); z != "" {
		if n, err := strconv.ParseUint(z, 10, 32); err == nil {
			scope = uint32(n)
		} else if ifc, err := net.InterfaceByName(z); err == nil {
			scope = uint32(ifc.Index)
		}
	}
	return sockaddr.Put(b, netip.AddrPortFrom(a.Unmap(), ap.Port()), scope, v6)
}

package main

import (
	"fmt"
	"net/netip"
	"runtime"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The generator's I/O: one thread, one non-blocking socket, poll(2),
// recvmmsg(2) and sendmmsg(2) called with syscall.RawSyscall6. Go's usual
// path (the netpoller, a goroutine parked per read, sysmon handing the P
// off when a loopback sendto takes long) cost a first version of sipload
// 40 % of its CPU in scheduling: more than SIPp per call. Raw calls keep
// the runtime out of the loop; a SIGURG from the runtime's preemption only
// makes poll return EINTR.

const batch = 64 // datagrams per recvmmsg and sendmmsg

type mmsghdr struct {
	hdr syscall.Msghdr
	n   uint32
	_   [4]byte
}

// sock is the generator's UDP socket and its batches.
type sock struct {
	fd    int
	local netip.AddrPort
	dst   syscall.RawSockaddrInet4
	// receiving
	rbufs [batch][4096]byte
	riov  [batch]syscall.Iovec
	rhdrs [batch]mmsghdr
	// sending: the datagrams queued since the last flush
	out   [][]byte
	siov  [batch]syscall.Iovec
	shdrs [batch]mmsghdr
	pfd   [1]pollfd
}

type pollfd struct {
	fd      int32
	events  int16
	revents int16
}

// openSock binds 127.0.0.1:port (0: any) and aims at server.
func openSock(port int, server netip.AddrPort) (*sock, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, 8<<20)
	_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_SNDBUF, 8<<20)
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("bind 127.0.0.1:%d: %w", port, err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		syscall.Close(fd)
		return nil, err
	}
	s := &sock{fd: fd, local: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*syscall.SockaddrInet4).Port))}
	if !server.Addr().Is4() {
		syscall.Close(fd)
		return nil, fmt.Errorf("-server %s: IPv4 only", server)
	}
	s.dst.Family = syscall.AF_INET
	s.dst.Addr = server.Addr().As4()
	p := server.Port()
	s.dst.Port = p<<8 | p>>8 // network byte order
	for i := range s.rhdrs {
		s.riov[i].Base = &s.rbufs[i][0]
		s.riov[i].SetLen(len(s.rbufs[i]))
		s.rhdrs[i].hdr.Iov = &s.riov[i]
		s.rhdrs[i].hdr.Iovlen = 1
	}
	for i := range s.shdrs {
		s.shdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&s.dst))
		s.shdrs[i].hdr.Namelen = uint32(unsafe.Sizeof(s.dst))
		s.shdrs[i].hdr.Iov = &s.siov[i]
		s.shdrs[i].hdr.Iovlen = 1
	}
	s.pfd[0] = pollfd{fd: int32(fd), events: 0x1} // POLLIN
	return s, nil
}

// closeSock closes the socket.
func closeSock(s *sock) error { return syscall.Close(s.fd) }

// send queues b (kept until the next flush) for the server.
func (s *sock) send(b []byte) {
	s.out = append(s.out, b)
	if len(s.out) == batch {
		s.flush()
	}
}

// flush sends what was queued.
func (s *sock) flush() {
	for done := 0; done < len(s.out); {
		n := min(len(s.out)-done, batch)
		for i := 0; i < n; i++ {
			s.siov[i].Base = &s.out[done+i][0]
			s.siov[i].SetLen(len(s.out[done+i]))
		}
		r, _, e := syscall.RawSyscall6(unix.SYS_SENDMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&s.shdrs[0])), uintptr(n), 0, 0, 0)
		sent := int(r)
		if e != 0 {
			if e == syscall.EINTR {
				continue
			}
			// EAGAIN (socket buffer full) or worse: the datagram is
			// lost, as on a full network; the retransmissions recover.
			sent = 1
		}
		done += sent
	}
	clear(s.out)
	s.out = s.out[:0]
}

// wait blocks until the socket is readable or d has passed; with tick
// set, it sleeps for d whatever arrives.
func (s *sock) wait(d time.Duration, tick bool) {
	ms := int((d + time.Millisecond - 1) / time.Millisecond) // poll's unit; 0 would spin
	if ms < 1 {
		ms = 1
	}
	if tick {
		_, _, _ = syscall.RawSyscall(syscall.SYS_POLL, 0, 0, uintptr(ms))
		return
	}
	_, _, _ = syscall.RawSyscall(syscall.SYS_POLL, uintptr(unsafe.Pointer(&s.pfd[0])), 1, uintptr(ms))
}

// recv reads up to a batch of datagrams and calls f with each (the slices
// are valid until the next recv).
func (s *sock) recv(f func([]byte)) int {
	for i := range s.rhdrs {
		s.rhdrs[i].n = 0
	}
	r, _, e := syscall.RawSyscall6(unix.SYS_RECVMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&s.rhdrs[0])), batch, syscall.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0
	}
	n := int(r)
	for i := 0; i < n; i++ {
		f(s.rbufs[i][:s.rhdrs[i].n])
	}
	return n
}

// loop runs the generator on this thread: datagrams, timers and step (the
// starting of operations) until step reports it is done.
func (g *gen) loop(step func(now time.Time) bool) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for {
		now := time.Now()
		for g.s.recv(func(m []byte) { g.handle(m, now) }) == batch {
		}
		g.fire(now)
		if !step(now) {
			g.s.flush()
			return
		}
		g.s.flush()
		if g.o.tick > 0 {
			// Ticks: the datagrams of a tick are read, and the answers
			// sent, in one batch, for one wake-up a tick instead of
			// one a datagram (these were a third of the CPU per call).
			g.s.wait(g.o.tick, true)
			continue
		}
		d := time.Millisecond
		if len(g.timers) > 0 {
			d = min(d, time.Until(g.timers[0].at))
		}
		g.s.wait(d, false)
	}
}

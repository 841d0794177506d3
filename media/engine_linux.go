//go:build linux && !media_netpoll

package media

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/switchboard/switchboard/internal/sockaddr"
)

// The Linux engine: Config.Workers epoll loops, each serving the sockets of
// the streams assigned to it. A loop owns its sockets once they are
// registered: only the loop closes them, so a file descriptor number is
// never reused under a packet in flight. Both sides of a stream are on the
// same loop, so a stream's lock is only ever contended by the control plane.
//
// A loop's epoll instance is itself registered with Go's netpoller, so an
// idle loop parks like a goroutine reading a connection, and a busy one
// polls its epoll instance without blocking: no thread blocks in epoll_wait,
// no P is handed off, no thread switch per wake-up.
//
// Per ready socket a loop reads into buffers it owns and sends from the
// buffers the datagrams arrived in: no allocation, no copy. A media socket
// mostly holds a single datagram when it is ready (50 packets a second), so
// each socket reads with recvfrom and sends with sendto while that is so, and
// switches to recvmmsg/sendmmsg batches of up to batchSize while batches come
// back full (bursts, floods). Epoll is level-triggered, so a socket with more
// waiting is served again in the next round, after the other ready sockets: a
// flood on one port cannot starve the rest.

const (
	batchSize = 32   // datagrams per recvmmsg/sendmmsg
	rxBufSize = 4096 // largest datagram relayed; larger ones are dropped as oversize
	maxEvents = 256  // readiness events per epoll_wait
	nameSize  = sockaddr.Size
)

// sock is one bound UDP socket of a stream.
type sock struct {
	st    *Stream
	side  Side
	rtcp  bool
	fd    int
	slot  int32 // index in the loop's table, -1 when not registered
	batch uint8 // datagrams to ask for next time (see serve)
}

// streamEngine is the engine's part of a Stream.
type streamEngine struct {
	loop *loop
}

type engine struct {
	r     *Relay
	v6    bool // sockets are AF_INET6
	loops []*loop
	next  atomic.Uint32
	wg    sync.WaitGroup
}

type cmdOp uint8

const (
	cmdAdd cmdOp = iota
	cmdRemove
)

type cmd struct {
	op   cmdOp
	s    *Stream
	done chan struct{} // closed when a remove is done
}

type loop struct {
	r    *Relay
	e    *engine
	epfd int
	evfd int
	file *os.File // owns epfd, registered with the netpoller
	rc   syscall.RawConn

	mu       sync.Mutex // guards cmds, stopping, dead
	cmds     []cmd
	stopping bool
	dead     bool

	// Owned by the loop goroutine.
	slots     []*sock
	freeSlots []int32
	streams   map[*Stream]struct{}
	events    [maxEvents]unix.EpollEvent
	spare     []cmd

	// struct mmsghdr arrays for recvmmsg(2)/sendmmsg(2); each Hdr points
	// at its own iovec and name buffer, set once in newLoop.
	rxHdrs  [batchSize]unix.Mmsghdr
	rxIovs  [batchSize]unix.Iovec
	rxNames [batchSize][nameSize]byte
	rxBufs  []byte // batchSize * rxBufSize

	txHdrs  [batchSize]unix.Mmsghdr
	txIovs  [batchSize]unix.Iovec
	txNames [batchSize][nameSize]byte
	txOut   [batchSize]*sock
	txLen   [batchSize]int
}

func newEngine(r *Relay) (*engine, error) {
	e := &engine{r: r, v6: !r.bindIP.Unmap().Is4()}
	for i := 0; i < r.cfg.Workers; i++ {
		l, err := newLoop(r, e)
		if err != nil {
			e.close()
			return nil, err
		}
		e.loops = append(e.loops, l)
	}
	for _, l := range e.loops {
		e.wg.Add(1)
		go l.run()
	}
	return e, nil
}

func newLoop(r *Relay, e *engine) (*loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: -1}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &ev); err != nil {
		unix.Close(evfd)
		unix.Close(epfd)
		return nil, fmt.Errorf("epoll_ctl eventfd: %w", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(evfd)
		unix.Close(epfd)
		return nil, fmt.Errorf("epoll fd non-blocking: %w", err)
	}
	file := os.NewFile(uintptr(epfd), "media-epoll") // owns epfd from here
	rc, err := file.SyscallConn()
	if err != nil {
		unix.Close(evfd)
		file.Close()
		return nil, fmt.Errorf("epoll fd in netpoller: %w", err)
	}
	l := &loop{
		r: r, e: e, epfd: epfd, evfd: evfd, file: file, rc: rc,
		streams: make(map[*Stream]struct{}),
		rxBufs:  make([]byte, batchSize*rxBufSize),
	}
	for i := range l.rxHdrs {
		l.rxIovs[i].Base = &l.rxBufs[i*rxBufSize]
		l.rxIovs[i].SetLen(rxBufSize)
		h := &l.rxHdrs[i].Hdr
		h.Name = &l.rxNames[i][0]
		h.Iov = &l.rxIovs[i]
		h.SetIovlen(1)
		t := &l.txHdrs[i].Hdr
		t.Name = &l.txNames[i][0]
		t.Iov = &l.txIovs[i]
		t.SetIovlen(1)
	}
	return l, nil
}

// openSide binds the RTP and RTCP sockets of a side.
func (e *engine) openSide(s *Stream, side Side, port int) error {
	rtp, err := bindUDP(e.r.bindIP, port, e.r.cfg.SocketBuffer)
	if err != nil {
		return err
	}
	rtcp, err := bindUDP(e.r.bindIP, port+1, e.r.cfg.SocketBuffer)
	if err != nil {
		unix.Close(rtp)
		return err
	}
	s.legs[side].socks = [2]*sock{
		{st: s, side: side, fd: rtp, slot: -1},
		{st: s, side: side, rtcp: true, fd: rtcp, slot: -1},
	}
	return nil
}

// closeSide closes the sockets of a side that was never started.
func (e *engine) closeSide(s *Stream, side Side) {
	for i, k := range s.legs[side].socks {
		if k != nil {
			unix.Close(k.fd)
			s.legs[side].socks[i] = nil
		}
	}
}

// start hands a stream whose sockets are bound to a loop.
func (e *engine) start(s *Stream) {
	l := e.loops[e.next.Add(1)%uint32(len(e.loops))]
	s.eng.loop = l
	l.post(cmd{op: cmdAdd, s: s})
}

// remove has the stream's loop close its sockets and call finish, and waits
// for it.
func (e *engine) remove(s *Stream) {
	done := make(chan struct{})
	if s.eng.loop.post(cmd{op: cmdRemove, s: s, done: done}) {
		<-done
	}
}

// close stops the loops; each closes the sockets it owns.
func (e *engine) close() {
	for _, l := range e.loops {
		l.mu.Lock()
		l.stopping = true
		l.mu.Unlock()
		l.wake()
	}
	e.wg.Wait()
	for _, l := range e.loops {
		unix.Close(l.evfd)
		l.file.Close()
	}
}

// post queues a command for the loop and wakes it. It reports false if the
// loop has stopped; it then closed the stream's sockets itself.
func (l *loop) post(c cmd) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dead {
		return false
	}
	l.cmds = append(l.cmds, c)
	l.wakeLocked()
	return true
}

func (l *loop) wake() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.dead {
		l.wakeLocked()
	}
}

func (l *loop) wakeLocked() {
	one := [8]byte{1}
	unix.Write(l.evfd, one[:]) // EAGAIN means a wake-up is pending anyway
}

// run serves the loop's sockets until the engine closes. The loop's epoll
// instance is itself registered with Go's netpoller (an epoll fd is readable
// while any of its sockets is), so an idle loop parks like any goroutine
// waiting on a connection instead of blocking a thread in epoll_wait: no P
// hand-off and no thread switch on each wake-up.
func (l *loop) run() {
	defer l.e.wg.Done()
	var failed error
	err := l.rc.Read(func(fd uintptr) bool {
		for {
			n, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, fd,
				uintptr(unsafe.Pointer(&l.events[0])), maxEvents, 0, 0, 0)
			switch {
			case errno == unix.EINTR:
				continue
			case errno != 0:
				failed = errno
				return true
			case n == 0:
				return false // nothing ready: park until the epoll fd is readable
			}
			woke := false
			for i := 0; i < int(n); i++ {
				ev := &l.events[i]
				if ev.Fd < 0 {
					woke = true
					continue
				}
				if s := l.slots[ev.Fd]; s != nil {
					l.serve(s)
				}
			}
			// Commands run after the round's events, so that no event of
			// this round refers to a slot they free or reuse.
			if woke && l.commands() {
				return true
			}
		}
	})
	if err == nil {
		err = failed
	}
	if err != nil {
		l.r.log.Error("epoll wait failed, media loop stopped", "err", err)
		l.shutdown()
	}
}

// commands runs the posted commands and reports whether the loop must stop.
func (l *loop) commands() bool {
	var buf [8]byte
	unix.Read(l.evfd, buf[:])
	l.mu.Lock()
	cmds := l.cmds
	l.cmds = l.spare[:0]
	stopping := l.stopping
	l.mu.Unlock()
	for i, c := range cmds {
		switch c.op {
		case cmdAdd:
			l.add(c.s)
		case cmdRemove:
			if _, ok := l.streams[c.s]; ok {
				l.closeStream(c.s)
				l.r.finish(c.s)
			}
			close(c.done)
		}
		cmds[i] = cmd{}
	}
	l.spare = cmds[:0]
	if stopping {
		l.shutdown()
		return true
	}
	return false
}

func (l *loop) shutdown() {
	l.mu.Lock()
	l.dead = true
	late := l.cmds
	l.cmds = nil
	l.mu.Unlock()
	for s := range l.streams {
		l.closeStream(s)
	}
	// Commands posted after the last round: their streams' sockets are
	// closed above, or here if they were never added.
	for _, c := range late {
		if c.op == cmdAdd {
			if _, ok := l.streams[c.s]; !ok {
				l.add(c.s)
				l.closeStream(c.s)
			}
		}
		if c.done != nil {
			close(c.done)
		}
	}
}

func (l *loop) add(s *Stream) {
	l.streams[s] = struct{}{}
	for i := range s.legs {
		lg := &s.legs[i]
		for _, k := range lg.socks {
			var slot int32
			if n := len(l.freeSlots); n > 0 {
				slot = l.freeSlots[n-1]
				l.freeSlots = l.freeSlots[:n-1]
			} else {
				slot = int32(len(l.slots))
				l.slots = append(l.slots, nil)
			}
			ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: slot}
			if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, k.fd, &ev); err != nil {
				l.r.log.Error("epoll_ctl add failed, port not served", "err", err, "side", k.side, "rtcp", k.rtcp)
				l.freeSlots = append(l.freeSlots, slot)
				continue
			}
			k.slot = slot
			l.slots[slot] = k
		}
	}
}

func (l *loop) closeStream(s *Stream) {
	delete(l.streams, s)
	// Under the stream's lock: a DTLS handshake goroutine sends from these
	// sockets (writeTo) and must never see a descriptor number reused.
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.legs {
		lg := &s.legs[i]
		for _, k := range lg.socks {
			if k.slot >= 0 {
				unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, k.fd, nil)
				l.slots[k.slot] = nil
				l.freeSlots = append(l.freeSlots, k.slot)
				k.slot = -1
			}
			if k.fd >= 0 {
				unix.Close(k.fd)
				k.fd = -1
			}
		}
	}
}

// serve reads one batch from k and relays what is to be relayed.
//
// A media socket mostly holds one datagram when it is ready (50 packets a
// second), so the batch asked for adapts per socket: one datagram with
// recvfrom while that is all there is, growing towards batchSize with
// recvmmsg while the batches come back full (a burst, a flood), shrinking
// again when they do not. Epoll is level-triggered, so whatever is left is
// served in the next round.
func (l *loop) serve(k *sock) {
	var n int
	want := int(k.batch)
	if want <= 1 {
		l.rxHdrs[0].Hdr.Namelen = nameSize
		l.rxHdrs[0].Hdr.Flags = 0
		r, _, errno := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(k.fd),
			uintptr(unsafe.Pointer(&l.rxBufs[0])), rxBufSize, unix.MSG_DONTWAIT|unix.MSG_TRUNC,
			uintptr(unsafe.Pointer(&l.rxNames[0][0])), uintptr(unsafe.Pointer(&l.rxHdrs[0].Hdr.Namelen)))
		if errno != 0 {
			return
		}
		l.rxHdrs[0].Len = uint32(r) // the datagram's full length (MSG_TRUNC)
		n = 1
		want = 1
	} else {
		for i := 0; i < want; i++ {
			l.rxHdrs[i].Hdr.Namelen = nameSize
			l.rxHdrs[i].Hdr.Flags = 0
		}
		r, _, errno := unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(k.fd),
			uintptr(unsafe.Pointer(&l.rxHdrs[0])), uintptr(want), unix.MSG_DONTWAIT, 0, 0)
		if errno != 0 || r == 0 {
			k.batch = max(k.batch/2, 1)
			return
		}
		n = int(r)
	}
	switch {
	case n == want && want < batchSize:
		k.batch = uint8(min(2*want, batchSize))
	case n < want/2:
		k.batch = uint8(max(want/2, 1))
	}

	s := k.st
	now := l.r.clock()
	m := 0
	s.mu.Lock()
	for i := 0; i < n; i++ {
		h := &l.rxHdrs[i]
		if h.Hdr.Flags&unix.MSG_TRUNC != 0 || h.Len > rxBufSize {
			s.drop(k.side, dropOversize, 1)
			continue
		}
		// Capped at the slot: SRTP grows a packet in place by its tag.
		b := l.rxBufs[i*rxBufSize : i*rxBufSize+int(h.Len) : (i+1)*rxBufSize]
		from, _ := sockaddr.Parse(&l.rxNames[i])
		out, dst, b, ok := s.accept(k.side, k.rtcp, b, from, now)
		if !ok {
			continue
		}
		namelen, ok := sockaddr.Put(&l.txNames[m], dst, 0, l.e.v6)
		if !ok {
			s.unsent(k.side, 1, uint64(len(b)))
			continue
		}
		l.txHdrs[m].Hdr.Namelen = namelen
		l.txIovs[m].Base = &b[0]
		l.txIovs[m].SetLen(len(b))
		l.txOut[m] = out
		l.txLen[m] = len(b)
		m++
	}
	s.mu.Unlock()
	l.send(k, m)
}

// send writes the m prepared datagrams, one sendmmsg per run of datagrams
// leaving from the same socket.
func (l *loop) send(from *sock, m int) {
	for start := 0; start < m; {
		out := l.txOut[start]
		end := start + 1
		for end < m && l.txOut[end] == out {
			end++
		}
		for start < end {
			var sent uintptr
			var errno syscall.Errno
			if end-start == 1 {
				h := &l.txHdrs[start]
				_, _, errno = unix.RawSyscall6(unix.SYS_SENDTO, uintptr(out.fd),
					uintptr(unsafe.Pointer(l.txIovs[start].Base)), uintptr(l.txLen[start]), unix.MSG_DONTWAIT,
					uintptr(unsafe.Pointer(h.Hdr.Name)), uintptr(h.Hdr.Namelen))
				sent = 1
			} else {
				sent, _, errno = unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(out.fd),
					uintptr(unsafe.Pointer(&l.txHdrs[start])), uintptr(end-start), unix.MSG_DONTWAIT, 0, 0)
			}
			if errno != 0 || sent == 0 {
				// Socket buffer full or destination refused: the rest of
				// this run shares the socket and destination, drop it.
				var bytes uint64
				for i := start; i < end; i++ {
					bytes += uint64(l.txLen[i])
				}
				s := from.st
				s.mu.Lock()
				s.unsent(from.side, uint64(end-start), bytes)
				s.mu.Unlock()
				break
			}
			start += int(sent)
		}
		start = end
	}
	for i := 0; i < m; i++ {
		l.txOut[i] = nil
	}
}

// writeTo sends one datagram from k outside the packet path (DTLS
// handshake records). The caller holds k's stream's lock, under which the
// loop closes the socket.
func (e *engine) writeTo(k *sock, b []byte, dst netip.AddrPort) error {
	if k == nil || k.fd < 0 || len(b) == 0 {
		return net.ErrClosed
	}
	var name [nameSize]byte
	namelen, ok := sockaddr.Put(&name, dst, 0, e.v6)
	if !ok {
		return fmt.Errorf("media: cannot send to %v from this socket", dst)
	}
	_, _, errno := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(k.fd),
		uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), unix.MSG_DONTWAIT,
		uintptr(unsafe.Pointer(&name[0])), uintptr(namelen))
	if errno != 0 {
		return errno
	}
	return nil
}

// bindUDP opens a non-blocking UDP socket bound to ip:port.
func bindUDP(ip netip.Addr, port, bufSize int) (int, error) {
	ip = ip.Unmap()
	family := unix.AF_INET
	if ip.Is6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	if bufSize > 0 {
		// Best effort: the kernel caps these at net.core.[rw]mem_max.
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, bufSize)
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, bufSize)
	}
	var sa unix.Sockaddr
	if family == unix.AF_INET {
		sa = &unix.SockaddrInet4{Port: port, Addr: ip.As4()}
	} else {
		if ip.IsUnspecified() {
			unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0)
		}
		sa = &unix.SockaddrInet6{Port: port, Addr: ip.As16()}
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind %v: %w", netip.AddrPortFrom(ip, uint16(port)), err)
	}
	return fd, nil
}

package sip

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// flowListener wraps a stream listener (TCP, the TCP under TLS, or the
// WebSocket connections handed over by the HTTP server) for sipgo, whose
// accept loop gives up on the first error. Accept retries every error but a
// closed listener, with net/http's backoff; it admits connections through
// the server's connTracker (per-source and global caps, idle timeout); and
// the connections it returns report their Close, so that bindings made over
// them are dropped.
type flowListener struct {
	net.Listener
	transport string // upper case, as sipgo and the registrar name it
	conns     *connTracker
	log       *slog.Logger
	// wrap, when set, layers a protocol over each admitted connection
	// (TLS: see tlsListener); sipgo gets the wrapped connection.
	wrap func(net.Conn) net.Conn

	done      chan struct{}
	closeOnce sync.Once
}

func newFlowListener(l net.Listener, transport string, conns *connTracker, log *slog.Logger) *flowListener {
	return &flowListener{Listener: l, transport: transport, conns: conns, log: log, done: make(chan struct{})}
}

// Accept waits for a connection that the caps admit. It returns an error
// only when the listener is closed (net.ErrClosed): a failing accept (out
// of file descriptors, of buffers, a connection aborted before it was
// accepted) is retried after a pause of 5 ms doubling up to 1 s, as
// net/http's Server.Serve does, and logged once per run of failures.
func (l *flowListener) Accept() (net.Conn, error) {
	var delay time.Duration
	failures := 0
	var since time.Time
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || l.closed() {
				return nil, net.ErrClosed
			}
			if failures == 0 {
				since = time.Now()
				level := slog.LevelWarn
				if !temporaryAcceptError(err) {
					level = slog.LevelError
				}
				l.log.Log(context.Background(), level, "accept failing; retrying with backoff", "transport", l.transport,
					"error", err, "connections", l.conns.open())
			}
			failures++
			delay = acceptBackoff(delay)
			if !l.pause(delay) {
				return nil, net.ErrClosed
			}
			continue
		}
		if failures > 0 {
			l.log.Info("accept recovered", "transport", l.transport, "failures", failures,
				"after", time.Since(since).Round(time.Millisecond))
			failures, delay = 0, 0
		}
		if fc := l.conns.admit(c, l.transport, l.wrap); fc != nil {
			return fc.handOff(), nil
		}
	}
}

// acceptBackoff returns the pause after a failed accept that followed one
// of prev (zero for the first failure).
func acceptBackoff(prev time.Duration) time.Duration {
	const first, ceiling = 5 * time.Millisecond, time.Second
	if prev == 0 {
		return first
	}
	return min(2*prev, ceiling)
}

// pause waits d, or until the listener is closed; it reports whether d
// passed.
func (l *flowListener) pause(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-l.done:
		return false
	}
}

func (l *flowListener) closed() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// Close closes the listener, ending an Accept in progress or in backoff.
func (l *flowListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// flowConn is an accepted connection, known to the connTracker: it records
// when bytes last passed and whether a whole SIP request arrived, and it
// reports its own Close once.
type flowConn struct {
	net.Conn
	key      flowKey
	accepted time.Time
	// outer is the connection layered over this one (TLS) that sipgo
	// reads; nil when sipgo reads this one.
	outer net.Conn
	// active is when bytes were last read or written, in Unix nanoseconds.
	active atomic.Int64
	// messaged is set once a complete request from the flow was handled.
	messaged atomic.Bool

	once    sync.Once
	onClose func(*flowConn)
	closed  chan struct{} // closed by the first Close
}

func (c *flowConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.active.Store(time.Now().UnixNano())
	}
	return n, err
}

func (c *flowConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.active.Store(time.Now().UnixNano())
	}
	return n, err
}

// Close closes the connection the first time; later calls return nil. (The
// idle sweep closes connections under sipgo, whose reader then closes them
// again and would warn of the error.)
func (c *flowConn) Close() error {
	var err error
	c.once.Do(func() {
		err = c.Conn.Close()
		c.onClose(c)
		close(c.closed)
	})
	return err
}

// handOff returns the connection to give sipgo.
func (c *flowConn) handOff() net.Conn {
	if c.outer != nil {
		return c.outer
	}
	return c
}

// onceConn closes its connection the first time only; later calls return
// nil, as flowConn's do.
type onceConn struct {
	net.Conn
	once sync.Once
}

func (c *onceConn) Close() error {
	var err error
	c.once.Do(func() { err = c.Conn.Close() })
	return err
}

// addrPortOf returns the address of a, with an IPv4-mapped IPv6 address
// (what a dual-stack listener reports for IPv4 peers) unmapped, so that it
// equals the address parsed from a message's source.
func addrPortOf(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch v := a.(type) {
	case *net.TCPAddr:
		ap = v.AddrPort()
	case *net.UDPAddr:
		ap = v.AddrPort()
	case *textAddr:
		ap = v.AddrPort()
	default:
		ap, _ = netip.ParseAddrPort(a.String())
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// hijackListener is the net.Listener sipgo's WebSocket transport accepts
// from: the HTTP server hands it the connections of requests to /sip. The
// HTTP request already read is replayed in front of the connection so that
// sipgo's WebSocket upgrader sees it whole.
type hijackListener struct {
	addr   net.Addr
	conns  chan net.Conn
	done   chan struct{}
	closed sync.Once
}

func newHijackListener(addr net.Addr) *hijackListener {
	return &hijackListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *hijackListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *hijackListener) Close() error {
	l.closed.Do(func() { close(l.done) })
	return nil
}

func (l *hijackListener) Addr() net.Addr { return l.addr }

// replayConn reads the bytes of an already-parsed HTTP request, then the
// rest of the connection.
type replayConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *replayConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// CloseRead shuts the reading side of the hijacked connection (see
// closeFlows).
func (c *replayConn) CloseRead() error {
	if cr, ok := c.Conn.(interface{ CloseRead() error }); ok {
		return cr.CloseRead()
	}
	return errors.ErrUnsupported
}

// ServeHTTP hands a WebSocket upgrade request to the SIP transport.
func (l *hijackListener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Upgrade") == "" {
		http.Error(w, "SIP over WebSocket (RFC 7118): connect with a WebSocket client using subprotocol \"sip\"", http.StatusUpgradeRequired)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "websocket not supported here", http.StatusInternalServerError)
		return
	}
	var head bytes.Buffer
	if err := r.Write(&head); err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	conn, buf, err := hj.Hijack()
	if err != nil {
		return
	}
	// r.Write re-serialises the request; bytes the HTTP server buffered
	// past the request (a client that did not wait for 101) follow it.
	rest := make([]byte, buf.Reader.Buffered())
	_, _ = buf.Reader.Read(rest) // exactly what is buffered: cannot fail
	rc := &replayConn{Conn: conn, r: bufio.NewReader(ioMulti(head.Bytes(), rest, conn))}
	select {
	case l.conns <- rc:
	case <-l.done:
		conn.Close()
	}
}

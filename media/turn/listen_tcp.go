package turn

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Read deadlines of TCP and TLS connections. A connection must deliver its
// first 20 bytes (a STUN header, or a TLS ClientHello) within
// tcpFirstReadTimeout of being accepted, and then something at least every tcpIdleTimeout: a
// client using its allocation refreshes permissions every 5 minutes
// (RFC 8656 §9), so a longer silence means it is gone.
// They are variables only so that tests can shorten them.
var (
	tcpFirstReadTimeout = 10 * time.Second
	tcpIdleTimeout      = 10 * time.Minute
)

// tcpListener is a TCP listening socket as pion/turn sees it (directly, or
// under tls.NewListener). Accept refuses connections over the per-source
// rate and tracks the others so that Close can end them: pion/turn closes
// the listener but not the connections it accepted.
type tcpListener struct {
	net.Listener
	s        *Server
	doneOnce sync.Once
}

// Accept implements net.Listener for pion's accept loop.
func (l *tcpListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			l.doneOnce.Do(l.s.loops.Done)

			return nil, err
		}
		tc := &tcpConn{Conn: c, s: l.s, accepted: time.Now()}
		if a, ok := c.RemoteAddr().(*net.TCPAddr); ok && !l.s.limiter.allow(a.AddrPort().Addr().Unmap(), time.Now()) {
			l.s.metrics.droppedRateLimit.Inc()
			_ = c.Close()

			continue
		}
		if !l.s.trackConn(tc) {
			_ = c.Close()

			return nil, net.ErrClosed
		}

		return tc, nil
	}
}

// tcpConn is one accepted connection. Close is called by pion/turn when its
// read loop for the connection ends (and by tls.Conn.Close); it releases the
// server's hold on the connection.
type tcpConn struct {
	net.Conn
	s         *Server
	accepted  time.Time
	read      int // bytes read so far; only touched by the reading goroutine
	closeOnce sync.Once
}

// Read implements net.Conn, arming the idle deadline before each read.
func (c *tcpConn) Read(p []byte) (int, error) {
	deadline := time.Now().Add(tcpIdleTimeout)
	if c.read < 20 {
		deadline = c.accepted.Add(tcpFirstReadTimeout)
	}
	if err := c.Conn.SetReadDeadline(deadline); err != nil {
		return 0, err
	}
	n, err := c.Conn.Read(p)
	c.read += n

	return n, err
}

// Write implements net.Conn; pion/turn writes one whole message per call.
func (c *tcpConn) Write(b []byte) (int, error) {
	if isErrorResponse(b) {
		b = c.s.fixResponse(b, nil, netip.AddrPort{})
	}

	return c.Conn.Write(b) //nolint:wrapcheck // pion checks for net errors
}

// Close implements net.Conn.
func (c *tcpConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() { c.s.untrackConn(c) })

	return err
}

// tlsListener hands pion/turn TLS connections whose Write applies the same
// response fix as tcpConn (which, under TLS, only sees encrypted records).
type tlsListener struct {
	net.Listener
	s *Server
}

// Accept implements net.Listener.
func (l tlsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err //nolint:wrapcheck // pion checks for net errors
	}

	return fixingConn{Conn: c, s: l.s}, nil
}

// fixingConn applies the response fixes that need no request to outgoing
// messages.
type fixingConn struct {
	net.Conn
	s *Server
}

// Write implements net.Conn; pion/turn writes one whole message per call.
func (c fixingConn) Write(b []byte) (int, error) {
	if isErrorResponse(b) {
		b = c.s.fixResponse(b, nil, netip.AddrPort{})
	}

	return c.Conn.Write(b) //nolint:wrapcheck // pion checks for net errors
}

package turn

import (
	"bufio"
	"encoding/binary"
	"errors"
	"net"
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

// tcpListener is a TCP listening socket under streamListener (directly, or
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
		if a, ok := c.RemoteAddr().(*net.TCPAddr); ok && !l.s.limiter.allowConn(a.AddrPort().Addr().Unmap(), time.Now()) {
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

// Close implements net.Conn.
func (c *tcpConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() { c.s.untrackConn(c) })

	return err
}

// streamListener hands pion/turn its TCP or TLS connections as stunStreams.
type streamListener struct {
	net.Listener
	s *Server
}

// Accept implements net.Listener.
func (l streamListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err //nolint:wrapcheck // pion checks for net errors
	}

	return &stunStream{Conn: c, s: l.s, r: bufio.NewReaderSize(c, streamBufSize)}, nil
}

// streamBufSize is the read buffer of a stunStream; maxTrackedRequest bounds
// the request it keeps for Write (pion/turn drops a connection that sends a
// message over its 1600-byte MTU anyway).
const (
	streamBufSize     = 2048
	maxTrackedRequest = 2048
)

// stunStream is an accepted TCP or TLS connection as pion/turn reads it.
// Read hands out one STUN message or ChannelData frame at a time (framed by
// their length fields, RFC 8656 §12.5), and pion handles each before it
// reads the next, so when pion writes a response the last STUN message read
// is the request it answers: Write applies fixResponse with it, as the UDP
// listener does with its datagram.
type stunStream struct {
	net.Conn
	s *Server
	r *bufio.Reader

	// Only pion's read loop goroutine touches these: Read sets them, and
	// Write reads req only for a ChannelBind error response, which only the
	// read loop writes (relay goroutines write data).
	left int    // bytes of the current frame not yet handed out
	req  []byte // the current frame when it is a STUN message of at most maxTrackedRequest bytes
	keep bool   // whether the current frame is collected in req
}

// Read implements net.Conn: at most the rest of the current frame.
func (c *stunStream) Read(p []byte) (int, error) {
	if c.left == 0 {
		c.req, c.keep = c.req[:0], false
		h, err := c.r.Peek(4)
		if err != nil {
			// A short or broken stream: hand over what there is; pion
			// sees an incomplete or invalid frame and reads on or gives up.
			return c.r.Read(p) //nolint:wrapcheck // pion checks for net errors
		}
		size := int(binary.BigEndian.Uint16(h[2:4]))
		switch {
		case h[0] < 0x40: // STUN (RFC 8489 §5)
			size += 20
			c.keep = size <= maxTrackedRequest
		case h[0] < 0x80: // ChannelData, padded to 4 bytes over TCP (RFC 8656 §12.5)
			size = 4 + (size+3)&^3
		default: // neither: pion closes the connection on it
			return c.r.Read(p) //nolint:wrapcheck // pion checks for net errors
		}
		c.left = size
	}
	n, err := c.r.Read(p[:min(len(p), c.left)])
	c.left -= n
	if c.keep {
		c.req = append(c.req, p[:n]...)
	}

	return n, err //nolint:wrapcheck // pion checks for net errors
}

// Write implements net.Conn; pion/turn writes one whole message per call.
func (c *stunStream) Write(b []byte) (int, error) {
	if isChannelBindError(b) && c.left == 0 && c.keep {
		b = c.s.fixResponse(b, c.req)
	}

	return c.Conn.Write(b) //nolint:wrapcheck // pion checks for net errors
}

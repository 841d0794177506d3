package turn

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// stunMagicCookie is the fixed STUN header field of RFC 8489 §5.
const stunMagicCookie = 0x2112A442

// stunAllocateRequest is the message type of an Allocate request
// (method 0x003, class request; RFC 8656).
const stunAllocateRequest = 0x0003

// listenUDP binds n sockets on addr with SO_REUSEPORT (one when n is 1 or the
// platform lacks it), so that pion/turn runs one read loop per socket. With a
// port of 0 the first socket picks the port and the others join it.
func listenUDP(ctx context.Context, addr string, n, buf int) ([]*net.UDPConn, error) {
	lc := net.ListenConfig{Control: socketControl(n > 1 && reusePortSupported, buf)}
	var conns []*net.UDPConn
	closeAll := func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}
	if !reusePortSupported {
		n = 1
	}
	for i := 0; i < n; i++ {
		pc, err := lc.ListenPacket(ctx, "udp", addr)
		if err != nil {
			closeAll()

			return nil, fmt.Errorf("listen udp %s: %w", addr, err)
		}
		uc, ok := pc.(*net.UDPConn)
		if !ok {
			_ = pc.Close()
			closeAll()

			return nil, fmt.Errorf("listen udp %s: unexpected %T", addr, pc)
		}
		conns = append(conns, uc)
		if i == 0 {
			// Join the port the first socket got.
			host, _, _ := net.SplitHostPort(addr)
			addr = net.JoinHostPort(host, strconv.Itoa(uc.LocalAddr().(*net.UDPAddr).Port))
		}
	}

	return conns, nil
}

// udpListener is one UDP listening socket as pion/turn sees it. ReadFrom
// drops what pion should never spend time on (anything that is neither STUN
// nor ChannelData, RFC 8656 §12.4 / RFC 7983) and Allocate requests over the
// per-source rates (see allocateLimiter), and reports when its read loop ends.
type udpListener struct {
	*net.UDPConn
	s        *Server
	doneOnce sync.Once
	// req is the datagram pion/turn is handling, for WriteTo to see which
	// request a response answers. Only the read loop goroutine touches it:
	// it sets it in ReadFrom and reads it when writing a ChannelBind error
	// response, which only the read loop writes (relay goroutines write
	// data).
	req []byte
}

// ReadFrom implements net.PacketConn for pion's read loop.
func (c *udpListener) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.UDPConn.ReadFromUDP(p)
		if err != nil {
			c.doneOnce.Do(c.s.loops.Done)

			return n, nil, err
		}
		if c.s.admitDatagram(p[:n], addr.AddrPort().Addr()) {
			c.req = p[:n]

			return n, addr, nil
		}
	}
}

// WriteTo implements net.PacketConn for pion's responses and relayed data.
func (c *udpListener) WriteTo(b []byte, addr net.Addr) (int, error) {
	if isChannelBindError(b) {
		b = c.s.fixResponse(b, c.req)
	}

	return c.UDPConn.WriteTo(b, addr) //nolint:wrapcheck // pion checks for net errors
}

// admitDatagram reports whether a datagram from src should reach pion/turn.
func (s *Server) admitDatagram(b []byte, src netip.Addr) bool {
	if len(b) < 4 {
		s.metrics.droppedMalformed.Inc()

		return false
	}
	switch {
	case b[0] < 0x40: // STUN: the two most significant bits are zero (RFC 8489 §5)
		if len(b) < 20 || binary.BigEndian.Uint32(b[4:8]) != stunMagicCookie ||
			int(binary.BigEndian.Uint16(b[2:4]))+20 != len(b) {
			s.metrics.droppedMalformed.Inc()

			return false
		}
		if binary.BigEndian.Uint16(b[0:2]) == stunAllocateRequest && !s.limiter.allowAllocate(b, src.Unmap(), time.Now()) {
			s.metrics.droppedRateLimit.Inc()

			return false
		}

		return true
	case b[0] < 0x80: // ChannelData, channel numbers 0x4000-0x7FFF (RFC 8656 §12.4)
		return true
	default:
		s.metrics.droppedMalformed.Inc()

		return false
	}
}

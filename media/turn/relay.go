package turn

import (
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/pion/turn/v4"
)

var errRelayPort = errors.New("turn: requested relay port outside the configured range")

// relayGenerator allocates relay sockets for pion/turn: a port in
// [RelayPortMin, RelayPortMax] on BindIP, advertised as PublicIP
// (pion's RelayAddressGeneratorPortRange), wrapped so that the server counts
// relayed traffic and can close every relay socket in Close.
type relayGenerator struct {
	inner *turn.RelayAddressGeneratorPortRange
	s     *Server
}

// Validate implements turn.RelayAddressGenerator.
func (g *relayGenerator) Validate() error {
	if err := g.inner.Validate(); err != nil {
		return fmt.Errorf("relay address generator: %w", err)
	}

	return nil
}

// AllocatePacketConn implements turn.RelayAddressGenerator.
func (g *relayGenerator) AllocatePacketConn(network string, requestedPort int) (net.PacketConn, net.Addr, error) {
	if requestedPort != 0 && (requestedPort < int(g.inner.MinPort) || requestedPort > int(g.inner.MaxPort)) {
		return nil, nil, fmt.Errorf("%w: %d", errRelayPort, requestedPort)
	}
	conn, addr, err := g.inner.AllocatePacketConn(network, requestedPort)
	if err != nil {
		return nil, nil, fmt.Errorf("allocate relay socket: %w", err)
	}
	if buf := g.s.cfg.SocketBuffer / 4; buf > 0 {
		// A relay socket queues a peer's datagrams while the server is busy;
		// the kernel default (~200 KiB) overflows under load.
		if uc, ok := conn.(*net.UDPConn); ok {
			_ = uc.SetReadBuffer(buf)
			_ = uc.SetWriteBuffer(buf)
		}
	}
	rc := &relayConn{PacketConn: conn, s: g.s}
	if !g.s.trackRelay(rc) {
		_ = conn.Close()

		return nil, nil, net.ErrClosed
	}

	return rc, addr, nil
}

// AllocateConn implements turn.RelayAddressGenerator. TCP relaying
// (RFC 6062) is not offered.
func (g *relayGenerator) AllocateConn(network string, requestedPort int) (net.Conn, net.Addr, error) {
	return g.inner.AllocateConn(network, requestedPort) //nolint:wrapcheck // pion's "not implemented"
}

// relayConn is one relay socket. It counts what it relays.
type relayConn struct {
	net.PacketConn
	s         *Server
	closeOnce sync.Once
}

// ReadFrom implements net.PacketConn: a datagram from a peer.
func (c *relayConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, addr, err := c.PacketConn.ReadFrom(p)
	if err == nil {
		c.s.metrics.packetsFromPeer.Inc()
		c.s.metrics.bytesFromPeer.Add(float64(n))
	}

	return n, addr, err //nolint:wrapcheck // pion checks for net errors
}

// WriteTo implements net.PacketConn: a datagram to a peer.
func (c *relayConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	n, err := c.PacketConn.WriteTo(p, addr)
	if err == nil {
		c.s.metrics.packetsToPeer.Inc()
		c.s.metrics.bytesToPeer.Add(float64(n))
	}

	return n, err //nolint:wrapcheck // pion checks for net errors
}

// Close implements net.PacketConn.
func (c *relayConn) Close() error {
	err := c.PacketConn.Close()
	c.closeOnce.Do(func() { c.s.untrackRelay(c) })

	return err //nolint:wrapcheck // pion checks for net errors
}

package turn

import (
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/pion/turn/v5"
)

var (
	errRelayPort   = errors.New("turn: requested relay port outside the configured range")
	errRelayFamily = errors.New("turn: no relay addresses of that family are offered")
	errTCPRelay    = errors.New("turn: TCP relaying (RFC 6062) is not offered")
)

// relayGenerator allocates relay sockets for pion/turn: a port in
// [RelayPortMin, RelayPortMax] on BindIP, advertised as PublicIP — or, for
// an IPv6 allocation, on BindIP6 advertised as PublicIP6 (pion's
// RelayAddressGeneratorPortRange, one per family) — wrapped so that the
// server counts relayed traffic and can close every relay socket in Close.
type relayGenerator struct {
	inner  *turn.RelayAddressGeneratorPortRange
	inner6 *turn.RelayAddressGeneratorPortRange // nil: no IPv6 relays
	s      *Server
}

// Validate implements turn.RelayAddressGenerator.
func (g *relayGenerator) Validate() error {
	if err := g.inner.Validate(); err != nil {
		return fmt.Errorf("relay address generator: %w", err)
	}
	if g.inner6 != nil {
		if err := g.inner6.Validate(); err != nil {
			return fmt.Errorf("IPv6 relay address generator: %w", err)
		}
	}

	return nil
}

// AllocatePacketConn implements turn.RelayAddressGenerator. conf.Network is
// "udp4", or "udp6" when the client asked for an IPv6 relay with
// REQUESTED-ADDRESS-FAMILY (RFC 6156 §4.2): that is served when PublicIP6
// is configured, and refused otherwise (pion answers 508).
func (g *relayGenerator) AllocatePacketConn(conf turn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	if conf.RequestedPort != 0 && (conf.RequestedPort < int(g.inner.MinPort) || conf.RequestedPort > int(g.inner.MaxPort)) {
		return nil, nil, fmt.Errorf("%w: %d", errRelayPort, conf.RequestedPort)
	}
	inner := g.inner
	switch {
	case conf.Network == "udp6" && g.inner6 != nil:
		inner = g.inner6
	case conf.Network != "udp4":
		return nil, nil, fmt.Errorf("%w: %s", errRelayFamily, conf.Network)
	}
	conn, addr, err := inner.AllocatePacketConn(conf)
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

// AllocateListener implements turn.RelayAddressGenerator. TCP allocations
// (RFC 6062) are not offered: pion answers such an Allocate with 508.
func (g *relayGenerator) AllocateListener(turn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	return nil, nil, errTCPRelay
}

// AllocateConn implements turn.RelayAddressGenerator. It refuses: with no
// TCP allocations, no Connect request (RFC 6062 §5.2) may dial a peer.
func (g *relayGenerator) AllocateConn(turn.AllocateConnConfig) (net.Conn, error) {
	return nil, errTCPRelay
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

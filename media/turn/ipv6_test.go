package turn

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/turn/v5"
)

// newUDP6Client returns a pion/turn client on a fresh [::1] UDP socket that
// asks for relays of family fam (0: names none).
func newUDP6Client(t *testing.T, server net.Addr, fam turn.RequestedAddressFamily) *turn.Client {
	t.Helper()
	conn, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: server.String(), TURNServerAddr: server.String(), Conn: conn,
		Username: "alice", Password: "alicepw", Realm: testRealm, RTO: 100 * time.Millisecond,
		LoggerFactory: quietLogs, RequestedAddressFamily: fam,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		_ = conn.Close()
	})
	return c
}

// TestIPv6Relay (RFC 6156): with PublicIP6 configured, a client on ::1
// that asks for an IPv6 relay gets one at PublicIP6 in the relay port range,
// and data goes through it to an IPv6 peer and back; one that names no
// family gets IPv4 (§4.2).
func TestIPv6Relay(t *testing.T) {
	const lo, hi = 61100, 61199
	s := startServer(t, func(c *Config) {
		c.Listen = []string{"udp://[::1]:0"}
		c.PublicIP6 = netip.IPv6Loopback()
		c.BindIP6 = netip.IPv6Loopback()
		c.RelayPortMin, c.RelayPortMax = lo, hi
		c.AllowPeers = []netip.Prefix{netip.MustParsePrefix("::1/128")}
	})
	c := newUDP6Client(t, s.addr(t, TransportUDP), turn.RequestedAddressFamilyIPv6)
	relay, err := c.Allocate()
	if err != nil {
		t.Fatalf("IPv6 Allocate: %v", err)
	}
	defer relay.Close()
	ra := relay.LocalAddr().(*net.UDPAddr).AddrPort()
	if ra.Addr() != netip.IPv6Loopback() || ra.Port() < lo || ra.Port() > hi {
		t.Fatalf("relayed address %v, want [::1] with a port in %d-%d", ra, lo, hi)
	}

	peer, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	if _, err := relay.WriteTo([]byte("to peer"), peer.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := peer.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "to peer" {
		t.Fatalf("peer read %q, %v", buf[:n], err)
	}
	if got := from.(*net.UDPAddr).AddrPort(); got != ra {
		t.Errorf("peer got the data from %v, want the relayed address %v", got, ra)
	}
	if _, err := peer.WriteTo([]byte("to client"), from); err != nil {
		t.Fatal(err)
	}
	relay.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err = relay.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "to client" {
		t.Fatalf("client read %q, %v", buf[:n], err)
	}

	// No REQUESTED-ADDRESS-FAMILY: IPv4, although the client came over IPv6.
	// (pion's client infers the family from its socket unless told; a
	// zero-family client on an IPv6 socket would ask for IPv6, so ask for
	// IPv4 explicitly to see that both families are served side by side.)
	v4, err := newUDP6Client(t, s.addr(t, TransportUDP), turn.RequestedAddressFamilyIPv4).Allocate()
	if err != nil {
		t.Fatalf("IPv4 Allocate over IPv6: %v", err)
	}
	defer v4.Close()
	if a := v4.LocalAddr().(*net.UDPAddr).AddrPort().Addr(); !a.Is4() {
		t.Errorf("IPv4 allocation relayed at %v", a)
	}
}

// TestIPv6RelayNotConfigured: without PublicIP6 an IPv6 allocation is
// refused, and IPv4 ones still work.
func TestIPv6RelayNotConfigured(t *testing.T) {
	s := startServer(t, func(c *Config) { c.Listen = []string{"udp://[::1]:0"} })
	if _, err := newUDP6Client(t, s.addr(t, TransportUDP), turn.RequestedAddressFamilyIPv6).Allocate(); err == nil {
		t.Fatal("IPv6 Allocate succeeded without PublicIP6")
	}
	relay, err := newUDP6Client(t, s.addr(t, TransportUDP), turn.RequestedAddressFamilyIPv4).Allocate()
	if err != nil {
		t.Fatalf("IPv4 Allocate: %v", err)
	}
	relay.Close()
}

//go:build linux

package sip

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestRawUDP: a listener's raw reads and writes carry datagrams both ways
// on an IPv4 socket, an IPv6 one and a dual-stack one (IPv4 peers written
// v4-mapped, read unmapped), refuse what the socket's family cannot reach,
// and a read ends with net.ErrClosed when the listener closes.
func TestRawUDP(t *testing.T) {
	for _, tc := range []struct{ listen, peer string }{
		{"127.0.0.1:0", "127.0.0.1:0"},
		{"[::1]:0", "[::1]:0"},
		{"[::]:0", "127.0.0.1:0"},
	} {
		t.Run(tc.listen+" "+tc.peer, func(t *testing.T) {
			c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(tc.listen)))
			if err != nil {
				t.Skipf("no %s here: %v", tc.listen, err) // an IPv6-less machine
			}
			l := newUDPListener(c)
			defer l.Close()
			if l.raw == nil {
				t.Fatal("no raw reads and writes")
			}
			peer, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(tc.peer)))
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			port := l.LocalAddr().(*textAddr).ap.Port()
			to := netip.AddrPortFrom(peer.LocalAddr().(*net.UDPAddr).AddrPort().Addr(), port)
			if _, err := peer.WriteToUDPAddrPort([]byte("hello"), to); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 100)
			n, from, err := l.ReadFrom(buf)
			if err != nil || string(buf[:n]) != "hello" {
				t.Fatalf("read %q, %v", buf[:n], err)
			}
			want := peer.LocalAddr().(*net.UDPAddr).AddrPort()
			if got := from.(*textAddr).ap; got != want || from.String() != want.String() {
				t.Fatalf("from %v (%s), want %v", got, from, want)
			}
			if n, err := l.WriteTo([]byte("back"), from); err != nil || n != 4 {
				t.Fatalf("wrote %d, %v", n, err)
			}
			_ = peer.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, src, err := peer.ReadFromUDPAddrPort(buf)
			if err != nil || string(buf[:n]) != "back" || src.Port() != port {
				t.Fatalf("peer read %q from %v, %v", buf[:n], src, err)
			}
			if tc.listen == "127.0.0.1:0" {
				if _, err := l.WriteTo([]byte("x"), &net.UDPAddr{IP: net.IPv6loopback, Port: 9}); err == nil {
					t.Fatal("an IPv4 socket wrote to an IPv6 address")
				}
			}
			done := make(chan error, 1)
			go func() {
				_, _, err := l.ReadFrom(buf)
				done <- err
			}()
			time.Sleep(20 * time.Millisecond)
			l.Close()
			select {
			case err := <-done:
				if !errors.Is(err, net.ErrClosed) {
					t.Fatalf("read after close: %v", err)
				}
			case <-time.After(2 * time.Second):
				t.Fatal("read not ended by Close")
			}
		})
	}
}

//go:build linux

package testbed

import "net"

// ListenPacketIn opens a UDP socket on addr inside namespace ns, for a
// stand-in (a carrier, a phone) that runs in the test process but must
// send and receive in that namespace: like DialIn, the socket is made by a
// thread that entered ns and keeps that namespace after the thread went
// back. With ns "" it listens in the test's own namespace.
func ListenPacketIn(ns, addr string) (net.PacketConn, error) {
	if ns == "" {
		return net.ListenPacket("udp", addr)
	}
	return inNetns(ns, func() (net.PacketConn, error) { return net.ListenPacket("udp", addr) })
}

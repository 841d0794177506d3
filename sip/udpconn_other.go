//go:build !linux

package sip

import (
	"net"
	"net/netip"
)

// rawUDP is Linux's (udpconn_linux.go); elsewhere a listener reads and
// writes as net does.
type rawUDP struct{}

func newRawUDP(*net.UDPConn) *rawUDP { return nil }

func (*rawUDP) read([]byte) (int, netip.AddrPort, error)  { panic("unreachable") }
func (*rawUDP) write([]byte, netip.AddrPort) (int, error) { panic("unreachable") }

//go:build !linux

package turn

import (
	"net"
	"syscall"
)

// reusePortSupported is false off Linux: one socket per UDP address.
const reusePortSupported = false

// socketControl leaves sockets as the platform makes them off Linux.
func socketControl(bool, int) func(network, address string, c syscall.RawConn) error {
	return nil
}

// steerBySource has nothing to do off Linux, where there is one socket.
func steerBySource([]*net.UDPConn) error { return nil }

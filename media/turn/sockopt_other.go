//go:build !linux

package turn

import "syscall"

// reusePortSupported is false off Linux: one socket per UDP address.
const reusePortSupported = false

// socketControl leaves sockets as the platform makes them off Linux.
func socketControl(bool, int) func(network, address string, c syscall.RawConn) error {
	return nil
}

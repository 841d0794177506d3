//go:build linux

package turn

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// reusePortSupported reports whether several UDP sockets can share a port
// with SO_REUSEPORT, the kernel spreading datagrams over them by 5-tuple.
const reusePortSupported = true

// socketControl returns a net.ListenConfig.Control function that sets
// SO_REUSEPORT when reusePort is true and asks for buf bytes of receive and
// send buffer (0 leaves the kernel default). SO_RCVBUFFORCE/SO_SNDBUFFORCE
// are tried first so that a privileged process is not capped by
// net.core.rmem_max/wmem_max; otherwise the kernel caps the request.
func socketControl(reusePort bool, buf int) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var opErr error
		err := c.Control(func(fd uintptr) {
			if reusePort {
				if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
					opErr = err

					return
				}
			}
			if buf > 0 {
				if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, buf) != nil {
					_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, buf)
				}
				if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, buf) != nil {
					_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, buf)
				}
			}
		})
		if err != nil {
			return err
		}

		return opErr
	}
}

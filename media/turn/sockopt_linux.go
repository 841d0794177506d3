//go:build linux

package turn

import (
	"fmt"
	"net"
	"syscall"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// reusePortSupported reports whether several UDP sockets can share a port
// with SO_REUSEPORT, the kernel spreading datagrams over them (by source
// address, see steerBySource).
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

// skfNetOff is SKF_NET_OFF of linux/filter.h: classic BPF loads at this
// offset read the network (IP) header instead of the payload.
const skfNetOff = 0xfff00000 // -0x100000 as the uint32 of a BPF k field

// steerBySource attaches to the SO_REUSEPORT group of conns a classic BPF
// program (SO_ATTACH_REUSEPORT_CBPF) that picks the socket from a hash of
// the datagram's source IP address alone, instead of the kernel's hash of
// the 4-tuple. Every socket of a client address then reaches the same
// socket, and so the same pion/turn read loop and allocation manager: pion
// keeps EVEN-PORT reservations per manager, and a client reserving an RTP
// port on one socket claims the RTCP port with RESERVATION-TOKEN from
// another (RFC 8656 §7.2). conns must be the whole group, in the order they
// were bound (the socket index the program returns).
func steerBySource(conns []*net.UDPConn) error {
	n := len(conns)
	if n < 2 {
		return nil
	}
	prog, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: skfNetOff, Size: 1},          // A = first byte of the IP header
		bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 4}, // A = IP version
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 6, SkipTrue: 2},
		bpf.LoadAbsolute{Off: skfNetOff + 12, Size: 4}, // IPv4 source address
		bpf.Jump{Skip: 1},
		bpf.LoadAbsolute{Off: skfNetOff + 20, Size: 4}, // low 32 bits of the IPv6 source address
		bpf.TAX{},
		bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 16},
		bpf.ALUOpX{Op: bpf.ALUOpXor}, // A ^= A>>16
		bpf.TAX{},
		bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 8},
		bpf.ALUOpX{Op: bpf.ALUOpXor}, // A ^= A>>8
		bpf.ALUOpConstant{Op: bpf.ALUOpMod, Val: uint32(n)},
		bpf.RetA{},
	})
	if err != nil {
		return fmt.Errorf("assemble reuseport program: %w", err)
	}
	filter := make([]unix.SockFilter, len(prog))
	for i, ins := range prog {
		filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	rc, err := conns[0].SyscallConn()
	if err != nil {
		return fmt.Errorf("reuseport program: %w", err)
	}
	var opErr error
	if err := rc.Control(func(fd uintptr) {
		opErr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF,
			&unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]})
	}); err != nil {
		return fmt.Errorf("reuseport program: %w", err)
	}
	if opErr != nil {
		return fmt.Errorf("attach reuseport program: %w", opErr)
	}

	return nil
}

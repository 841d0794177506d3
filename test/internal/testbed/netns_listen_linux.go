//go:build linux

package testbed

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// ListenPacketIn opens a UDP socket on addr inside namespace ns, for a
// stand-in (a carrier, a phone) that runs in the test process but must
// send and receive in that namespace: like DialIn, the socket is made by a
// thread that entered ns and keeps that namespace after the thread went
// back. With ns "" it listens in the test's own namespace.
func ListenPacketIn(ns, addr string) (net.PacketConn, error) {
	if ns == "" {
		return net.ListenPacket("udp", addr)
	}
	type result struct {
		c   net.PacketConn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := listenInThread(ns, addr)
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

func listenInThread(ns, addr string) (net.PacketConn, error) {
	runtime.LockOSThread()
	self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer self.Close()
	target, err := os.Open(filepath.Join("/run/netns", ns))
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("setns %s: %w", ns, err)
	}
	c, err := net.ListenPacket("udp", addr)
	if unix.Setns(int(self.Fd()), unix.CLONE_NEWNET) == nil {
		runtime.UnlockOSThread()
	}
	return c, err
}

//go:build linux

package browser

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/switchboard/switchboard/test/interop"
)

var nsSeq atomic.Int32

// newNetns creates a network namespace with only lo (up) and removes it when
// the test ends, after stopping by PID whatever still runs in it.
func newNetns(t testing.TB) string {
	t.Helper()
	ns := fmt.Sprintf("sbweb%d-%d", os.Getpid(), nsSeq.Add(1))
	if out, err := command(10*time.Second, "ip", "netns", "add", ns); err != nil {
		t.Fatalf("ip netns add %s: %v\n%s", ns, err, out)
	}
	t.Cleanup(func() { deleteNetns(t, ns) })
	if out, err := command(10*time.Second, "ip", "-n", ns, "link", "set", "lo", "up"); err != nil {
		t.Fatalf("ip -n %s link set lo up: %v\n%s", ns, err, out)
	}
	return ns
}

func deleteNetns(t testing.TB, ns string) {
	pids := netnsPIDs(ns)
	for _, pid := range pids {
		t.Logf("netns %s: process %d still running at teardown; stopping it", ns, pid)
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	if len(pids) > 0 && !interop.Poll(5*time.Second, 20*time.Millisecond, func() bool { return len(netnsPIDs(ns)) == 0 }) {
		for _, pid := range netnsPIDs(ns) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		interop.Poll(3*time.Second, 20*time.Millisecond, func() bool { return len(netnsPIDs(ns)) == 0 })
	}
	if out, err := command(10*time.Second, "ip", "netns", "del", ns); err != nil {
		t.Errorf("ip netns del %s: %v\n%s", ns, err, out)
	}
}

// netnsPIDs returns the processes whose network namespace is ns.
func netnsPIDs(ns string) []int {
	out, err := command(5*time.Second, "ip", "netns", "pids", ns)
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(out) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// command runs a program with a deadline and returns its combined output.
func command(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// inNetns returns a command that runs name inside ns (`ip netns exec`
// execs it, so the PID is the program's own).
func inNetns(ns, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// dialIn opens a TCP connection from inside ns: the socket is made by a
// thread that entered ns and keeps that namespace after the thread went
// back. It runs on a goroutine of its own, locked to its thread; the thread
// is handed back to the runtime only once it is back in its namespace.
func dialIn(ns, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, err}
			return
		}
		defer self.Close()
		target, err := os.Open(filepath.Join("/run/netns", ns))
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, err}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, fmt.Errorf("setns %s: %w", ns, err)}
			return
		}
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if unix.Setns(int(self.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

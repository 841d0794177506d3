//go:build linux

package testbed

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// RequireNetns skips the test (fails it when CI=true) unless it can build
// network namespaces: it runs as root and ip (iproute2) is installed.
func RequireNetns(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		if InCI() {
			t.Fatal("network namespace tests need root (CI=true)")
		}
		t.Skip("network namespace tests need root")
	}
	RequireTool(t, "ip")
}

var (
	netnsSeq   atomic.Int32
	staleOnce  sync.Once
	staleNetns = regexp.MustCompile(`^sbn(\d+)-\d+-`)
)

// NewNetns creates a network namespace with only lo (up), named
// sbn<PID>-<N>-<name> so that it is unique and a later test process can
// tell it is stale. When the test ends, failed or not, whatever still runs
// in it is stopped by PID (from `ip netns pids`: a process started with `ip
// netns exec` survives `ip netns del`) and the namespace is deleted. The
// first call of a test process deletes the namespaces an earlier, killed
// one left behind.
func NewNetns(t testing.TB, name string) string {
	t.Helper()
	staleOnce.Do(func() { removeStaleNetns(t) })
	ns := fmt.Sprintf("sbn%d-%d-%s", os.Getpid(), netnsSeq.Add(1), name)
	IP(t, "netns", "add", ns)
	t.Cleanup(func() { deleteNetns(t, ns) })
	IP(t, "-n", ns, "link", "set", "lo", "up")
	return ns
}

// IP runs `ip ARGS...` or fails the test.
func IP(t testing.TB, args ...string) {
	t.Helper()
	if out, err := Command(10*time.Second, "ip", args...); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// RunIn runs a command inside namespace ns, waiting at most 10 s, or fails
// the test.
func RunIn(t testing.TB, ns string, args ...string) {
	t.Helper()
	if out, err := Command(10*time.Second, "ip", append([]string{"netns", "exec", ns}, args...)...); err != nil {
		t.Fatalf("in %s: %s: %v\n%s", ns, strings.Join(args, " "), err, out)
	}
}

// Command runs a program with a deadline and returns its combined output.
func Command(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// InNetns returns a command that runs name inside ns; with ns "" it is
// name itself. `ip netns exec` execs the program, so the PID is the
// program's own.
func InNetns(ns, name string, args ...string) *exec.Cmd {
	if ns == "" {
		return exec.Command(name, args...)
	}
	return exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// deleteNetns stops by PID what still runs in ns (SIGTERM, then SIGKILL)
// and deletes it.
func deleteNetns(t testing.TB, ns string) {
	pids := NetnsPIDs(ns)
	for _, pid := range pids {
		t.Logf("netns %s: process %d still running at teardown; stopping it", ns, pid)
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	if len(pids) > 0 && !Poll(5*time.Second, 20*time.Millisecond, func() bool { return len(NetnsPIDs(ns)) == 0 }) {
		for _, pid := range NetnsPIDs(ns) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		Poll(3*time.Second, 20*time.Millisecond, func() bool { return len(NetnsPIDs(ns)) == 0 })
	}
	if out, err := Command(10*time.Second, "ip", "netns", "del", ns); err != nil {
		t.Errorf("ip netns del %s: %v\n%s", ns, err, out)
	}
}

// removeStaleNetns deletes namespaces that an earlier test process (one
// killed before its cleanup ran, e.g. by -timeout) left behind, if nothing
// runs in them any more.
func removeStaleNetns(t testing.TB) {
	out, err := Command(10*time.Second, "ip", "netns", "list")
	if err != nil {
		return
	}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		m := staleNetns.FindStringSubmatch(f[0])
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		if pid == os.Getpid() || syscall.Kill(pid, 0) == nil || len(NetnsPIDs(f[0])) > 0 {
			continue // its test process is alive, or something still runs in it
		}
		if out, err := Command(10*time.Second, "ip", "netns", "del", f[0]); err != nil {
			t.Logf("removing stale netns %s: %v\n%s", f[0], err, out)
		}
	}
}

// NetnsPIDs returns the processes whose network namespace is ns.
func NetnsPIDs(ns string) []int {
	out, err := Command(5*time.Second, "ip", "netns", "pids", ns)
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

// Dialer returns a function that opens TCP connections from inside ns
// (DialIn); with ns "" it dials from the test's own namespace.
func Dialer(ns string) func(addr string) (net.Conn, error) {
	if ns == "" {
		return func(addr string) (net.Conn, error) { return net.DialTimeout("tcp", addr, 2*time.Second) }
	}
	return func(addr string) (net.Conn, error) { return DialIn(ns, addr) }
}

// DialIn opens a TCP connection from inside ns, waiting at most 2 s: the
// socket is made by a thread that entered ns, and keeps that namespace after
// the thread went back. It runs on a goroutine of its own, locked to its
// thread; the thread is handed back to the runtime only once it is back in
// its own namespace, otherwise it ends with the goroutine.
func DialIn(ns, addr string) (net.Conn, error) { return dialIn(ns, "tcp", addr) }

// DialUDPIn opens a UDP socket inside ns connected to addr, as DialIn does
// for TCP: what it sends leaves from ns (through its NAT router, if any).
func DialUDPIn(ns, addr string) (net.Conn, error) { return dialIn(ns, "udp", addr) }

func dialIn(ns, network, addr string) (net.Conn, error) {
	return inNetns(ns, func() (net.Conn, error) { return net.DialTimeout(network, addr, 2*time.Second) })
}

// inNetns runs open (which makes a socket) on a goroutine of its own,
// locked to a thread that entered ns: the socket keeps that namespace after
// the thread went back. The thread is handed back to the runtime only once
// it is back in its own namespace, otherwise it ends with the goroutine.
func inNetns[T any](ns string, open func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := inNetnsThread(ns, open)
		ch <- result{v, err}
	}()
	r := <-ch
	return r.v, r.err
}

func inNetnsThread[T any](ns string, open func() (T, error)) (T, error) {
	var zero T
	runtime.LockOSThread()
	self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return zero, err
	}
	defer self.Close()
	target, err := os.Open(filepath.Join("/run/netns", ns))
	if err != nil {
		runtime.UnlockOSThread()
		return zero, err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return zero, fmt.Errorf("setns %s: %w", ns, err)
	}
	v, err := open()
	if unix.Setns(int(self.Fd()), unix.CLONE_NEWNET) == nil {
		runtime.UnlockOSThread()
	}
	return v, err
}

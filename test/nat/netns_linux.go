//go:build linux

package nat

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
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/switchboard/switchboard/test/interop"
)

// requireNetns skips the test (fails it when CI=true) unless it can build
// network namespaces: root, ip and iptables.
func requireNetns(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		if interop.InCI() {
			t.Fatal("network namespace tests need root (CI=true)")
		}
		t.Skip("network namespace tests need root")
	}
	interop.RequireTool(t, "ip")
	interop.RequireTool(t, "iptables")
}

// natOptions shapes the network of a NAT test.
type natOptions struct {
	// SharedRouter puts both hosts behind one router (one public address
	// for both); otherwise each host has its own router and address.
	SharedRouter bool
	// Symmetric makes the routers' NAT symmetric (MASQUERADE
	// --random-fully: a random public port for every new flow).
	Symmetric bool
}

// natHost is a private host behind a NAT router.
type natHost struct {
	Netns  string
	IP     string // private address, e.g. 10.11.1.2
	Router string // router's namespace
	WANIP  string // router's public address: what the switch sees
}

// natNet is a set of network namespaces: a "public" one holding the switch,
// routers that masquerade their private networks behind a public address
// and let in only what answers flows from inside, and a private host
// behind each. None of them has a link to the test's own namespace, and the
// public namespace has no route to the private networks.
type natNet struct {
	Public   string // namespace of the switch
	PublicIP string
	Hosts    []natHost // A (10.11.1.0/24) and B (10.11.2.0/24)
	Routers  []string

	namespaces []string // every namespace created, in creation order
}

var netSeq atomic.Int32

// Addresses: documentation prefixes and private ranges, which only ever
// exist inside these namespaces.
const (
	switchIP   = "203.0.113.1"
	publicMask = "/24"
)

// newNATNet builds the namespaces. Everything is torn down when the test
// ends, failed or not: the processes left in each namespace are stopped by
// PID (from `ip netns pids`), then the namespaces are deleted.
func newNATNet(t testing.TB, o natOptions) *natNet {
	t.Helper()
	requireNetns(t)
	removeStale(t)
	// Short, unique names: this process's PID and a sequence number.
	prefix := fmt.Sprintf("sbn%d-%d", os.Getpid(), netSeq.Add(1))
	n := &natNet{Public: prefix + "-pub", PublicIP: switchIP}
	t.Cleanup(func() { n.teardown(t) })

	n.add(t, n.Public)
	n.ip(t, "-n", n.Public, "link", "add", "br0", "type", "bridge")
	n.ip(t, "-n", n.Public, "addr", "add", switchIP+publicMask, "dev", "br0")
	n.ip(t, "-n", n.Public, "link", "set", "br0", "up")

	routers := []string{prefix + "-ra", prefix + "-rb"}
	if o.SharedRouter {
		routers = routers[:1]
	}
	for i, r := range routers {
		wan := fmt.Sprintf("203.0.113.%d", 10*(i+1))
		n.add(t, r)
		n.Routers = append(n.Routers, r)
		// wan0 in the router; its peer joins the public bridge.
		peer := fmt.Sprintf("wan%c", 'a'+i)
		n.ip(t, "-n", r, "link", "add", "wan0", "type", "veth", "peer", "name", peer, "netns", n.Public)
		n.ip(t, "-n", n.Public, "link", "set", peer, "master", "br0", "up")
		n.ip(t, "-n", r, "addr", "add", wan+publicMask, "dev", "wan0")
		n.ip(t, "-n", r, "link", "set", "wan0", "up")
		n.exec(t, r, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")
		masq := []string{"iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan0", "-j", "MASQUERADE"}
		if o.Symmetric {
			masq = append(masq, "--random-fully")
		}
		n.exec(t, r, masq...)
		// Inward, only what answers a flow from inside (the DROP rule's
		// counter shows what the switch sent that the NAT refused).
		n.exec(t, r, "iptables", "-A", "FORWARD", "-i", "wan0", "-m", "state", "--state", "ESTABLISHED,RELATED", "-j", "ACCEPT")
		n.exec(t, r, "iptables", "-A", "FORWARD", "-i", "wan0", "-j", "DROP")
	}

	for i, name := range []string{"a", "b"} {
		r, wan := routers[0], "203.0.113.10"
		lan := fmt.Sprintf("lan%d", i)
		if !o.SharedRouter {
			r, wan = routers[i], fmt.Sprintf("203.0.113.%d", 10*(i+1))
			lan = "lan0"
		}
		h := natHost{
			Netns:  prefix + "-" + name,
			IP:     fmt.Sprintf("10.11.%d.2", i+1),
			Router: r,
			WANIP:  wan,
		}
		gw := fmt.Sprintf("10.11.%d.1", i+1)
		n.add(t, h.Netns)
		n.ip(t, "-n", r, "link", "add", lan, "type", "veth", "peer", "name", "eth0", "netns", h.Netns)
		n.ip(t, "-n", r, "addr", "add", gw+"/24", "dev", lan)
		n.ip(t, "-n", r, "link", "set", lan, "up")
		n.ip(t, "-n", h.Netns, "addr", "add", h.IP+"/24", "dev", "eth0")
		n.ip(t, "-n", h.Netns, "link", "set", "eth0", "up")
		n.ip(t, "-n", h.Netns, "route", "add", "default", "via", gw)
		n.Hosts = append(n.Hosts, h)
	}
	return n
}

// add creates a namespace with its loopback up.
func (n *natNet) add(t testing.TB, ns string) {
	t.Helper()
	n.ip(t, "netns", "add", ns)
	n.namespaces = append(n.namespaces, ns)
	n.ip(t, "-n", ns, "link", "set", "lo", "up")
}

func (n *natNet) ip(t testing.TB, args ...string) {
	t.Helper()
	if out, err := command(10*time.Second, "ip", args...); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// exec runs a command inside a namespace or fails the test.
func (n *natNet) exec(t testing.TB, ns string, args ...string) {
	t.Helper()
	if out, err := command(10*time.Second, "ip", append([]string{"netns", "exec", ns}, args...)...); err != nil {
		t.Fatalf("in %s: %s: %v\n%s", ns, strings.Join(args, " "), err, out)
	}
}

// command runs a program with a deadline and returns its combined output.
func command(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// teardown stops every process still in the namespaces, by PID, and
// deletes the namespaces. (A process started with `ip netns exec` survives
// `ip netns del`.)
func (n *natNet) teardown(t testing.TB) {
	for i := len(n.namespaces) - 1; i >= 0; i-- {
		ns := n.namespaces[i]
		pids := netnsPIDs(ns)
		for _, pid := range pids {
			t.Logf("netns %s: process %d still running at teardown; stopping it", ns, pid)
			_ = syscall.Kill(pid, syscall.SIGTERM)
		}
		if len(pids) > 0 && !interop.Poll(3*time.Second, 20*time.Millisecond, func() bool { return len(netnsPIDs(ns)) == 0 }) {
			for _, pid := range netnsPIDs(ns) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			interop.Poll(3*time.Second, 20*time.Millisecond, func() bool { return len(netnsPIDs(ns)) == 0 })
		}
		if out, err := command(10*time.Second, "ip", "netns", "del", ns); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", ns, err, out)
		}
	}
}

var staleName = regexp.MustCompile(`^sbn(\d+)-\d+-`)

// removeStale deletes namespaces that an earlier test process (one killed
// before its cleanup ran, e.g. by -timeout) left behind, if nothing runs in
// them any more.
func removeStale(t testing.TB) {
	out, err := command(10*time.Second, "ip", "netns", "list")
	if err != nil {
		return
	}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		m := staleName.FindStringSubmatch(f[0])
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		if pid == os.Getpid() || syscall.Kill(pid, 0) == nil || len(netnsPIDs(f[0])) > 0 {
			continue // its test process is alive, or something still runs in it
		}
		if out, err := command(10*time.Second, "ip", "netns", "del", f[0]); err != nil {
			t.Logf("removing stale netns %s: %v\n%s", f[0], err, out)
		}
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

// dialer returns a function that opens TCP connections from inside ns: the
// socket is created by a thread that entered ns, and keeps that namespace
// after the thread went back to the test's.
func dialer(ns string) func(addr string) (net.Conn, error) {
	return func(addr string) (net.Conn, error) {
		type result struct {
			c   net.Conn
			err error
		}
		ch := make(chan result, 1)
		go func() {
			c, err := dialIn(ns, addr)
			ch <- result{c, err}
		}()
		r := <-ch
		return r.c, r.err
	}
}

// dialIn runs on a goroutine of its own, locked to its thread. The thread
// is only handed back to the runtime when it returned to its own
// namespace; otherwise it ends with the goroutine.
func dialIn(ns, addr string) (net.Conn, error) {
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
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if unix.Setns(int(self.Fd()), unix.CLONE_NEWNET) == nil {
		runtime.UnlockOSThread()
	}
	return c, err
}

// evidence collects what the network saw, for a failure report: each
// router's firewall and NAT counters and connection tracking table, the
// sockets in the public namespace, and the packet captures (if tcpdump
// ran) summarised as packets per flow.
func (n *natNet) evidence(captures []*packetCapture) string {
	var b strings.Builder
	run := func(ns string, args ...string) {
		out, err := command(10*time.Second, "ip", append([]string{"netns", "exec", ns}, args...)...)
		fmt.Fprintf(&b, "--- %s: %s", ns, strings.Join(args, " "))
		if err != nil {
			fmt.Fprintf(&b, " (%v)", err)
		}
		b.WriteString("\n" + strings.TrimRight(out, "\n") + "\n")
	}
	for _, r := range n.Routers {
		run(r, "iptables", "-L", "FORWARD", "-v", "-n", "-x")
		run(r, "iptables", "-t", "nat", "-L", "POSTROUTING", "-v", "-n", "-x")
		run(r, "cat", "/proc/net/nf_conntrack")
	}
	if len(captures) == 0 {
		b.WriteString("--- no packet captures: tcpdump is not installed\n")
	}
	for _, c := range captures {
		c.stop()
		fmt.Fprintf(&b, "--- UDP packets on %s in %s (tcpdump):\n%s", c.Iface, c.Netns, pcapFlows(c.File))
	}
	return b.String()
}

// packetCapture is tcpdump writing the UDP packets of one interface of a
// namespace to a file.
type packetCapture struct {
	Netns, Iface, File string
	proc               *interop.Process
}

// capture starts tcpdump on iface in ns, if tcpdump is installed (nil
// otherwise). It is stopped by PID when the test ends, or before its file
// is read.
func capture(t testing.TB, ns, iface, dir string) *packetCapture {
	t.Helper()
	bin, err := exec.LookPath("tcpdump")
	if err != nil {
		return nil
	}
	c := &packetCapture{Netns: ns, Iface: iface, File: filepath.Join(dir, ns+"-"+iface+".pcap")}
	cmd := exec.Command("ip", "netns", "exec", ns, bin, "-i", iface, "-n", "-U", "-B", "4096", "-s", "256", "-w", c.File, "udp")
	c.proc, err = interop.StartProcess("tcpdump "+ns, cmd, filepath.Join(dir, ns+"-"+iface+".tcpdump.log"))
	if err != nil {
		t.Logf("tcpdump in %s: %v", ns, err)
		return nil
	}
	t.Cleanup(c.stop)
	// tcpdump says "listening on" once it captures.
	interop.Poll(5*time.Second, 20*time.Millisecond, func() bool {
		return c.proc.Exited() || strings.Contains(c.proc.Out.String(), "listening on")
	})
	return c
}

// stop ends the capture once its file stopped growing (bounded), so that
// the last packets of the call are in it.
func (c *packetCapture) stop() {
	if c.proc.Exited() {
		return
	}
	var last int64 = -1
	interop.Poll(2*time.Second, 200*time.Millisecond, func() bool {
		st, err := os.Stat(c.File)
		if err != nil {
			return false
		}
		grew := st.Size() != last
		last = st.Size()
		return !grew
	})
	c.proc.Stop(syscall.SIGINT, 3*time.Second)
}

// pcapFlows reads a capture with tcpdump and counts packets per
// source → destination.
func pcapFlows(file string) string {
	out, err := command(20*time.Second, "tcpdump", "-r", file, "-n", "-q")
	if err != nil && out == "" {
		return fmt.Sprintf("  tcpdump -r %s: %v\n", file, err)
	}
	counts := map[string]int{}
	var order []string
	for _, l := range strings.Split(out, "\n") {
		// "12:00:00.000000 IP 10.11.1.2.5060 > 203.0.113.1.5060: UDP, length 500"
		f := strings.Fields(l)
		for i := 0; i+3 < len(f); i++ {
			if f[i] == "IP" && f[i+2] == ">" {
				k := f[i+1] + " > " + strings.TrimSuffix(f[i+3], ":")
				if counts[k] == 0 {
					order = append(order, k)
				}
				counts[k]++
				break
			}
		}
	}
	var b strings.Builder
	for _, k := range order {
		fmt.Fprintf(&b, "  %5d  %s\n", counts[k], k)
	}
	return b.String()
}

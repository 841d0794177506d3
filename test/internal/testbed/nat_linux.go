//go:build linux

package testbed

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// NATOptions shapes the network of a NAT test.
type NATOptions struct {
	// SharedRouter puts both hosts behind one router (one public address
	// for both); otherwise each host has its own router and address.
	SharedRouter bool
	// Symmetric makes the routers' NAT symmetric (MASQUERADE
	// --random-fully: a random public port for every new flow).
	Symmetric bool
}

// NATHost is a private host behind a NAT router.
type NATHost struct {
	Netns  string
	IP     string // private address, e.g. 10.11.1.2
	Router string // router's namespace
	WANIP  string // router's public address: what the switch sees
}

// NATNet is a set of network namespaces: a "public" one holding the switch,
// routers that masquerade their private networks behind a public address
// and let in only what answers flows from inside, and a private host
// behind each. None of them has a link to the test's own namespace, and the
// public namespace has no route to the private networks.
type NATNet struct {
	Public   string // namespace of the switch
	PublicIP string
	Hosts    []NATHost // A (10.11.1.0/24) and B (10.11.2.0/24)
	Routers  []string
}

// Addresses: documentation prefixes and private ranges, which only ever
// exist inside these namespaces.
const (
	switchIP   = "203.0.113.1"
	publicMask = "/24"
)

// NewNATNet builds the namespaces (NewNetns) with the routers' iptables
// rules; it needs root, ip and iptables (RequireNetns). Everything is torn
// down when the test ends, failed or not.
func NewNATNet(t testing.TB, o NATOptions) *NATNet {
	t.Helper()
	RequireNetns(t)
	RequireTool(t, "iptables")
	n := &NATNet{Public: NewNetns(t, "pub"), PublicIP: switchIP}
	IP(t, "-n", n.Public, "link", "add", "br0", "type", "bridge")
	IP(t, "-n", n.Public, "addr", "add", switchIP+publicMask, "dev", "br0")
	IP(t, "-n", n.Public, "link", "set", "br0", "up")

	routers := []string{"ra", "rb"}
	if o.SharedRouter {
		routers = routers[:1]
	}
	for i := range routers {
		wan := fmt.Sprintf("203.0.113.%d", 10*(i+1))
		r := NewNetns(t, routers[i])
		routers[i] = r
		n.Routers = append(n.Routers, r)
		// wan0 in the router; its peer joins the public bridge.
		peer := fmt.Sprintf("wan%c", 'a'+i)
		IP(t, "-n", r, "link", "add", "wan0", "type", "veth", "peer", "name", peer, "netns", n.Public)
		IP(t, "-n", n.Public, "link", "set", peer, "master", "br0", "up")
		IP(t, "-n", r, "addr", "add", wan+publicMask, "dev", "wan0")
		IP(t, "-n", r, "link", "set", "wan0", "up")
		RunIn(t, r, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")
		masq := []string{"iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan0", "-j", "MASQUERADE"}
		if o.Symmetric {
			masq = append(masq, "--random-fully")
		}
		RunIn(t, r, masq...)
		// Inward, only what answers a flow from inside (the DROP rule's
		// counter shows what the switch sent that the NAT refused).
		RunIn(t, r, "iptables", "-A", "FORWARD", "-i", "wan0", "-m", "state", "--state", "ESTABLISHED,RELATED", "-j", "ACCEPT")
		RunIn(t, r, "iptables", "-A", "FORWARD", "-i", "wan0", "-j", "DROP")
	}

	for i, name := range []string{"a", "b"} {
		r, wan := routers[0], "203.0.113.10"
		lan := fmt.Sprintf("lan%d", i)
		if !o.SharedRouter {
			r, wan = routers[i], fmt.Sprintf("203.0.113.%d", 10*(i+1))
			lan = "lan0"
		}
		h := NATHost{
			Netns:  NewNetns(t, name),
			IP:     fmt.Sprintf("10.11.%d.2", i+1),
			Router: r,
			WANIP:  wan,
		}
		gw := fmt.Sprintf("10.11.%d.1", i+1)
		IP(t, "-n", r, "link", "add", lan, "type", "veth", "peer", "name", "eth0", "netns", h.Netns)
		IP(t, "-n", r, "addr", "add", gw+"/24", "dev", lan)
		IP(t, "-n", r, "link", "set", lan, "up")
		IP(t, "-n", h.Netns, "addr", "add", h.IP+"/24", "dev", "eth0")
		IP(t, "-n", h.Netns, "link", "set", "eth0", "up")
		IP(t, "-n", h.Netns, "route", "add", "default", "via", gw)
		n.Hosts = append(n.Hosts, h)
	}
	return n
}

// Evidence collects what the network saw, for a failure report: each
// router's firewall and NAT counters and connection tracking table, the
// sockets in the public namespace, and the packet captures (if tcpdump
// ran) summarised as packets per flow.
func (n *NATNet) Evidence(captures []*PacketCapture) string {
	var b strings.Builder
	run := func(ns string, args ...string) {
		out, err := Command(10*time.Second, "ip", append([]string{"netns", "exec", ns}, args...)...)
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
		c.Stop()
		fmt.Fprintf(&b, "--- UDP packets on %s in %s (tcpdump):\n%s", c.Iface, c.Netns, pcapFlows(c.File))
	}
	return b.String()
}

// PacketCapture is tcpdump writing the UDP packets of one interface of a
// namespace to a file.
type PacketCapture struct {
	Netns, Iface, File string
	proc               *Process
}

// Capture starts tcpdump on iface in ns, if tcpdump is installed (nil
// otherwise). It is stopped by PID when the test ends, or before its file
// is read.
func Capture(t testing.TB, ns, iface, dir string) *PacketCapture {
	t.Helper()
	bin, err := exec.LookPath("tcpdump")
	if err != nil {
		return nil
	}
	c := &PacketCapture{Netns: ns, Iface: iface, File: filepath.Join(dir, ns+"-"+iface+".pcap")}
	cmd := exec.Command("ip", "netns", "exec", ns, bin, "-i", iface, "-n", "-U", "-B", "4096", "-s", "256", "-w", c.File, "udp")
	c.proc, err = StartProcess("tcpdump "+ns, cmd, filepath.Join(dir, ns+"-"+iface+".tcpdump.log"))
	if err != nil {
		t.Logf("tcpdump in %s: %v", ns, err)
		return nil
	}
	t.Cleanup(c.Stop)
	// tcpdump says "listening on" once it captures.
	Poll(5*time.Second, 20*time.Millisecond, func() bool {
		return c.proc.Exited() || strings.Contains(c.proc.Out.String(), "listening on")
	})
	return c
}

// Stop ends the capture once its file stopped growing (bounded), so that
// the last packets of the call are in it.
func (c *PacketCapture) Stop() {
	if c.proc.Exited() {
		return
	}
	var last int64 = -1
	Poll(2*time.Second, 200*time.Millisecond, func() bool {
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
	out, err := Command(20*time.Second, "tcpdump", "-r", file, "-n", "-q")
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

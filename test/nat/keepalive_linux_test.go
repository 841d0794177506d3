//go:build linux

package nat

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/switchboard/switchboard/test/internal/testbed"
)

// The NAT timeout of these tests' routers, and how long a phone stays idle
// before it is called: three times the timeout, as the 20 s and
// 60 s. The keep-alive interval is half the timeout, the margin the shipped
// 25 s leaves against the common 30 s... and then some: one probe may be
// lost. Shorter than the figures so that CI waits 30 s, not 60 s;
// what matters — the mapping outlives the idle only if something refreshes
// it — is the same at any scale.
const (
	natTimeout = 10 * time.Second
	idleFor    = 3 * natTimeout
	keepalive  = "5s"
)

// shortNATTimeout sets the router's UDP connection tracking timeouts (the
// NAT's mapping lifetime) to natTimeout, for flows seen one way and both.
func shortNATTimeout(t *testing.T, router string) {
	t.Helper()
	secs := strconv.Itoa(int(natTimeout / time.Second))
	testbed.RunIn(t, router, "sysctl", "-q", "-w", "net.netfilter.nf_conntrack_udp_timeout="+secs,
		"net.netfilter.nf_conntrack_udp_timeout_stream="+secs)
	// What reaches the router's own address without a mapping (an INVITE
	// to an expired one) is dropped and counted here.
	testbed.RunIn(t, router, "iptables", "-A", "INPUT", "-i", "wan0", "-p", "udp", "-j", "DROP")
}

// TestNATKeepalive registers baresip behind a NAT whose UDP mappings last
// natTimeout, for 300 s; leaves it idle for three timeouts; then calls it.
// With the switch's keep-alives (nat.keepalive_interval) the router's
// mapping stays all along, the phone rings and the call has audio both
// ways. Without them (nat.keepalive_interval: 0) the mapping goes, and the
// INVITE is dropped by the NAT: it never reaches the phone. The two run in
// parallel, each in its own namespaces.
func TestNATKeepalive(t *testing.T) {
	testbed.RequireNetns(t)
	testbed.RequireTool(t, "iptables")
	testbed.RequireBaresip(t)
	testbed.RequireTool(t, "sox")
	t.Parallel() // with TestOutboundFlows: the idle time is spent once
	bin := testbed.Binary(t)
	for _, tc := range []struct {
		name      string
		keepalive string
	}{
		{"keepalives", keepalive},
		{"no-keepalives", "0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			on := tc.keepalive != "0s"
			dir := t.TempDir()
			n := testbed.NewNATNet(t, testbed.NATOptions{})
			for _, r := range n.Routers {
				shortNATTimeout(t, r)
			}
			srv := testbed.StartServer(t, bin, testbed.ServerConfig{
				Netns:      n.Public,
				Listen:     []string{fmt.Sprintf("udp://%s:5060", n.PublicIP)},
				MediaIP:    n.PublicIP,
				MediaRelay: "always",
				Registrar:  "{default_expires: 300, min_expires: 60, max_expires: 3600}",
				Extra:      "nat:\n  keepalive_interval: " + tc.keepalive + "\n",
			})
			srv.AddUser(t, "alice", "alice-pw-1")
			srv.AddUser(t, "bob", "bob-pw-2")
			proxy := srv.Addr(t, "udp")
			a, b := n.Hosts[0], n.Hosts[1]
			bob := testbed.StartBaresip(t, "bob", testbed.BaresipConfig{
				User: "bob", Password: "bob-pw-2", Domain: srv.Domain, Proxy: proxy, AnswerMode: "auto",
				Netns: b.Netns, IP: b.IP, SIPPort: 5060, CtrlPort: 4444, Regint: 300,
				AudioFile: testbed.MakeTone(t, filepath.Join(dir, "bob.wav"), bobHz, 20),
			})
			alice := testbed.StartBaresip(t, "alice", testbed.BaresipConfig{
				User: "alice", Password: "alice-pw-1", Domain: srv.Domain, Proxy: proxy,
				Netns: a.Netns, IP: a.IP, SIPPort: 5060, CtrlPort: 4444, Regint: 300,
				AudioFile: testbed.MakeTone(t, filepath.Join(dir, "alice.wav"), aliceHz, 20),
			})
			bob.WaitRegistered(t, 15*time.Second)
			alice.WaitRegistered(t, 15*time.Second)
			evidence := func() string { return n.Evidence(nil) }
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("network evidence:\n%s", evidence())
				}
			})

			// Idle: sample the router's mapping of bob's registration flow.
			bobFlow := fmt.Sprintf("src=%s dst=%s sport=5060 dport=5060 ", b.IP, n.PublicIP)
			// The idle time is what the test is about: it waits it out,
			// looking once a second.
			var present, absent int
			idleStart := time.Now()
			tick := time.NewTicker(time.Second)
			for end := idleStart.Add(idleFor); time.Now().Before(end); <-tick.C {
				if strings.Contains(conntrack(t, b.Router), bobFlow) {
					present++
				} else {
					absent++
				}
			}
			tick.Stop()
			m := metrics(t, n.Public, srv.Addr(t, "http"))
			t.Logf("idle %s: bob's NAT mapping present in %d samples, absent in %d; switchboard_nat_bindings %v, keep-alives sent %v, failed %v",
				idleFor, present, absent, m["switchboard_nat_bindings"], m["switchboard_nat_keepalives_sent_total"], m["switchboard_nat_keepalives_failed_total"])
			if m["switchboard_nat_bindings"] != 2 {
				t.Errorf("switchboard_nat_bindings %v, want 2 (both phones are behind NAT)", m["switchboard_nat_bindings"])
			}

			if on {
				if absent > 0 {
					t.Errorf("with keep-alives every %s the router lost bob's mapping in %d of %d samples", tc.keepalive, absent, present+absent)
				}
				// Two bindings, one probe each per interval.
				if sent := m["switchboard_nat_keepalives_sent_total"]; sent < 8 || m["switchboard_nat_keepalives_failed_total"] != 0 {
					t.Errorf("keep-alives sent %v (want at least 8 in %s), failed %v (want 0)", sent, idleFor, m["switchboard_nat_keepalives_failed_total"])
				}
				logKeepaliveTraffic(t, bob, idleStart)
				lo, hi := rtpRange(t, srv.Config)
				runCall(t, call{
					alice: alice, bob: bob, domain: srv.Domain,
					relayIP: n.PublicIP, rtpLo: lo, rtpHi: hi,
					privateIP: map[*testbed.Baresip]string{alice: a.IP, bob: b.IP},
					cdrList:   func() (string, error) { return srv.CLI(context.Background(), "cdr", "list") },
					evidence:  evidence,
				})
				if !rang(bob) {
					t.Errorf("bob did not ring (sent no 180 Ringing)")
				}
				return
			}

			// No keep-alives: the mapping is gone, and the call with it.
			if sent := m["switchboard_nat_keepalives_sent_total"]; sent != 0 {
				t.Errorf("keep-alives sent %v with nat.keepalive_interval: 0", sent)
			}
			if strings.Contains(conntrack(t, b.Router), bobFlow) {
				t.Fatalf("bob's mapping outlived %s of silence with a %s NAT timeout: the test shows nothing", idleFor, natTimeout)
			}
			dropped0 := inputDrops(t, b.Router)
			if _, err := alice.Command(context.Background(), "dial", "sip:bob@"+srv.Domain); err != nil {
				t.Fatal(err)
			}
			if !testbed.Poll(10*time.Second, 100*time.Millisecond, func() bool { return inputDrops(t, b.Router) > dropped0 }) {
				t.Errorf("bob's router dropped nothing addressed to it after the call was placed")
			}
			t.Logf("bob's router dropped %d datagram(s) sent to its expired mapping so far (the INVITE)", inputDrops(t, b.Router)-dropped0)
			for _, msg := range parseTrace(bob.Log()) {
				if msg.Method() == "INVITE" {
					t.Errorf("the INVITE reached bob through an expired NAT mapping: %s", msg.Summary())
				}
			}
			if rang(bob) {
				t.Errorf("bob rang without keep-alives")
			}
			if _, err := alice.Command(context.Background(), "hangup", ""); err != nil {
				t.Fatal(err)
			}
			alice.WaitEventType(t, "CALL_CLOSED", 40*time.Second)
		})
	}
}

// TestOutboundFlows runs baresip with RFC 5626 outbound behind NATs: bob
// over TCP, alice over UDP, both with sipnat=outbound (reg-id 1 and a
// +sip.instance). The registrar answers with Require: outbound and a
// Flow-Timer; bob's CRLF pings on the flow are answered with CRLF pongs,
// alice's STUN keep-alives to the SIP UDP port are answered, and a pion
// STUN client behind NAT learns its public address from that port. Then
// bob restarts — the same instance on a new connection, while the switch
// still holds the old one (its close never gets through) — and the new
// flow replaces the old: one binding, and a call from alice reaches bob
// over the new flow, with audio both ways.
func TestOutboundFlows(t *testing.T) {
	testbed.RequireNetns(t)
	testbed.RequireTool(t, "iptables")
	testbed.RequireTool(t, "ss")
	testbed.RequireBaresip(t)
	testbed.RequireTool(t, "sox")
	t.Parallel()
	dir := t.TempDir()
	n := testbed.NewNATNet(t, testbed.NATOptions{})
	srv := testbed.StartServer(t, testbed.Binary(t), testbed.ServerConfig{
		Netns:      n.Public,
		Listen:     []string{fmt.Sprintf("udp://%s:5060", n.PublicIP), fmt.Sprintf("tcp://%s:5060", n.PublicIP)},
		MediaIP:    n.PublicIP,
		MediaRelay: "always",
		Registrar:  "{default_expires: 300, min_expires: 60, max_expires: 3600}",
		Extra:      "nat:\n  keepalive_interval: " + keepalive + "\n",
	})
	srv.AddUser(t, "alice", "alice-pw-1")
	srv.AddUser(t, "bob", "bob-pw-2")
	a, b := n.Hosts[0], n.Hosts[1]
	bob := testbed.StartBaresip(t, "bob", testbed.BaresipConfig{
		User: "bob", Password: "bob-pw-2", Domain: srv.Domain, Proxy: srv.Addr(t, "tcp"), Transport: "tcp",
		AnswerMode: "auto", Outbound: true, Netns: b.Netns, IP: b.IP, SIPPort: 5060, CtrlPort: 4444, Regint: 300,
		AudioFile: testbed.MakeTone(t, filepath.Join(dir, "bob.wav"), bobHz, 20),
	})
	alice := testbed.StartBaresip(t, "alice", testbed.BaresipConfig{
		User: "alice", Password: "alice-pw-1", Domain: srv.Domain, Proxy: srv.Addr(t, "udp"),
		Outbound: true, Netns: a.Netns, IP: a.IP, SIPPort: 5060, CtrlPort: 4444, Regint: 300,
		AudioFile: testbed.MakeTone(t, filepath.Join(dir, "alice.wav"), aliceHz, 20),
	})
	bob.WaitRegistered(t, 15*time.Second)
	alice.WaitRegistered(t, 15*time.Second)
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range []*testbed.Baresip{alice, bob} {
				var sb strings.Builder
				for _, m := range parseTrace(p.PrevLog() + p.Log()) {
					sb.WriteString("  " + m.Summary() + "\n")
				}
				t.Logf("SIP messages at %s:\n%s", p.Name, sb.String())
			}
		}
	})
	for _, p := range []*testbed.Baresip{alice, bob} {
		ok := lastRegister200(parseTrace(p.Log()))
		if ok == nil || ok.Header("Require") != "outbound" || ok.Header("Flow-Timer") != "5" {
			t.Fatalf("%s: the 200 to its flow registration does not say Require: outbound, Flow-Timer: 5: %+v", p.Name, ok)
		}
		if c := ok.Header("Contact"); !strings.Contains(c, "reg-id=1") || !strings.Contains(c, "+sip.instance=") {
			t.Errorf("%s: the 200 lists %q, want the flow with its instance and reg-id", p.Name, c)
		}
	}

	// (c) CRLF keep-alives on bob's flow, answered: libre pings every 80-100%
	// of max(Flow-Timer, 20 s) and drops a flow whose pong is 10 s late.
	peer := srv.Addr(t, "tcp")
	f0 := tcpFlow(t, b.Netns, peer)
	var f tcpCounters
	if !testbed.Poll(35*time.Second, 200*time.Millisecond, func() bool {
		f = tcpFlow(t, b.Netns, peer)
		return f.port == f0.port && f.received >= f0.received+2
	}) {
		t.Fatalf("no CRLF pong on bob's flow within 35 s: before %+v, after %+v", f0, f)
	}
	pings, pongs := (f.sent-f0.sent)/4, (f.received-f0.received)/2
	t.Logf("bob's flow %s: %d bytes of CRLF pings sent, %d bytes of pongs received (%d and %d)", peer, f.sent-f0.sent, f.received-f0.received, pings, pongs)
	if (f.sent-f0.sent)%4 != 0 || (f.received-f0.received)%2 != 0 || pongs != pings {
		t.Errorf("on an idle flow, want 4-byte pings each answered by a 2-byte pong: sent %d bytes, received %d", f.sent-f0.sent, f.received-f0.received)
	}

	// (d) STUN on the SIP UDP port: alice's keep-alives (libre sends one
	// per Flow-Timer on a UDP flow), and a pion client behind the NAT.
	m := metrics(t, n.Public, srv.Addr(t, "http"))
	if m["switchboard_nat_stun_answered_total"] < 1 {
		t.Errorf("no STUN keep-alive of alice's UDP flow answered: %v", m["switchboard_nat_stun_answered_total"])
	}
	t.Logf("STUN answered on the SIP port so far: %v", m["switchboard_nat_stun_answered_total"])
	mapped := stunBinding(t, a.Netns, srv.Addr(t, "udp"))
	if mapped.IP.String() != a.WANIP {
		t.Errorf("STUN from behind alice's NAT: XOR-MAPPED-ADDRESS %s, want the router's public address %s", mapped, a.WANIP)
	}

	// Reconnect: the switch keeps bob's old connection (what bob sends on
	// it is dropped from now on: his unregistration, FIN, RST), bob comes
	// back with the same instance over a new one.
	oldContact := lastRegister200(parseTrace(bob.Log())).Header("Contact")
	testbed.RunIn(t, b.Netns, "iptables", "-A", "OUTPUT", "-p", "tcp", "--sport", strconv.Itoa(f.port), "-j", "DROP")
	bob.Restart(t)
	bob.WaitRegistered(t, 15*time.Second)
	ok := lastRegister200(parseTrace(bob.Log()))
	if ok == nil {
		t.Fatal("no 200 to bob's REGISTER after the restart")
	}
	contacts := contactValues(ok)
	t.Logf("after the reconnect the 200 lists %q (before: %q)", contacts, oldContact)
	if len(contacts) != 1 || !strings.Contains(contacts[0], "reg-id=1") {
		t.Errorf("after the reconnect the 200 lists %d bindings %q, want only the new flow", len(contacts), contacts)
	}
	if conns := switchConns(t, n.Public, peer, b.WANIP); conns < 2 {
		t.Errorf("the switch holds %d connections from bob's router, want 2: the old flow must still be open for this to show replacement", conns)
	}
	callAndHear(t, alice, bob, srv.Domain, false)
	for _, msg := range parseTrace(bob.Log()) {
		if msg.Method() == "INVITE" && msg.Transport != "TCP" {
			t.Errorf("bob got the INVITE over %s, want his TCP flow", msg.Transport)
		}
	}
}

// conntrack returns a router's connection tracking table.
func conntrack(t *testing.T, ns string) string {
	t.Helper()
	out, err := testbed.Command(10*time.Second, "ip", "netns", "exec", ns, "cat", "/proc/net/nf_conntrack")
	if err != nil {
		t.Fatalf("conntrack in %s: %v\n%s", ns, err, out)
	}
	return out
}

// inputDrops returns the packet count of the router's INPUT DROP rule.
func inputDrops(t *testing.T, ns string) int {
	t.Helper()
	out, err := testbed.Command(10*time.Second, "ip", "netns", "exec", ns, "iptables", "-L", "INPUT", "-v", "-n", "-x")
	if err != nil {
		t.Fatalf("iptables in %s: %v\n%s", ns, err, out)
	}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) > 2 && f[2] == "DROP" {
			n, _ := strconv.Atoi(f[0])
			return n
		}
	}
	t.Fatalf("no DROP rule in %s's INPUT chain:\n%s", ns, out)
	return 0
}

var metricLine = regexp.MustCompile(`^(switchboard_nat_[a-z_]+) ([0-9.e+]+)$`)

// metrics reads the switch's switchboard_nat_* metrics from /metrics, from
// inside its namespace (metrics are served to loopback).
func metrics(t *testing.T, ns, addr string) map[string]float64 {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) { return testbed.DialIn(ns, a) },
	}}
	defer c.CloseIdleConnections()
	res, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer res.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if m := metricLine.FindStringSubmatch(sc.Text()); m != nil {
			out[m[1]], _ = strconv.ParseFloat(m[2], 64)
		}
	}
	return out
}

// logKeepaliveTraffic logs the size and number of the keep-alives bob
// received (and answered) since since: the traffic one binding costs.
func logKeepaliveTraffic(t *testing.T, bob *testbed.Baresip, since time.Time) {
	t.Helper()
	var options, answers, bytesIn, bytesOut int
	for _, m := range parseTrace(bob.Log()) {
		size := len(m.StartLine) + 2 + 2 + len(m.Body)
		for _, h := range m.Headers {
			size += len(h) + 2
		}
		switch {
		case m.Method() == "OPTIONS":
			options++
			bytesIn += size
		case m.Status() > 0 && m.CSeqMethod() == "OPTIONS":
			answers++
			bytesOut += size
		}
	}
	if options == 0 {
		t.Errorf("bob received no keep-alive OPTIONS")
		return
	}
	t.Logf("keep-alive traffic per binding: %d OPTIONS (%d bytes each) answered by %d responses (%d bytes each) since registering, one pair per %s: %.0f bytes/s of SIP payload",
		options, bytesIn/options, answers, bytesOut/max(answers, 1), keepalive, float64(bytesIn+bytesOut)/time.Since(since).Seconds())
}

// rang reports whether the phone sent 180 Ringing to an INVITE.
func rang(p *testbed.Baresip) bool {
	for _, m := range parseTrace(p.Log()) {
		if m.Status() == 180 && m.CSeqMethod() == "INVITE" && sameHostPort(m.Src, p.SIPAddr()) {
			return true
		}
	}
	return false
}

// lastRegister200 is the last 200 to a REGISTER in a trace.
func lastRegister200(msgs []sipMessage) *sipMessage {
	var last *sipMessage
	for i := range msgs {
		if msgs[i].Status() == 200 && msgs[i].CSeqMethod() == "REGISTER" {
			last = &msgs[i]
		}
	}
	return last
}

// contactValues returns every Contact value of a message (one per header
// line; baresip prints each binding on its own line).
func contactValues(m *sipMessage) []string {
	var out []string
	for _, h := range m.Headers {
		if k, v, ok := strings.Cut(h, ":"); ok && strings.EqualFold(strings.TrimSpace(k), "Contact") {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

// tcpCounters is one TCP connection as `ss -ti` reports it.
type tcpCounters struct {
	port           int // local port
	sent, received int // bytes_sent, bytes_received
}

var (
	ssConn  = regexp.MustCompile(`^ESTAB\s+\d+\s+\d+\s+\S+:(\d+)\s+(\S+)`)
	ssBytes = regexp.MustCompile(`bytes_sent:(\d+).*bytes_received:(\d+)`)
)

// tcpFlow returns the established connection to peer from inside ns.
func tcpFlow(t *testing.T, ns, peer string) tcpCounters {
	t.Helper()
	out, err := testbed.Command(10*time.Second, "ip", "netns", "exec", ns, "ss", "-tin", "state", "established")
	if err != nil {
		t.Fatalf("ss in %s: %v\n%s", ns, err, out)
	}
	var c tcpCounters
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		// With a state filter ss leaves the State column out.
		m := ssConn.FindStringSubmatch("ESTAB " + strings.TrimSpace(l))
		if m == nil || m[2] != peer || i+1 >= len(lines) {
			continue
		}
		c.port, _ = strconv.Atoi(m[1])
		if b := ssBytes.FindStringSubmatch(lines[i+1]); b != nil {
			c.sent, _ = strconv.Atoi(b[1])
			c.received, _ = strconv.Atoi(b[2])
		}
		return c
	}
	t.Fatalf("no connection to %s in %s:\n%s", peer, ns, out)
	return c
}

// switchConns counts the switch's established connections on local from
// the address from.
func switchConns(t *testing.T, ns, local, from string) int {
	t.Helper()
	out, err := testbed.Command(10*time.Second, "ip", "netns", "exec", ns, "ss", "-tn", "state", "established")
	if err != nil {
		t.Fatalf("ss in %s: %v\n%s", ns, err, out)
	}
	n := 0
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 4 && f[2] == local && strings.HasPrefix(f[3], from+":") {
			n++
		}
	}
	return n
}

// stunBinding sends a STUN Binding request (pion/stun) from inside ns to a
// SIP UDP port and returns the XOR-MAPPED-ADDRESS of the answer.
func stunBinding(t *testing.T, ns, addr string) stun.XORMappedAddress {
	t.Helper()
	c, err := testbed.DialUDPIn(ns, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	buf := make([]byte, 1500)
	for try := 0; try < 3; try++ { // UDP: a lost datagram is retried
		if _, err := c.Write(req.Raw); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		n, err := c.Read(buf)
		if err != nil {
			continue
		}
		res := &stun.Message{Raw: buf[:n]}
		var xor stun.XORMappedAddress
		if err := res.Decode(); err != nil || res.Type != stun.BindingSuccess || res.TransactionID != req.TransactionID {
			t.Fatalf("answer to a STUN Binding request on %s: %v %v", addr, res, err)
		}
		if err := xor.GetFrom(res); err != nil {
			t.Fatalf("STUN answer without XOR-MAPPED-ADDRESS: %v", err)
		}
		return xor
	}
	t.Fatalf("no answer to a STUN Binding request on the SIP port %s", addr)
	return stun.XORMappedAddress{}
}

//go:build linux

package nat

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/switchboard/switchboard/test/internal/testbed"
)

// TestNATCall puts alice and bob on private networks behind NAT routers, in
// network namespaces, and the switch on a public network that cannot reach
// the private addresses. The phones know nothing about NAT: they register
// and write their private addresses into Contact and SDP. The switch must
// reach bob through his router's mapping of his REGISTER, anchor the media
// at its public address, and latch onto where each phone's RTP really comes
// from, so that each side hears the other's tone.
func TestNATCall(t *testing.T) {
	testbed.RequireNetns(t)
	testbed.RequireTool(t, "iptables")
	testbed.RequireBaresip(t)
	testbed.RequireTool(t, "sox")
	bin := testbed.Binary(t)
	for _, tc := range []struct {
		name       string
		net        testbed.NATOptions
		relay      string
		byeFromBob bool
	}{
		// Two homes, each with its own port-preserving NAT.
		{"router-per-host", testbed.NATOptions{}, "always", false},
		// One symmetric NAT (a random public port per flow) in front of
		// both phones, so they share a public address; the switch decides
		// by itself that the call needs the relay, and bob hangs up, so
		// the BYE must find alice behind her NAT.
		{"shared-symmetric-router", testbed.NATOptions{SharedRouter: true, Symmetric: true}, "nat", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			n := testbed.NewNATNet(t, tc.net)
			// Packet captures for the failure report, when tcpdump is
			// installed: the switch's side and each phone's.
			var captures []*testbed.PacketCapture
			for _, c := range []struct{ ns, iface string }{
				{n.Public, "br0"}, {n.Hosts[0].Netns, "eth0"}, {n.Hosts[1].Netns, "eth0"},
			} {
				if pc := testbed.Capture(t, c.ns, c.iface, dir); pc != nil {
					captures = append(captures, pc)
				}
			}
			// The switch on the public network, fixed ports (the namespace
			// is the test's own). Short registrations: a phone behind NAT
			// refreshes its binding (and the NAT's mapping) well within the
			// routers' UDP timeouts.
			srv := testbed.StartServer(t, bin, testbed.ServerConfig{
				Netns:      n.Public,
				Listen:     []string{fmt.Sprintf("udp://%s:5060", n.PublicIP)},
				LogLevel:   "debug",
				MediaIP:    n.PublicIP,
				MediaRelay: tc.relay,
				Media:      "timeout: 30s",
				Registrar:  "{default_expires: 60, min_expires: 30, max_expires: 120}",
			})
			srv.AddUser(t, "alice", "alice-pw-1")
			srv.AddUser(t, "bob", "bob-pw-2")
			proxy := srv.Addr(t, "udp")
			lo, hi := rtpRange(t, srv.Config)
			a, b := n.Hosts[0], n.Hosts[1]
			// Inside its namespace each phone has the ports to itself.
			bob := testbed.StartBaresip(t, "bob", testbed.BaresipConfig{
				User: "bob", Password: "bob-pw-2", Domain: srv.Domain, Proxy: proxy, AnswerMode: "auto",
				Netns: b.Netns, IP: b.IP, SIPPort: 5060, CtrlPort: 4444, Regint: 60,
				AudioFile: testbed.MakeTone(t, filepath.Join(dir, "bob.wav"), bobHz, 20),
			})
			alice := testbed.StartBaresip(t, "alice", testbed.BaresipConfig{
				User: "alice", Password: "alice-pw-1", Domain: srv.Domain, Proxy: proxy,
				Netns: a.Netns, IP: a.IP, SIPPort: 5060, CtrlPort: 4444, Regint: 60,
				AudioFile: testbed.MakeTone(t, filepath.Join(dir, "alice.wav"), aliceHz, 20),
			})

			runCall(t, call{
				alice: alice, bob: bob, domain: srv.Domain,
				relayIP: n.PublicIP, rtpLo: lo, rtpHi: hi,
				privateIP:  map[*testbed.Baresip]string{alice: a.IP, bob: b.IP},
				cdrList:    func() (string, error) { return srv.CLI(context.Background(), "cdr", "list") },
				evidence:   func() string { return n.Evidence(captures) },
				byeFromBob: tc.byeFromBob,
			})
		})
	}
}

//go:build linux

package nat

import (
	"path/filepath"
	"testing"

	"github.com/switchboard/switchboard/test/interop"
)

// TestNATCall puts alice and bob on private networks behind NAT routers, in
// network namespaces, and the switch on a public network that cannot reach
// the private addresses. The phones know nothing about NAT: they register
// and write their private addresses into Contact and SDP. The switch must
// reach bob through his router's mapping of his REGISTER, anchor the media
// at its public address, and latch onto where each phone's RTP really comes
// from, so that each side hears the other's tone.
func TestNATCall(t *testing.T) {
	requireNetns(t)
	requireBaresip(t)
	interop.RequireTool(t, "sox")
	bin := serverBinary(t)
	for _, tc := range []struct {
		name       string
		net        natOptions
		relay      string
		byeFromBob bool
	}{
		// Two homes, each with its own port-preserving NAT.
		{"router-per-host", natOptions{}, "always", false},
		// One symmetric NAT (a random public port per flow) in front of
		// both phones, so they share a public address; the switch decides
		// by itself that the call needs the relay, and bob hangs up, so
		// the BYE must find alice behind her NAT.
		{"shared-symmetric-router", natOptions{SharedRouter: true, Symmetric: true}, "nat", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			n := newNATNet(t, tc.net)
			// Packet captures for the failure report, when tcpdump is
			// installed: the switch's side and each phone's.
			var captures []*packetCapture
			for _, c := range []struct{ ns, iface string }{
				{n.Public, "br0"}, {n.Hosts[0].Netns, "eth0"}, {n.Hosts[1].Netns, "eth0"},
			} {
				if pc := capture(t, c.ns, c.iface, dir); pc != nil {
					captures = append(captures, pc)
				}
			}
			srv := startNSServer(t, bin, nsServerConfig{
				Netns: n.Public, IP: n.PublicIP, Relay: tc.relay,
				Users: map[string]string{"alice": "alice-pw-1", "bob": "bob-pw-2"},
			})
			a, b := n.Hosts[0], n.Hosts[1]
			// Inside its namespace each phone has the ports to itself.
			bob := startPhone(t, "bob", phoneConfig{
				User: "bob", Password: "bob-pw-2", Domain: srv.Domain, Proxy: srv.SIPAddr, AnswerMode: "auto",
				Netns: b.Netns, IP: b.IP, SIPPort: 5060, CtrlPort: 4444, Regint: 60,
				AudioFile: interop.MakeTone(t, filepath.Join(dir, "bob.wav"), bobHz, 20),
			}, dialer(b.Netns))
			alice := startPhone(t, "alice", phoneConfig{
				User: "alice", Password: "alice-pw-1", Domain: srv.Domain, Proxy: srv.SIPAddr,
				Netns: a.Netns, IP: a.IP, SIPPort: 5060, CtrlPort: 4444, Regint: 60,
				AudioFile: interop.MakeTone(t, filepath.Join(dir, "alice.wav"), aliceHz, 20),
			}, dialer(a.Netns))

			runCall(t, call{
				alice: alice, bob: bob, domain: srv.Domain,
				relayIP: n.PublicIP, rtpLo: nsRTPLo, rtpHi: nsRTPHi,
				privateIP:  map[*phone]string{alice: a.IP, bob: b.IP},
				cdrList:    func() (string, error) { return srv.CLI("cdr", "list") },
				evidence:   func() string { return n.evidence(captures) },
				byeFromBob: tc.byeFromBob,
			})
		})
	}
}

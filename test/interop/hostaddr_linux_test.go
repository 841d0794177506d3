package interop

import (
	"strings"
	"testing"

	"github.com/switchboard/switchboard/test/internal/testbed"
)

// mediaStarted returns the relay's "media relay started" log line.
func mediaStarted(srv *testbed.Server) map[string]string {
	for _, line := range strings.Split(srv.Log(), "\n") {
		if kv := testbed.ParseLogfmt(line); kv["msg"] == "media relay started" {
			return kv
		}
	}
	return nil
}

// TestLoopbackOnlyHostStarts: on a host with nothing but lo (a network
// namespace), the shipped config starts — on loopback — and says why
// others cannot reach it, instead of refusing.
func TestLoopbackOnlyHostStarts(t *testing.T) {
	testbed.RequireNetns(t)
	ns := testbed.NewNetns(t, "loonly")
	srv := testbed.StartServer(t, testbed.Binary(t), testbed.ServerConfig{Netns: ns})
	if !strings.Contains(srv.Log(), "this host has no address but loopback") {
		t.Errorf("no warning about a loopback-only host:\n%s", testbed.Tail(srv.Log(), 30))
	}
	if kv := mediaStarted(srv); kv["public_ip6"] != "" && kv["public_ip6"] != "invalid IP" {
		t.Errorf("relay has an IPv6 address on a loopback-only host: %v", kv)
	}
}

// TestIPv6OnlyHostAdvertisesIPv6: on a host whose only address besides lo
// is a global IPv6 one, the relay (bound to "::" by default) takes that
// address for IPv6 parties, and there is no loopback warning.
func TestIPv6OnlyHostAdvertisesIPv6(t *testing.T) {
	testbed.RequireNetns(t)
	ns := testbed.NewNetns(t, "v6only")
	testbed.IP(t, "-n", ns, "link", "add", "v6a", "type", "veth", "peer", "name", "v6b")
	testbed.IP(t, "-n", ns, "link", "set", "v6a", "up")
	testbed.IP(t, "-n", ns, "link", "set", "v6b", "up")
	testbed.IP(t, "-n", ns, "addr", "add", "2001:db8:5::1/64", "dev", "v6a", "nodad")
	srv := testbed.StartServer(t, testbed.Binary(t), testbed.ServerConfig{Netns: ns, Media: `bind_ip: "::"`})
	if strings.Contains(srv.Log(), "no address but loopback") {
		t.Errorf("an IPv6-only host was taken for a loopback-only one:\n%s", testbed.Tail(srv.Log(), 30))
	}
	kv := mediaStarted(srv)
	if kv["public_ip6"] != "2001:db8:5::1" || kv["bind_ip"] != "::" {
		t.Errorf("relay on an IPv6-only host: %v, want public_ip6=2001:db8:5::1 bind_ip=::", kv)
	}
}

package interop

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/test/internal/testbed"
)

// sipListeners returns the SIP listeners of transport the server logged,
// by address family: its Addrs keep one per transport.
func sipListeners(t *testing.T, srv *testbed.Server, transport string) (v4, v6 string) {
	t.Helper()
	for _, line := range strings.Split(srv.Log(), "\n") {
		kv := testbed.ParseLogfmt(line)
		if kv["msg"] != "listening" || kv["component"] != "sip" || kv["transport"] != transport {
			continue
		}
		ap, err := netip.ParseAddrPort(kv["addr"])
		if err != nil {
			continue
		}
		if ap.Addr().Is4() {
			v4 = kv["addr"]
		} else {
			v6 = kv["addr"]
		}
	}
	if v4 == "" || v6 == "" {
		t.Fatalf("want an IPv4 and an IPv6 %s listener logged, got %q and %q", transport, v4, v6)
	}
	return v4, v6
}

// TestDualStackCall runs the switch with IPv4 and IPv6 UDP and TCP
// listeners side by side (127.0.0.1 and ::1) and the relay on both
// families (bind_ip "::", public_ip 127.0.0.1, public_ip6 ::1). bob's
// baresip is on ::1 only, alice's on 127.0.0.1 only; bob calls alice, who
// answers by herself. Each phone is told a relay address of its own family
// (c=IN IP6 ::1 to bob, IN IP4 to alice), each hears the other's tone, both
// hang up cleanly, and the call record has the call answered with media
// counted on both legs.
func TestDualStackCall(t *testing.T) {
	testbed.RequireBaresip(t)
	srv := testbed.StartServer(t, testbed.Binary(t), testbed.ServerConfig{
		Listen: []string{"udp://127.0.0.1:0", "tcp://127.0.0.1:0", "udp://[::1]:0", "tcp://[::1]:0"},
		Media:  `bind_ip: "::", public_ip6: "::1"`,
	})
	addUsers(t, srv, []testbed.Cred{{User: "alice", Password: "alice-pw-1"}, {User: "bob", Password: "bob-pw-2"}})
	udp4, udp6 := sipListeners(t, srv, "udp")
	sipListeners(t, srv, "tcp")
	dir := t.TempDir()
	const aliceHz, bobHz = 1000, 600
	alice := testbed.StartBaresip(t, "alice", testbed.BaresipConfig{
		User: "alice", Password: "alice-pw-1", Domain: srv.Domain, Proxy: udp4, AnswerMode: "auto",
		AudioFile: testbed.MakeTone(t, filepath.Join(dir, "alice.wav"), aliceHz, 20),
	})
	bob := testbed.StartBaresip(t, "bob", testbed.BaresipConfig{
		User: "bob", Password: "bob-pw-2", Domain: srv.Domain, Proxy: udp6, IP: "::1",
		AudioFile: testbed.MakeTone(t, filepath.Join(dir, "bob.wav"), bobHz, 20),
	})
	alice.WaitRegistered(t, 10*time.Second)
	bob.WaitRegistered(t, 10*time.Second)

	baresipCall(t, bob, alice, "sip:alice@"+srv.Domain, bobHz, aliceHz)

	// The call crossed families: two Record-Route entries (RFC 5658), the
	// one alice meets first on IPv4, the one bob meets first on IPv6.
	if rr := recordRoutes(alice.Log(), "INVITE sip:alice"); len(rr) != 2 ||
		!strings.Contains(rr[0], "127.0.0.1") || !strings.Contains(rr[1], "[::1]") {
		t.Errorf("INVITE reached alice with Record-Route %q, want the switch's IPv4 entry over its IPv6 one", rr)
	}
	// What each phone was told (baresip -s logs every SIP message).
	if l := bob.Log(); !strings.Contains(l, "c=IN IP6 ::1") {
		t.Errorf("bob (IPv6) was not given the relay's IPv6 address:\n%s", testbed.Tail(l, 60))
	}
	if l := alice.Log(); !strings.Contains(l, "c=IN IP4 127.0.0.1") || strings.Contains(l, "c=IN IP6") {
		t.Errorf("alice (IPv4) was not given only the relay's IPv4 address:\n%s", testbed.Tail(l, 60))
	}

	var rows []testbed.CDR
	if !testbed.Poll(10*time.Second, 100*time.Millisecond, func() bool {
		rows = callsBetween(srv.CDRs(t), "bob", "alice")
		return len(rows) == 1 && rows[0].Answered() && rows[0]["ended"] != "" && rows[0]["ended"] != "-"
	}) {
		t.Fatalf("cdr list: want one answered and ended bob→alice call, got %v", rows)
	}
	t.Logf("call record: %v", rows[0])
	if r := rows[0]; r["status"] != "200" {
		t.Errorf("cdr: want status 200: %v", r)
	}
	// "m0 caller: pkts=N ...; m0 callee: pkts=N ...": what the relay took
	// from each leg.
	for _, leg := range []string{"caller", "callee"} {
		var pkts int
		_, rest, ok := strings.Cut(rows[0]["media"], "m0 "+leg+": pkts=")
		if ok {
			_, _ = fmt.Sscan(rest, &pkts)
		}
		if pkts < 50 {
			t.Errorf("cdr media: %d packets from the %s's leg, want at least 50: %q", pkts, leg, rows[0]["media"])
		}
	}
}

// recordRoutes returns the Record-Route values of the last message in a
// baresip -s log that starts with first.
func recordRoutes(log, first string) []string {
	i := strings.LastIndex(log, first)
	if i < 0 {
		return nil
	}
	var out []string
	for _, l := range strings.Split(log[i:], "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			break // the end of the headers
		}
		if v, ok := strings.CutPrefix(l, "Record-Route: "); ok {
			out = append(out, strings.Split(v, ",")...)
		}
	}
	return out
}

// TestDualStackCallToIPv6 is the other direction: an IPv4 phone calls an
// IPv6 one, so the offer the relay writes for the callee must name its
// IPv6 address before the callee has said anything about itself (the
// branch's destination tells its family).
func TestDualStackCallToIPv6(t *testing.T) {
	testbed.RequireBaresip(t)
	srv := testbed.StartServer(t, testbed.Binary(t), testbed.ServerConfig{
		Listen: []string{"udp://127.0.0.1:0", "udp://[::1]:0"},
		Media:  `bind_ip: "::", public_ip6: "::1"`,
	})
	addUsers(t, srv, []testbed.Cred{{User: "alice", Password: "alice-pw-1"}, {User: "bob", Password: "bob-pw-2"}})
	udp4, udp6 := sipListeners(t, srv, "udp")
	dir := t.TempDir()
	const aliceHz, bobHz = 1000, 600
	alice := testbed.StartBaresip(t, "alice", testbed.BaresipConfig{
		User: "alice", Password: "alice-pw-1", Domain: srv.Domain, Proxy: udp4,
		AudioFile: testbed.MakeTone(t, filepath.Join(dir, "alice.wav"), aliceHz, 20),
	})
	bob := testbed.StartBaresip(t, "bob", testbed.BaresipConfig{
		User: "bob", Password: "bob-pw-2", Domain: srv.Domain, Proxy: udp6, IP: "::1", AnswerMode: "auto",
		AudioFile: testbed.MakeTone(t, filepath.Join(dir, "bob.wav"), bobHz, 20),
	})
	alice.WaitRegistered(t, 10*time.Second)
	bob.WaitRegistered(t, 10*time.Second)

	baresipCall(t, alice, bob, "sip:bob@"+srv.Domain, aliceHz, bobHz)
	if l := bob.Log(); !strings.Contains(l, "c=IN IP6 ::1") || strings.Contains(l, "c=IN IP4 127.0.0.1") {
		t.Errorf("bob (IPv6) was not offered only the relay's IPv6 address:\n%s", testbed.Tail(l, 60))
	}
}

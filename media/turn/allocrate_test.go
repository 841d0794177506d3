package turn

import (
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// The 401 round does not use up the budget of authenticated Allocates: with
// AllocateRate 1 (burst 2) one source makes 2 allocations (4 Allocate
// requests) in a row. (One shared bucket of burst 2 dropped the second
// allocation's first request.) TestAllocateLimiterKinds counts the buckets
// exactly.
func TestAllocateRateCountsAuthenticated(t *testing.T) {
	s := startServer(t, func(c *Config) { c.AllocateRate = 1 })
	srv := s.addr(t, TransportUDP)
	for i := 0; i < 2; i++ {
		c := newRawClient(t, srv, "alice", "alicepw")
		res := c.authed(stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedTransportUDP())
		if res.Type.Class != stun.ClassSuccessResponse {
			t.Fatalf("allocation %d: %v (error %d)", i, res.Type, errorCode(res))
		}
	}
	if got := s.metric(t, "switchboard_turn_dropped_total", "reason", "rate_limited"); got != 0 {
		t.Errorf("rate limited = %v, want 0", got)
	}
}

func TestHasIntegrity(t *testing.T) {
	plain, _ := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
		requestedTransportUDP(), stun.NewUsername("alice"), stun.Fingerprint)
	signed, _ := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
		requestedTransportUDP(), stun.NewUsername("alice"), stun.NewRealm(testRealm), stun.NewNonce("n"),
		stun.NewLongTermIntegrity("alice", testRealm, "alicepw"), stun.Fingerprint)
	if hasIntegrity(plain.Raw) {
		t.Error("plain Allocate seen as authenticated")
	}
	if !hasIntegrity(signed.Raw) {
		t.Error("signed Allocate seen as unauthenticated")
	}
	// A length running past the end stops the walk.
	bad := append([]byte(nil), plain.Raw[:24]...)
	bad[22], bad[23] = 0xff, 0xff
	if hasIntegrity(bad) || hasIntegrity(plain.Raw[:20]) {
		t.Error("truncated message seen as authenticated")
	}
}

func TestAllocateLimiterKinds(t *testing.T) {
	l := newAllocateLimiter(10) // authenticated burst 20, unauthenticated burst 40
	a := netip.MustParseAddr("192.0.2.1")
	now := time.Unix(1000, 0)
	plain, _ := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedTransportUDP())
	signed, _ := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedTransportUDP(),
		stun.NewUsername("alice"), stun.NewRealm(testRealm), stun.NewNonce("n"), stun.NewLongTermIntegrity("alice", testRealm, "pw"))
	count := func(msg []byte) int {
		n := 0
		for i := 0; i < 100; i++ {
			if l.allowAllocate(msg, a, now) {
				n++
			}
		}
		return n
	}
	if n := count(plain.Raw); n != 40 {
		t.Errorf("unauthenticated burst %d, want 40", n)
	}
	if n := count(signed.Raw); n != 20 {
		t.Errorf("authenticated burst %d after the unauthenticated one, want 20", n)
	}
	if !l.allowConn(a, now) {
		t.Error("connection limited by Allocate requests")
	}
	if u := newAllocateLimiter(-1); !u.allowAllocate(signed.Raw, a, now) || !u.allowConn(a, now) {
		t.Error("unlimited limiter refused")
	}
}

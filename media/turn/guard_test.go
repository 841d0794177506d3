package turn

import (
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// fakeGuard bans a source IP after limit failures and records what it is
// told, per "ip user".
type fakeGuard struct {
	limit int

	mu        sync.Mutex
	fails     map[netip.Addr]int
	failed    map[string]int
	succeeded map[string]int
}

func newFakeGuard(limit int) *fakeGuard {
	return &fakeGuard{limit: limit, fails: map[netip.Addr]int{}, failed: map[string]int{}, succeeded: map[string]int{}}
}

func (g *fakeGuard) Banned(src netip.AddrPort, _ string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()

	return g.fails[src.Addr().Unmap()] >= g.limit
}

func (g *fakeGuard) Fail(src netip.AddrPort, user string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.fails[src.Addr().Unmap()]++
	g.failed[src.Addr().Unmap().String()+" "+user]++
}

func (g *fakeGuard) Succeed(src netip.AddrPort, user string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.succeeded[src.Addr().Unmap().String()+" "+user]++
}

func (g *fakeGuard) counts(key string) (failed, succeeded int) {
	g.mu.Lock()
	defer g.mu.Unlock()

	return g.failed[key], g.succeeded[key]
}

func TestAuthKeyGuard(t *testing.T) {
	g := newFakeGuard(3)
	s := startServer(t, func(c *Config) { c.Guard = g })
	src := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 4000}
	expired, _ := RESTCredentials(testSecret, "carol", -time.Second, time.Now())

	// A wrong realm or an expired REST credential is no guess.
	s.authKey("alice", "other.test", src)
	s.authKey(expired, testRealm, src)
	if f, _ := g.counts("192.0.2.1 carol"); f != 0 {
		t.Errorf("an expired REST credential counted as a failure")
	}
	if f, _ := g.counts("192.0.2.1 alice"); f != 0 {
		t.Errorf("a wrong realm counted as a failure")
	}
	// Unknown users count, under their name.
	s.authKey("mallory", testRealm, src)
	s.authKey("12345678901:mallory", testRealm, src) // REST shape: counted against the user after the expiry
	if f, _ := g.counts("192.0.2.1 mallory"); f != 1 {
		t.Errorf("unknown user: %d failures counted, want 1", f)
	}
	if _, ok := s.authKey("alice", testRealm, src); !ok {
		t.Fatal("alice refused before the ban")
	}
	g.Fail(netip.MustParseAddrPort("192.0.2.1:1"), "x")
	g.Fail(netip.MustParseAddrPort("192.0.2.1:1"), "x")
	if key, ok := s.authKey("alice", testRealm, src); ok || key != nil {
		t.Error("a banned source got alice's key")
	}
	restUser, _ := RESTCredentials(testSecret, "alice", time.Minute, time.Now())
	if _, ok := s.authKey(restUser, testRealm, src); ok {
		t.Error("a banned source got a REST key")
	}
	if _, ok := s.authKey("alice", testRealm, &net.UDPAddr{IP: net.IPv4(192, 0, 2, 2), Port: 4000}); !ok {
		t.Error("another source is refused")
	}
}

// TestTURNGuardOverUDP drives the guard with pion's own client: wrong
// passwords (long-term and REST) are reported as failures by pion's
// MESSAGE-INTEGRITY verdict, a right one as a success, and a banned source
// gets 401 even with the right password while another source is served.
func TestTURNGuardOverUDP(t *testing.T) {
	g := newFakeGuard(3)
	s := startServer(t, func(c *Config) { c.Guard = g })
	srv := s.addr(t, TransportUDP)

	good := newUDPClient(t, srv, "alice", "alicepw")
	alloc, err := good.Allocate()
	if err != nil {
		t.Fatalf("allocate with the right password: %v", err)
	}
	_ = alloc.Close()
	if _, n := g.counts("127.0.0.1 alice"); n == 0 {
		t.Error("a verified allocation was not reported as a success")
	}

	wrong := newUDPClient(t, srv, "alice", "WRONG")
	if _, err := wrong.Allocate(); turnErrorCode(err) != 401 {
		t.Fatalf("wrong password: %v (code %d), want 401", err, turnErrorCode(err))
	}
	restUser, _ := RESTCredentials(testSecret, "alice", time.Hour, time.Now())
	forged := newUDPClient(t, srv, restUser, "Zm9yZ2Vk")
	if _, err := forged.Allocate(); turnErrorCode(err) != 401 {
		t.Fatalf("forged REST password: %v (code %d), want 401", err, turnErrorCode(err))
	}
	if f, _ := g.counts("127.0.0.1 alice"); f != 2 {
		t.Fatalf("failures for alice = %d, want 2 (one per wrong MESSAGE-INTEGRITY)", f)
	}
	unknown := newUDPClient(t, srv, "nobody", "x")
	if _, err := unknown.Allocate(); turnErrorCode(err) != 401 {
		t.Fatalf("unknown user: %v (code %d), want 401", err, turnErrorCode(err))
	}

	// Three failures from 127.0.0.1: banned. The right password now gets
	// 401 too.
	again := newUDPClient(t, srv, "alice", "alicepw")
	if _, err := again.Allocate(); turnErrorCode(err) != 401 {
		t.Fatalf("banned source, right password: %v (code %d), want 401", err, turnErrorCode(err))
	}
	if got := s.Allocations(); got != 0 {
		t.Errorf("%d allocations held", got)
	}
}

// TestBannedSourceGets401 checks that a banned source with valid
// credentials and a good nonce is answered 401 (RFC 8489 §9.2.4), unsigned:
// authKey gives pion/turn no key for it.
func TestBannedSourceGets401(t *testing.T) {
	g := newFakeGuard(1)
	s := startServer(t, func(c *Config) { c.Guard = g })
	c := newRawClient(t, s.addr(t, TransportUDP), "bob", "bobpw")
	res := c.authed(stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedTransportUDP())
	if errorCode(res) != 0 {
		t.Fatalf("allocate before the ban: error %d", errorCode(res))
	}
	g.Fail(netip.MustParseAddrPort("127.0.0.1:1"), "x")
	// The nonce is still good: the refused key must come back as 401.
	res = c.roundTrip(2*time.Second, stun.NewType(stun.MethodRefresh, stun.ClassRequest), lifetime(0),
		c.user, c.realm, c.nonce, c.key, stun.Fingerprint)
	if code := errorCode(res); code != 401 {
		t.Fatalf("refresh from a banned source: error %d, want 401", code)
	}
	if res.Contains(stun.AttrMessageIntegrity) {
		t.Error("the 401 is signed with the refused key")
	}
}

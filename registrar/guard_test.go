package registrar

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/siptest"
)

// guardClock is a settable clock for a Guard.
type guardClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *guardClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *guardClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestGuard(t *testing.T, cfg GuardConfig) (*Guard, *guardClock, *logLines) {
	t.Helper()
	lines := &logLines{}
	g := NewGuard(cfg, slog.New(slog.NewTextHandler(lines, nil)))
	clock := &guardClock{t: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	g.now = clock.now
	return g, clock, lines
}

// logLines collects what a text handler writes.
type logLines struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logLines) count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), substr)
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func TestGuardPerSource(t *testing.T) {
	g, clock, logs := newTestGuard(t, GuardConfig{PerSource: 3, PerUser: -1, Window: time.Minute, Ban: 5 * time.Minute})
	src := ap("192.0.2.1:5060")
	for i := 0; i < 2; i++ {
		g.Fail(src, fmt.Sprintf("user%d", i))
		if g.Banned(src, "") {
			t.Fatalf("banned after %d failures, budget 3", i+1)
		}
	}
	g.Fail(ap("192.0.2.1:40000"), "other") // another port of the same IP counts
	for _, user := range []string{"", "alice", "nobody"} {
		if !g.Banned(src, user) {
			t.Errorf("Banned(src, %q) = false after 3 failures", user)
		}
	}
	if !g.Banned(ap("[::ffff:192.0.2.1]:1"), "") {
		t.Error("the IPv4-mapped form of a banned source is not banned")
	}
	if g.Banned(ap("192.0.2.2:5060"), "alice") {
		t.Error("another source is banned")
	}
	if left := g.BannedFor(src, ""); left != 5*time.Minute {
		t.Errorf("BannedFor = %v, want 5m", left)
	}
	// Succeeding does not lift a source ban.
	g.Succeed(src, "alice")
	if !g.Banned(src, "alice") {
		t.Error("a success lifted the source ban")
	}
	if n := logs.count("source refused"); n != 1 {
		t.Errorf("ban logged %d times, want once", n)
	}
	clock.add(5*time.Minute - time.Second)
	if !g.Banned(src, "") {
		t.Error("ban ended early")
	}
	clock.add(time.Second)
	if g.Banned(src, "") {
		t.Error("ban did not end after 5m")
	}
	// The window restarts: two more failures do not ban again.
	g.Fail(src, "x")
	g.Fail(src, "x")
	if g.Banned(src, "") {
		t.Error("banned again before the budget is spent in a new window")
	}
}

func TestGuardWindow(t *testing.T) {
	g, clock, _ := newTestGuard(t, GuardConfig{PerSource: 3, PerUser: 3, Window: time.Minute, Ban: time.Hour})
	src := ap("192.0.2.1:5060")
	for i := 0; i < 5; i++ {
		g.Fail(src, "alice")
		clock.add(31 * time.Second) // at most two failures in any window
	}
	if g.Banned(src, "alice") {
		t.Error("failures spread over windows led to a ban")
	}
}

func TestGuardPerUser(t *testing.T) {
	g, clock, logs := newTestGuard(t, GuardConfig{PerSource: 10, PerUser: 4, Window: time.Minute, Ban: 5 * time.Minute})
	phone := ap("198.51.100.7:5060")
	g.Succeed(phone, "alice")
	clock.add(time.Hour)
	// Four strangers, one guess each: no source spends its budget, the
	// user's is spent.
	for i := 1; i <= 4; i++ {
		g.Fail(ap(fmt.Sprintf("203.0.113.%d:5060", i)), "alice")
	}
	stranger := ap("203.0.113.99:5060")
	if !g.Banned(stranger, "alice") {
		t.Fatal("user not banned for a new source after 4 failures")
	}
	if g.Banned(stranger, "bob") || g.Banned(stranger, "") {
		t.Error("the user ban refuses other users or the source alone")
	}
	// The phone that signed in an hour ago still gets in.
	if g.Banned(phone, "alice") {
		t.Error("a source known to the user is refused")
	}
	if g.Banned(ap("198.51.100.7:6000"), "alice") {
		t.Error("the known source's IP on another port is refused")
	}
	// More failures while banned do not log again.
	g.Fail(phone, "alice")
	if n := logs.count("user refused"); n != 1 {
		t.Errorf("user ban logged %d times, want once", n)
	}
	// Known for 24 hours only.
	clock.add(23*time.Hour - time.Minute)
	for i := 1; i <= 4; i++ {
		g.Fail(ap(fmt.Sprintf("203.0.113.%d:5060", i)), "alice")
	}
	if !g.Banned(stranger, "alice") {
		t.Fatal("not banned again")
	}
	if g.Banned(phone, "alice") {
		t.Error("refused 23h59m after its sign-in")
	}
	clock.add(2 * time.Minute)
	if !g.Banned(phone, "alice") {
		t.Error("a sign-in over 24h old still exempts the source")
	}
}

func TestGuardKnownSourcesBounded(t *testing.T) {
	g, _, _ := newTestGuard(t, GuardConfig{PerSource: 10, PerUser: 1, Window: time.Minute, Ban: time.Hour})
	first := ap("10.0.0.1:1")
	g.Succeed(first, "alice")
	for i := 2; i <= maxKnownPerUser+1; i++ {
		g.Succeed(ap(fmt.Sprintf("10.0.0.%d:1", i)), "alice")
	}
	if n := len(g.known["alice"]); n != maxKnownPerUser {
		t.Fatalf("alice has %d known sources, want %d", n, maxKnownPerUser)
	}
	g.Fail(ap("203.0.113.1:1"), "alice")
	if !g.Banned(first, "alice") {
		t.Error("the oldest known source was not the one forgotten")
	}
	if g.Banned(ap(fmt.Sprintf("10.0.0.%d:1", maxKnownPerUser+1)), "alice") {
		t.Error("the newest known source is refused")
	}
}

func TestGuardBoundedMemory(t *testing.T) {
	g, clock, _ := newTestGuard(t, GuardConfig{PerSource: 2, PerUser: 2, Window: time.Minute, Ban: time.Hour})
	g.maxEntries = 100
	// Two sources get banned, then a flood of one failure each from many
	// addresses and user names.
	banned := []netip.AddrPort{ap("192.0.2.1:1"), ap("192.0.2.2:1")}
	for _, b := range banned {
		g.Fail(b, "victim")
		g.Fail(b, "victim")
	}
	for i := 0; i < 1000; i++ {
		g.Fail(netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 1), fmt.Sprintf("u%d", i))
		g.Succeed(netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 2, byte(i >> 8), byte(i)}), 1), fmt.Sprintf("k%d", i))
		clock.add(time.Millisecond)
	}
	if n := len(g.sources.m); n > g.maxEntries {
		t.Errorf("%d source entries, bound %d", n, g.maxEntries)
	}
	if n := len(g.users.m); n > g.maxEntries {
		t.Errorf("%d user entries, bound %d", n, g.maxEntries)
	}
	if n := len(g.known); n > g.maxEntries {
		t.Errorf("%d known users, bound %d", n, g.maxEntries)
	}
	for _, b := range banned {
		if !g.Banned(b, "") {
			t.Errorf("the flood pushed out the ban of %v", b)
		}
	}
	if !g.Banned(ap("203.0.113.5:1"), "victim") {
		t.Error("the flood pushed out the user ban")
	}
}

func TestGuardTrusted(t *testing.T) {
	g, _, _ := newTestGuard(t, GuardConfig{PerSource: 1, PerUser: 1, Window: time.Minute, Ban: time.Hour})
	gw := ap("127.0.0.1:40000")
	g.Trust(gw)
	g.Fail(gw, "alice")
	if g.Banned(gw, "alice") || g.Banned(ap("127.0.0.1:5060"), "alice") {
		t.Error("a trusted source's failures were counted")
	}
	g.Fail(ap("127.0.0.1:5060"), "bob")
	if g.Banned(gw, "bob") {
		t.Error("the trusted source is refused")
	}
	if !g.Banned(ap("127.0.0.1:5061"), "") {
		t.Error("another port of the trusted IP is not banned")
	}
}

func TestGuardDisabledAndNil(t *testing.T) {
	g, _, _ := newTestGuard(t, GuardConfig{PerSource: -1, PerUser: -1})
	for i := 0; i < 100; i++ {
		g.Fail(ap("192.0.2.1:1"), "alice")
	}
	if g.Banned(ap("192.0.2.1:1"), "alice") {
		t.Error("a disabled guard banned")
	}
	var nilGuard *Guard
	nilGuard.Fail(ap("192.0.2.1:1"), "alice")
	nilGuard.Succeed(ap("192.0.2.1:1"), "alice")
	if nilGuard.Banned(ap("192.0.2.1:1"), "alice") {
		t.Error("a nil guard banned")
	}
}

// TestRegisterUserBanSparesKnownPhone drives the per-user budget through
// REGISTER: strangers guessing alice's password from several sources get
// alice refused (403) for new sources, while the phone that registered
// before keeps registering.
func TestRegisterUserBanSparesKnownPhone(t *testing.T) {
	h := newHarness(t, Config{AuthFailures: 10, AuthFailuresPerUser: 3, AuthWindow: time.Minute, Ban: time.Hour})
	alice := h.phone("alice")
	h.mustRegister(alice, alice.Register(3600))

	guess := func(source string) int {
		m := alice.Register(3600)
		res := h.doFrom(source, "UDP", m)
		if res.StatusCode != 401 {
			return res.StatusCode
		}
		m = alice.Retry(m)
		if err := siptest.Authorize(m, res, "MD5", siptest.Credentials{User: "alice", Password: "wrong"}); err != nil {
			t.Fatal(err)
		}
		return h.doFrom(source, "UDP", m).StatusCode
	}
	for i := 1; i <= 3; i++ {
		if got := guess(fmt.Sprintf("203.0.113.%d:5060", i)); got != 401 {
			t.Fatalf("guess %d: got %d, want 401", i, got)
		}
	}
	// A new source is refused even with alice's right password.
	m := alice.Register(3600)
	src := "203.0.113.50:5060"
	res := h.doFrom(src, "UDP", m)
	wantStatus(t, res, 401)
	wantStatus(t, h.doFrom(src, "UDP", alice.Authenticate(m, res, "MD5")), 403)
	// Bob is not affected there.
	bob := h.phone("bob")
	m = bob.Register(3600)
	res = h.doFrom(src, "UDP", m)
	wantStatus(t, res, 401)
	wantStatus(t, h.doFrom(src, "UDP", bob.Authenticate(m, res, "MD5")), 200)
	// Alice's own phone still registers.
	h.mustRegister(alice, alice.Register(3600))
}

func TestGuardUserNamesBounded(t *testing.T) {
	g, _, _ := newTestGuard(t, GuardConfig{PerSource: 100, PerUser: 1, Window: time.Minute, Ban: time.Hour})
	long := strings.Repeat("a", 65536)
	g.Fail(ap("192.0.2.1:1"), long)
	g.Fail(ap("192.0.2.1:1"), "bad name@x")
	g.Succeed(ap("192.0.2.1:1"), long)
	if len(g.users.m) != 0 || len(g.known) != 0 {
		t.Errorf("names that cannot be users were stored: %d failure keys, %d known", len(g.users.m), len(g.known))
	}
	if g.sources.m[netip.MustParseAddr("192.0.2.1")].failures != 2 {
		t.Error("their failures were not counted against the source")
	}
}

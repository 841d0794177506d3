package registrar

import (
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// Guard counts authentication failures per source IP and refuses a source
// that fails too often, as fail2ban does for Kamailio and Asterisk.
type Guard struct {
	max    int
	window time.Duration
	ban    time.Duration
	log    *slog.Logger
	now    func() time.Time

	mu      sync.Mutex
	sources map[netip.Addr]*guardEntry
	trusted map[netip.AddrPort]bool // never banned nor counted
}

// Trust exempts one source address and port from banning: the WebRTC
// gateway, which signs every browser user in from its one SIP socket and
// limits failures per browser itself. Other sources on the same IP are
// still counted and banned.
func (g *Guard) Trust(src netip.AddrPort) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.trusted == nil {
		g.trusted = map[netip.AddrPort]bool{}
	}
	g.trusted[unmapAP(src)] = true
}

func unmapAP(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

type guardEntry struct {
	start    time.Time
	failures int
	until    time.Time
}

// maxGuardEntries bounds the memory a flood from many addresses can take.
const maxGuardEntries = 100000

// NewGuard returns a Guard that bans a source for ban after max failures
// within window. max <= 0 disables banning.
func NewGuard(max int, window, ban time.Duration, log *slog.Logger) *Guard {
	if log == nil {
		log = slog.Default()
	}
	return &Guard{max: max, window: window, ban: ban, log: log, now: time.Now, sources: make(map[netip.Addr]*guardEntry)}
}

// Fail records an authentication failure from source (counted per IP).
func (g *Guard) Fail(source netip.AddrPort) {
	if g == nil || g.max <= 0 || !source.IsValid() {
		return
	}
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.trusted[unmapAP(source)] {
		return
	}
	src := source.Addr().Unmap()
	e := g.sources[src]
	if e == nil {
		if len(g.sources) >= maxGuardEntries {
			g.sweepLocked(now)
		}
		e = &guardEntry{start: now}
		g.sources[src] = e
	}
	if now.Sub(e.start) > g.window {
		e.start, e.failures = now, 0
	}
	e.failures++
	if e.failures >= g.max && !now.Before(e.until) {
		e.until = now.Add(g.ban)
		g.log.Warn("source refused after repeated authentication failures",
			"source", src.String(), "failures", e.failures, "window", g.window, "ban", g.ban)
	}
}

// Banned reports whether source's IP is currently refused.
func (g *Guard) Banned(source netip.AddrPort) bool {
	if g == nil || g.max <= 0 {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.trusted[unmapAP(source)] {
		return false
	}
	e := g.sources[source.Addr().Unmap()]
	return e != nil && g.now().Before(e.until)
}

// sweepLocked drops entries that are neither banned nor inside their window.
func (g *Guard) sweepLocked(now time.Time) {
	for k, e := range g.sources {
		if now.After(e.until) && now.Sub(e.start) > g.window {
			delete(g.sources, k)
		}
	}
	if len(g.sources) >= maxGuardEntries {
		g.sources = make(map[netip.Addr]*guardEntry)
	}
}

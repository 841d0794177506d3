package registrar

import (
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// Guard is the switch's one ban for every password check: SIP digest
// (Authenticator), TURN long-term and REST credentials, HTTP Basic on
// /api/turn and the web phone's sign-in all report their failures and
// successes here and ask it before checking a password, as fail2ban does for
// Kamailio and Asterisk across their services.
//
// It keeps two budgets, both over the same window:
//   - per source IP: a source that fails PerSource times is refused, for
//     every user, for Ban;
//   - per user name: a user that fails PerUser times (from any sources) is
//     refused for Ban, except from sources that signed in successfully as
//     that user within KnownFor (24 h): strangers guessing a password cannot
//     lock the real user out of the phones already in use.
//
// Memory is bounded (maxGuardEntries keys per table, maxKnownPerUser known
// sources per user). Each ban is logged once, when it starts. A Guard is safe
// for concurrent use; a nil *Guard refuses nothing and counts nothing.
type Guard struct {
	cfg GuardConfig
	log *slog.Logger
	now func() time.Time
	// maxEntries bounds each table; maxGuardEntries except in tests.
	maxEntries int

	mu      sync.Mutex
	sources failureTable[netip.Addr]
	users   failureTable[string]
	known   map[string][]knownSource // user -> sources that authenticated as user
	trusted map[netip.AddrPort]bool  // never banned nor counted
}

// GuardConfig sets a Guard's budgets. A budget <= 0 disables that budget.
type GuardConfig struct {
	// PerSource failures from one source IP within Window ban the source.
	PerSource int
	// PerUser failures for one user name within Window ban the user from
	// sources not known to it.
	PerUser int
	// Window is the counting window (default 1m).
	Window time.Duration
	// Ban is how long a ban lasts (default 5m).
	Ban time.Duration
	// KnownFor is how long a successful sign-in keeps its source exempt
	// from the user's ban (default 24h).
	KnownFor time.Duration
}

// Bounds on the memory a flood from many addresses or user names can take.
const (
	maxGuardEntries = 100000
	maxKnownPerUser = 16
)

type guardEntry struct {
	start    time.Time
	failures int
	until    time.Time
}

type knownSource struct {
	addr netip.Addr
	at   time.Time
}

// NewGuard returns a Guard with cfg's budgets. log receives one Warn per
// ban; nil means slog.Default.
func NewGuard(cfg GuardConfig, log *slog.Logger) *Guard {
	if cfg.Window <= 0 {
		cfg.Window = time.Minute
	}
	if cfg.Ban <= 0 {
		cfg.Ban = 5 * time.Minute
	}
	if cfg.KnownFor <= 0 {
		cfg.KnownFor = 24 * time.Hour
	}
	if log == nil {
		log = slog.Default()
	}
	return &Guard{
		cfg: cfg, log: log, now: time.Now, maxEntries: maxGuardEntries,
		sources: failureTable[netip.Addr]{m: map[netip.Addr]*guardEntry{}},
		users:   failureTable[string]{m: map[string]*guardEntry{}},
		known:   map[string][]knownSource{},
	}
}

// Trust exempts one source address and port from banning and counting: the
// WebRTC gateway's SIP socket, from which every browser user signs in (the
// gateway reports each browser's failures to this Guard itself). Other
// sources on the same IP are still counted and banned.
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

// Fail records a failed password check from source for user (the name the
// client gave, known or not; "" when there is none). Only names that could
// be users (ValidName) are counted per user, which bounds each key's size.
func (g *Guard) Fail(source netip.AddrPort, user string) {
	if g == nil || !source.IsValid() {
		return
	}
	g.untrusted(source, func(src netip.Addr, now time.Time) {
		if g.cfg.PerSource > 0 {
			if n, banned := g.sources.fail(src, g.cfg.PerSource, g.cfg.Window, g.cfg.Ban, now, g.maxEntries); banned {
				g.log.Warn("source refused after repeated authentication failures",
					"source", src.String(), "user", user, "failures", n, "window", g.cfg.Window, "ban", g.cfg.Ban)
			}
		}
		if g.cfg.PerUser > 0 && ValidName(user) {
			if n, banned := g.users.fail(user, g.cfg.PerUser, g.cfg.Window, g.cfg.Ban, now, g.maxEntries); banned {
				g.log.Warn("user refused from unknown sources after repeated authentication failures",
					"user", user, "last_source", src.String(), "failures", n, "window", g.cfg.Window, "ban", g.cfg.Ban)
			}
		}
	})
}

// Succeed records that source authenticated as user: the source is then
// exempt from a ban of that user for KnownFor. It does not clear failures
// counted against the source (one valid account must not buy unlimited
// guesses at others).
func (g *Guard) Succeed(source netip.AddrPort, user string) {
	if g == nil || !source.IsValid() || !ValidName(user) || g.cfg.PerUser <= 0 {
		return
	}
	g.untrusted(source, func(src netip.Addr, now time.Time) { g.rememberLocked(user, src, now) })
}

// rememberLocked records that src authenticated as user at now.
func (g *Guard) rememberLocked(user string, src netip.Addr, now time.Time) {
	list, ok := g.known[user]
	for i := range list {
		if list[i].addr == src {
			list[i].at = now
			return
		}
	}
	if !ok && len(g.known) >= g.maxEntries {
		g.sweepKnownLocked(now)
		if len(g.known) >= g.maxEntries {
			return // only real users get here; a full table keeps those it has
		}
	}
	if len(list) >= maxKnownPerUser {
		oldest := 0
		for i := range list {
			if list[i].at.Before(list[oldest].at) {
				oldest = i
			}
		}
		list[oldest] = knownSource{addr: src, at: now}
	} else {
		list = append(list, knownSource{addr: src, at: now})
	}
	g.known[user] = list
}

// Banned reports whether a password check from source for user must be
// refused now. user "" asks about the source alone.
func (g *Guard) Banned(source netip.AddrPort, user string) bool {
	return g.BannedFor(source, user) > 0
}

// BannedFor is Banned with the time left until the refusal ends (for
// Retry-After), or 0 when the check may go ahead.
func (g *Guard) BannedFor(source netip.AddrPort, user string) time.Duration {
	if g == nil {
		return 0
	}
	var left time.Duration
	g.untrusted(source, func(src netip.Addr, now time.Time) {
		if until, ok := g.sources.banned(src, now); ok {
			left = until.Sub(now)
		}
		if user != "" {
			if until, ok := g.users.banned(user, now); ok && !g.knownLocked(user, src, now) {
				left = max(left, until.Sub(now))
			}
		}
	})
	return left
}

// untrusted runs f under g.mu with source's address and the time, unless
// source is trusted (Trust): trusted sources are neither counted nor banned.
func (g *Guard) untrusted(source netip.AddrPort, f func(src netip.Addr, now time.Time)) {
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.trusted[unmapAP(source)] {
		return
	}
	f(source.Addr().Unmap(), now)
}

// knownLocked reports whether src authenticated as user within KnownFor.
func (g *Guard) knownLocked(user string, src netip.Addr, now time.Time) bool {
	for _, k := range g.known[user] {
		if k.addr == src {
			return now.Sub(k.at) <= g.cfg.KnownFor
		}
	}
	return false
}

// sweepKnownLocked drops known sources older than KnownFor.
func (g *Guard) sweepKnownLocked(now time.Time) {
	for user, list := range g.known {
		kept := list[:0]
		for _, k := range list {
			if now.Sub(k.at) <= g.cfg.KnownFor {
				kept = append(kept, k)
			}
		}
		if len(kept) == 0 {
			delete(g.known, user)
		} else {
			g.known[user] = kept
		}
	}
}

// failureTable counts failures per key (source IP or user name).
type failureTable[K comparable] struct {
	m map[K]*guardEntry
}

// fail counts one failure for k and reports the count and whether a ban
// starts with it. A full table first drops what it can; when every entry is
// a live ban it keeps them and does not count k.
func (t *failureTable[K]) fail(k K, limit int, window, ban time.Duration, now time.Time, maxEntries int) (int, bool) {
	e := t.m[k]
	if e == nil {
		if len(t.m) >= maxEntries {
			t.sweep(now, window, maxEntries)
			if len(t.m) >= maxEntries {
				return 0, false
			}
		}
		e = &guardEntry{start: now}
		t.m[k] = e
	}
	if now.Sub(e.start) > window {
		e.start, e.failures = now, 0
	}
	e.failures++
	if e.failures >= limit && !now.Before(e.until) {
		e.until = now.Add(ban)
		return e.failures, true
	}
	return e.failures, false
}

// banned returns when k's ban ends, if it is banned now.
func (t *failureTable[K]) banned(k K, now time.Time) (time.Time, bool) {
	e := t.m[k]
	if e == nil || !now.Before(e.until) {
		return time.Time{}, false
	}
	return e.until, true
}

// sweep drops entries that are neither banned nor inside their window and,
// when the table is still full, every entry that is not banned: live bans
// are the last thing a flood of new keys may push out.
func (t *failureTable[K]) sweep(now time.Time, window time.Duration, maxEntries int) {
	for k, e := range t.m {
		if !now.Before(e.until) && now.Sub(e.start) > window {
			delete(t.m, k)
		}
	}
	if len(t.m) < maxEntries {
		return
	}
	for k, e := range t.m {
		if !now.Before(e.until) {
			delete(t.m, k)
		}
	}
}

package turn

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// maxLimiterEntries bounds the memory of the per-source limiter. Beyond it
// (a flood from many spoofed sources) unknown sources are let through rather
// than tracked: a per-source limit cannot stop such a flood anyway.
const maxLimiterEntries = 1 << 16

// sourceLimiter is a token bucket (rate.Limiter) per source IP address, in
// a table of at most maxLimiterEntries sources.
type sourceLimiter struct {
	rate  rate.Limit // tokens per second; <= 0 means unlimited
	burst int

	mu        sync.Mutex
	buckets   map[netip.Addr]*rate.Limiter
	lastSweep time.Time
}

func newSourceLimiter(perSecond int) *sourceLimiter {
	return &sourceLimiter{
		rate:    rate.Limit(perSecond),
		burst:   2 * perSecond,
		buckets: make(map[netip.Addr]*rate.Limiter),
	}
}

// allow takes one token from ip's bucket and reports whether there was one.
// A source seen for the first time starts with a full bucket.
func (l *sourceLimiter) allow(ip netip.Addr, now time.Time) bool {
	if l == nil || l.rate <= 0 {
		return true
	}
	// l.mu is held across AllowN so that a sweep never forgets a bucket
	// that is being drawn from.
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[ip]
	if b == nil {
		if len(l.buckets) >= maxLimiterEntries/2 {
			l.sweep(now)
		}
		if len(l.buckets) >= maxLimiterEntries {
			return true
		}
		b = rate.NewLimiter(l.rate, l.burst)
		l.buckets[ip] = b
	}

	return b.AllowN(now, 1)
}

// sweep forgets buckets that have refilled completely (they are equivalent to
// a fresh bucket). It runs at most once a second; l.mu must be held.
func (l *sourceLimiter) sweep(now time.Time) {
	if now.Sub(l.lastSweep) < time.Second {
		return
	}
	l.lastSweep = now
	for ip, b := range l.buckets {
		if b.TokensAt(now) >= float64(l.burst) {
			delete(l.buckets, ip)
		}
	}
}

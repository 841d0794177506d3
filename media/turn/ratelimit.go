package turn

import (
	"net/netip"
	"sync"
	"time"
)

// maxLimiterEntries bounds the memory of the per-source limiter. Beyond it
// (a flood from many spoofed sources) unknown sources are let through rather
// than tracked: a per-source limit cannot stop such a flood anyway.
const maxLimiterEntries = 1 << 16

// sourceLimiter is a token bucket per source IP address.
type sourceLimiter struct {
	rate  float64 // tokens per second; <= 0 means unlimited
	burst float64

	mu        sync.Mutex
	buckets   map[netip.Addr]*bucket
	lastSweep time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newSourceLimiter(perSecond int) *sourceLimiter {
	return &sourceLimiter{
		rate:    float64(perSecond),
		burst:   2 * float64(perSecond),
		buckets: make(map[netip.Addr]*bucket),
	}
}

// allow takes one token from ip's bucket and reports whether there was one.
func (l *sourceLimiter) allow(ip netip.Addr, now time.Time) bool {
	if l == nil || l.rate <= 0 {
		return true
	}
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
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[ip] = b
	}
	if elapsed := now.Sub(b.last).Seconds(); elapsed > 0 {
		b.tokens = min(l.burst, b.tokens+elapsed*l.rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--

	return true
}

// sweep forgets buckets that have refilled completely (they are equivalent to
// a fresh bucket). It runs at most once a second.
func (l *sourceLimiter) sweep(now time.Time) {
	if now.Sub(l.lastSweep) < time.Second {
		return
	}
	l.lastSweep = now
	full := time.Duration(l.burst / l.rate * float64(time.Second))
	for ip, b := range l.buckets {
		if now.Sub(b.last) >= full {
			delete(l.buckets, ip)
		}
	}
}

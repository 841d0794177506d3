package sip

import (
	"net/netip"
	"time"
)

// sourceTable is per-source-IP state of bounded size, as the flood limit
// and the strangers' limits keep it: when the table is full, a new source
// first makes it forget what is stale, and when it is still full the source
// gets no entry (the caller decides what that means). The owner's mutex
// guards it.
type sourceTable[E any] struct {
	max   int
	fresh func(now time.Time) *E         // the entry of a new source
	stale func(e *E, now time.Time) bool // what a sweep may forget
	m     map[netip.Addr]*E
}

func newSourceTable[E any](max int, fresh func(time.Time) *E, stale func(*E, time.Time) bool) sourceTable[E] {
	return sourceTable[E]{max: max, fresh: fresh, stale: stale, m: map[netip.Addr]*E{}}
}

// entry returns ip's entry, making one for a new source, or nil when the
// table is full of entries that are not stale.
func (t *sourceTable[E]) entry(ip netip.Addr, now time.Time) *E {
	e := t.m[ip]
	if e == nil {
		if len(t.m) >= t.max {
			t.sweep(now)
			if len(t.m) >= t.max {
				return nil
			}
		}
		e = t.fresh(now)
		t.m[ip] = e
	}
	return e
}

// sweep forgets the entries that are stale at now.
func (t *sourceTable[E]) sweep(now time.Time) {
	for k, e := range t.m {
		if t.stale(e, now) {
			delete(t.m, k)
		}
	}
}

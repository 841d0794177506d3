package media

import (
	"sync"
	"time"
)

// portPool hands out even/odd UDP port pairs from a range. Free pairs are
// handed out in FIFO order, so the whole range is used round-robin; released
// pairs rest in a quarantine queue for a fixed time before they become free
// again. Because the quarantine time is the same for every pair, the queue is
// ordered by expiry and both operations are O(1) amortised.
type portPool struct {
	first      int // lowest even port
	quarantine time.Duration
	now        func() time.Time

	mu    sync.Mutex
	free  ring[int32]
	quar  ring[quarEntry]
	inUse int
}

type quarEntry struct {
	pair  int32
	until int64 // unix nanoseconds
}

func newPortPool(min, max int, quarantine time.Duration, now func() time.Time) *portPool {
	n := pairCount(min, max)
	p := &portPool{
		first:      firstPair(min),
		quarantine: quarantine,
		now:        now,
		free:       newRing[int32](n),
		quar:       newRing[quarEntry](n),
	}
	for i := 0; i < n; i++ {
		p.free.push(int32(i))
	}
	return p
}

// port returns the RTP (even) port of a pair.
func (p *portPool) port(pair int32) int { return p.first + 2*int(pair) }

// pairOf returns the pair a port belongs to.
func (p *portPool) pairOf(port int) int32 { return int32((port - p.first) / 2) }

// size returns the number of pairs in the pool.
func (p *portPool) size() int { return p.free.cap() }

// get takes the next free pair, or reports false if none is free.
func (p *portPool) get() (int32, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expireLocked()
	pair, ok := p.free.pop()
	if ok {
		p.inUse++
	}
	return pair, ok
}

// release puts a pair that carried traffic into quarantine.
func (p *portPool) release(pair int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inUse--
	if p.quarantine <= 0 {
		p.free.push(pair)
		return
	}
	p.quar.push(quarEntry{pair: pair, until: p.now().Add(p.quarantine).UnixNano()})
}

// putBack returns a pair that never carried traffic (its bind failed in a
// way that is not about the port, or the stream's other pair could not be
// had) to the free queue without quarantine.
func (p *portPool) putBack(pair int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inUse--
	p.free.push(pair)
}

// counts returns the number of free, quarantined and used pairs.
func (p *portPool) counts() (free, quarantined, used int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expireLocked()
	return p.free.len(), p.quar.len(), p.inUse
}

func (p *portPool) expireLocked() {
	if p.quar.len() == 0 {
		return
	}
	now := p.now().UnixNano()
	for {
		e, ok := p.quar.peek()
		if !ok || e.until > now {
			return
		}
		p.quar.pop()
		p.free.push(e.pair)
	}
}

// ring is a fixed-capacity FIFO queue.
type ring[T any] struct {
	buf  []T
	head int
	n    int
}

func newRing[T any](capacity int) ring[T] { return ring[T]{buf: make([]T, capacity)} }

func (r *ring[T]) cap() int { return len(r.buf) }
func (r *ring[T]) len() int { return r.n }

// push appends v. A full ring would mean a pair was released twice; the
// extra copy is dropped rather than corrupting the queue.
func (r *ring[T]) push(v T) {
	if r.n == len(r.buf) {
		return
	}
	r.buf[(r.head+r.n)%len(r.buf)] = v
	r.n++
}

func (r *ring[T]) peek() (T, bool) {
	if r.n == 0 {
		var zero T
		return zero, false
	}
	return r.buf[r.head], true
}

func (r *ring[T]) pop() (T, bool) {
	v, ok := r.peek()
	if ok {
		var zero T
		r.buf[r.head] = zero
		r.head = (r.head + 1) % len(r.buf)
		r.n--
	}
	return v, ok
}

package media

import (
	"sync"
	"testing"
	"time"
)

// fakeClock is a manual clock for Config.now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestPairCount(t *testing.T) {
	tests := []struct{ min, max, first, pairs int }{
		{10000, 20000, 10000, 5000},
		{10001, 20000, 10002, 4999},
		{10000, 10007, 10000, 4},
		{10000, 10006, 10000, 3},
		{10001, 10002, 10002, 0},
		{65534, 65535, 65534, 1},
	}
	for _, tt := range tests {
		if f, n := firstPair(tt.min), pairCount(tt.min, tt.max); f != tt.first || n != tt.pairs {
			t.Errorf("%d-%d: first %d pairs %d, want %d %d", tt.min, tt.max, f, n, tt.first, tt.pairs)
		}
	}
}

func TestPortPoolQuarantine(t *testing.T) {
	clk := newFakeClock()
	p := newPortPool(20000, 20007, 30*time.Second, clk.now)
	if p.size() != 4 {
		t.Fatalf("size = %d, want 4", p.size())
	}
	var got []int
	for i := 0; i < 4; i++ {
		pair, ok := p.get()
		if !ok {
			t.Fatalf("get %d: exhausted", i)
		}
		got = append(got, p.port(pair))
	}
	if want := []int{20000, 20002, 20004, 20006}; !equalInts(got, want) {
		t.Fatalf("ports %v, want %v", got, want)
	}
	if _, ok := p.get(); ok {
		t.Fatal("fifth get succeeded on 4 pairs")
	}

	p.release(p.pairOf(20002))
	clk.advance(10 * time.Second)
	p.release(p.pairOf(20006))
	if _, ok := p.get(); ok {
		t.Fatal("a quarantined pair was handed out at once")
	}
	if f, q, u := p.counts(); f != 0 || q != 2 || u != 2 {
		t.Fatalf("counts = %d free %d quarantined %d used, want 0 2 2", f, q, u)
	}
	clk.advance(20*time.Second - time.Nanosecond)
	if _, ok := p.get(); ok {
		t.Fatal("a pair left quarantine early")
	}
	clk.advance(time.Nanosecond)
	pair, ok := p.get()
	if !ok || p.port(pair) != 20002 {
		t.Fatalf("get after quarantine = %d %v, want 20002", p.port(pair), ok)
	}
	if _, ok := p.get(); ok {
		t.Fatal("second pair left quarantine early")
	}
	clk.advance(10 * time.Second)
	if pair, ok := p.get(); !ok || p.port(pair) != 20006 {
		t.Fatalf("get = %d %v, want 20006", p.port(pair), ok)
	}

	// putBack skips quarantine.
	p.putBack(p.pairOf(20000))
	if pair, ok := p.get(); !ok || p.port(pair) != 20000 {
		t.Fatalf("get after putBack = %d %v, want 20000", p.port(pair), ok)
	}
}

func TestPortPoolNoQuarantine(t *testing.T) {
	p := newPortPool(20000, 20003, -1, time.Now)
	a, _ := p.get()
	b, _ := p.get()
	p.release(a)
	if got, ok := p.get(); !ok || got != a {
		t.Fatalf("get = %d %v, want %d at once", got, ok, a)
	}
	p.release(b)
	p.release(b) // a double release must not corrupt the queue
	if f, _, _ := p.counts(); f > 2 {
		t.Fatalf("free = %d, more than the pool", f)
	}
}

func TestPortPoolConcurrent(t *testing.T) {
	p := newPortPool(20000, 21999, 0, time.Now)
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[int32]bool{}
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				pair, ok := p.get()
				if !ok {
					continue
				}
				mu.Lock()
				if seen[pair] {
					t.Errorf("pair %d handed out twice", pair)
				}
				seen[pair] = true
				mu.Unlock()
				mu.Lock()
				delete(seen, pair)
				mu.Unlock()
				p.putBack(pair)
			}
		}()
	}
	wg.Wait()
	if f, q, u := p.counts(); f != 1000 || q != 0 || u != 0 {
		t.Fatalf("counts = %d %d %d, want 1000 0 0", f, q, u)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

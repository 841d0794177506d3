// Package memidle returns to the operating system the memory a burst of
// work leaves behind, once the process has gone quiet.
//
// Go's runtime keeps the heap it grew for a burst (a phone fleet
// re-registering, a flood) mapped: its background scavenger only returns
// what lies above the heap goal of the last collection, about twice the
// live heap with the default GOGC, and an idle process collects only every
// two minutes, so what little it allocates meanwhile piles up towards that
// goal too. A server whose state is small between bursts thus stays at
// twice its state. A Releaser watches the allocation rate: while it is
// quiet, once garbage worth a quarter of the live heap (at least MinGarbage)
// has been allocated since the last collection it returns, it collects and
// returns every free page (debug.FreeOSMemory) — a quiet process is
// collected as with GOGC=25, at a cost proportional to a rate that is low
// by definition. Under load it does nothing.
package memidle

import (
	"context"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Defaults of Config's zero fields.
const (
	// DefaultMinGarbage is the least allocation since the last release
	// that makes a quiet period release again.
	DefaultMinGarbage = 4 << 20
	// DefaultQuietRate is the allocation rate (bytes/s) under which a
	// second counts as quiet.
	DefaultQuietRate = 1 << 20
	// DefaultQuiet is how many quiet seconds in a row allow a release.
	DefaultQuiet = 5 * time.Second
)

// Config configures a Releaser; the zero value uses the defaults.
type Config struct {
	MinGarbage uint64        // bytes allocated since the last release, at least
	QuietRate  uint64        // bytes/s under which a second is quiet
	Quiet      time.Duration // quiet time before releasing
	Logger     *slog.Logger  // nil: slog.Default()
}

// Releaser is the component: New, Serve until ctx ends, Shutdown.
type Releaser struct {
	cfg     Config
	log     *slog.Logger
	read    func() (allocated, live uint64) // cumulative bytes allocated; live heap at the last GC
	release func()

	last     uint64 // allocated at the previous tick
	since    uint64 // allocated since the last release
	quietFor time.Duration
	stopped  chan struct{}
}

// New returns a Releaser for cfg.
func New(cfg Config) *Releaser {
	if cfg.MinGarbage == 0 {
		cfg.MinGarbage = DefaultMinGarbage
	}
	if cfg.QuietRate == 0 {
		cfg.QuietRate = DefaultQuietRate
	}
	if cfg.Quiet <= 0 {
		cfg.Quiet = DefaultQuiet
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	r := &Releaser{cfg: cfg, log: log.With("component", "memidle"), read: readHeap, release: debug.FreeOSMemory,
		stopped: make(chan struct{})}
	r.last, _ = r.read()
	return r
}

// readHeap reads the runtime's cumulative count of bytes allocated and the
// live heap as of the last collection.
func readHeap() (allocated, live uint64) {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}, {Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() == metrics.KindUint64 {
		allocated = s[0].Value.Uint64()
	}
	if s[1].Value.Kind() == metrics.KindUint64 {
		live = s[1].Value.Uint64()
	}
	return allocated, live
}

// Serve checks the allocation rate every second until ctx ends or
// Shutdown is called.
func (r *Releaser) Serve(ctx context.Context) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.stopped:
			return nil
		case <-t.C:
			r.tick(time.Second)
		}
	}
}

// Shutdown stops Serve; calling it again does nothing.
func (r *Releaser) Shutdown(context.Context) error {
	select {
	case <-r.stopped:
	default:
		close(r.stopped)
	}
	return nil
}

// tick accounts for one period of length d and releases when due. It
// reports whether it released.
func (r *Releaser) tick(d time.Duration) bool {
	now, live := r.read()
	delta := now - r.last
	r.last = now
	r.since += delta
	if float64(delta) > float64(r.cfg.QuietRate)*d.Seconds() {
		r.quietFor = 0
		return false
	}
	r.quietFor += d
	if r.quietFor < r.cfg.Quiet || r.since < max(r.cfg.MinGarbage, live/4) {
		return false
	}
	start := time.Now()
	r.release()
	r.since = 0
	r.last, live = r.read()
	r.log.Debug("memory returned to the system", "live_heap", live, "took", time.Since(start))
	return true
}

// Package ratelog bounds how fast log records reach a slog handler, so that
// whatever the network can make loud (unparsable datagrams, refused
// requests, floods) cannot fill a disk. It must not import any other
// package of the switch.
package ratelog

import (
	"context"
	"log/slog"
	"sync/atomic"

	"golang.org/x/time/rate"
)

// Handler passes records on to the next handler at most at a rate; records
// beyond it are dropped and counted, and the next record that passes says
// how many were dropped before it ("suppressed").
type Handler struct {
	next  slog.Handler
	st    *state
	level slog.Level
}

type state struct {
	lim        *rate.Limiter
	suppressed atomic.Uint64
	dropped    atomic.Uint64
}

// New returns a Handler that lets through perSecond records per second on
// average, in bursts of up to burst. Records below level (e.g. debug ones
// that are off in production anyway) are not limited.
func New(next slog.Handler, perSecond float64, burst int, level slog.Level) *Handler {
	return &Handler{next: next, level: level, st: &state{lim: rate.NewLimiter(rate.Limit(perSecond), burst)}}
}

// Enabled reports whether the next handler wants records at l.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

// Handle passes r on, or drops it when the rate is exceeded.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= h.level {
		if !h.st.lim.Allow() {
			h.st.suppressed.Add(1)
			h.st.dropped.Add(1)
			return nil
		}
		if n := h.st.suppressed.Swap(0); n > 0 {
			r = r.Clone()
			r.AddAttrs(slog.Uint64("suppressed", n))
		}
	}
	return h.next.Handle(ctx, r)
}

// WithAttrs returns a Handler sharing this one's rate.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	return &Handler{next: h.next.WithAttrs(as), st: h.st, level: h.level}
}

// WithGroup returns a Handler sharing this one's rate.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{next: h.next.WithGroup(name), st: h.st, level: h.level}
}

// Dropped returns how many records were dropped in all.
func (h *Handler) Dropped() uint64 { return h.st.dropped.Load() }

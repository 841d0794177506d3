package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// live computes the calls' media health every LiveEvery (loss and MOS over
// the last interval need the previous sample) and pushes updates to the
// consoles that have the page open, as server-sent events (HTML Living
// Standard §9.2).
type live struct {
	c *Console

	mu    sync.Mutex
	prev  map[legKey]legSample
	calls []Call
	at    time.Time
	subs  map[chan []byte]struct{}
	done  bool
}

type legKey struct {
	call   string
	stream int
	party  string
}

type legSample struct{ packets, lost uint64 }

// maxLiveRegistrations bounds the registrations sent with each update; the
// API's GET registrations has them all.
const maxLiveRegistrations = 500

// maxLiveCalls bounds the calls sent with each update (the oldest first):
// a page re-draws them every second, and at a busy switch's thousands of
// calls the update's JSON was most of what the live view cost (0.4 % of
// the CPU at 1,000 calls/s). The API's GET calls has them all.
const maxLiveCalls = 200

func newLive(c *Console) *live {
	return &live{c: c, prev: map[legKey]legSample{}, subs: map[chan []byte]struct{}{}}
}

// update is one live update of the console.
type update struct {
	Time               time.Time      `json:"time"`
	Calls              []Call         `json:"calls"`
	CallsTotal         int            `json:"calls_total"`
	Registrations      []Registration `json:"registrations"`
	RegistrationsTotal int            `json:"registrations_total"`
	Allocations        any            `json:"allocations"`
	Draining           bool           `json:"draining"`
	TracedCalls        int            `json:"traced_calls"`
}

func (l *live) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	defer func() {
		l.mu.Lock()
		l.done = true
		for ch := range l.subs {
			close(ch)
			delete(l.subs, ch)
		}
		l.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			l.tick()
		}
	}
}

// tick samples the calls and, when a console listens, sends it an update.
func (l *live) tick() {
	calls := l.compute(true)
	l.mu.Lock()
	n := len(l.subs)
	l.mu.Unlock()
	if n == 0 {
		return
	}
	b := l.encode(calls)
	l.mu.Lock()
	defer l.mu.Unlock()
	for ch := range l.subs {
		select {
		case ch <- b:
		default: // a slow console misses this one
		}
	}
}

func (l *live) encode(calls []Call) []byte {
	c := l.c
	total, regs := c.cfg.RegistrationsHead(maxLiveRegistrations)
	u := update{Time: c.now(), Calls: calls[:min(len(calls), maxLiveCalls)], CallsTotal: len(calls),
		RegistrationsTotal: total, Draining: c.cfg.Switch.Draining()}
	u.Registrations = Registrations(regs)
	if c.cfg.Allocations != nil {
		u.Allocations = c.cfg.Allocations()
	}
	u.TracedCalls, _ = c.cfg.Traces.Len()
	b, err := json.Marshal(u)
	if err != nil {
		c.log.Error("live update not encoded", "error", err)
		return []byte("{}")
	}
	return b
}

// compute snapshots the calls with per-leg loss and MOS since the previous
// sample; keep stores it as the new previous sample.
func (l *live) compute(keep bool) []Call {
	infos := l.c.cfg.Switch.Calls()
	now := l.c.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	next := make(map[legKey]legSample, len(l.prev))
	out := make([]Call, 0, len(infos))
	for _, ci := range infos {
		call := Call{CallInfo: ci, Legs: make([]Leg, 0, len(ci.Media))}
		from := ci.Started
		if !ci.Answered.IsZero() {
			from = ci.Answered
		}
		call.Duration = now.Sub(from).Round(time.Second).Seconds()
		for _, li := range ci.Media {
			k := legKey{ci.ID, li.Stream, li.Party}
			p := l.prev[k]
			dp, dl := li.Packets-min(p.packets, li.Packets), li.Lost-min(p.lost, li.Lost)
			leg := Leg{LegInfo: li, JitterMS: float64(li.Jitter) / float64(time.Millisecond)}
			if dp+dl > 0 {
				leg.LossPct = 100 * float64(dl) / float64(dp+dl)
			}
			if li.Packets > 0 {
				leg.MOS = MOS(leg.LossPct, leg.JitterMS)
			}
			next[k] = legSample{li.Packets, li.Lost}
			call.Legs = append(call.Legs, leg)
		}
		call.Media = nil // in Legs
		out = append(out, call)
	}
	if keep {
		l.prev, l.calls, l.at = next, out, now
	}
	return out
}

// currentCalls returns the calls of the last sample when it is recent,
// else a fresh snapshot.
func (l *live) currentCalls() []Call {
	l.mu.Lock()
	calls, at := l.calls, l.at
	l.mu.Unlock()
	if !at.IsZero() && l.c.now().Sub(at) < 2*l.c.cfg.LiveEvery {
		return calls
	}
	return l.compute(false)
}

// serveSSE streams live updates to a console until it goes or the console
// stops.
func (l *live) serveSSE(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "internal", "streaming unsupported")
		return
	}
	ch := make(chan []byte, 2)
	l.mu.Lock()
	if l.done {
		l.mu.Unlock()
		writeError(w, http.StatusServiceUnavailable, "stopping", "the console is stopping")
		return
	}
	l.subs[ch] = struct{}{}
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.subs, ch)
		l.mu.Unlock()
	}()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	send := func(b []byte) bool {
		if _, err := fmt.Fprintf(w, "event: update\ndata: %s\n\n", b); err != nil {
			return false
		}
		fl.Flush()
		return true
	}
	if !send(l.encode(l.currentCalls())) {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case b, ok := <-ch:
			if !ok || !send(b) {
				return
			}
		}
	}
}

package trunk

import (
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// slotCounter counts calls in progress against a maximum (0: none).
type slotCounter struct {
	max int

	mu     sync.Mutex
	active int
}

func newSlotCounter(max int) *slotCounter { return &slotCounter{max: max} }

// take reserves a slot, or reports false when all are taken. release
// frees it; calling it again does nothing.
func (c *slotCounter) take() (release func(), ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.max > 0 && c.active >= c.max {
		return nil, false
	}
	c.active++
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			c.active--
			c.mu.Unlock()
		})
	}, true
}

// Names of the limits, as Warning texts, logs and metrics name them.
const (
	limitBlocked   = "blocked"
	limitClass     = "class"
	limitPerUser   = "calls_per_user"
	limitPerHour   = "external_calls_per_hour"
	limitMaxCalls  = "max_calls"
	limitNoRoute   = "no_route"
	hourWindow     = time.Hour
	reportInterval = time.Minute // a limit reached is logged at most this often per user (per hour: once per window)
)

// userLimits counts each user's calls over trunks: those in progress
// (Limits.CallsPerUser) and those started in the last hour
// (Limits.ExternalCallsPerHour, a sliding window).
type userLimits struct {
	perUser, perHour int
	now              func() time.Time

	mu      sync.Mutex
	active  map[string]int
	started map[string][]time.Time // the last hour's starts, oldest first
}

func newUserLimits(l Limits) *userLimits {
	return &userLimits{perUser: l.CallsPerUser, perHour: l.ExternalCallsPerHour, now: time.Now,
		active: map[string]int{}, started: map[string][]time.Time{}}
}

// admit counts a new call of user, or returns the limit it would exceed
// ("" when admitted) and, for the hourly one, when a call is possible
// again. release ends the call's count of calls in progress; calling it
// again does nothing.
func (l *userLimits) admit(user string) (release func(), limit string, until time.Time) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	starts := l.started[user]
	for len(starts) > 0 && now.Sub(starts[0]) >= hourWindow {
		starts = starts[1:]
	}
	switch {
	case l.perUser > 0 && l.active[user] >= l.perUser:
		l.keep(user, starts)
		return nil, limitPerUser, now.Add(reportInterval)
	case l.perHour > 0 && len(starts) >= l.perHour:
		l.keep(user, starts)
		return nil, limitPerHour, starts[0].Add(hourWindow)
	}
	l.active[user]++
	if l.perHour > 0 {
		starts = append(starts, now)
	}
	l.keep(user, starts)
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			if l.active[user]--; l.active[user] <= 0 {
				delete(l.active, user)
			}
			l.mu.Unlock()
		})
	}, "", time.Time{}
}

// keep stores a user's starts, forgetting users with none (so the tables
// hold only users with calls in the last hour).
func (l *userLimits) keep(user string, starts []time.Time) {
	if len(starts) == 0 {
		delete(l.started, user)
		return
	}
	l.started[user] = starts
}

// reporter logs each limit reached at most once per window per subject.
type reporter struct {
	log *slog.Logger
	now func() time.Time

	mu   sync.Mutex
	next map[string]time.Time
}

func newReporter(log *slog.Logger) *reporter {
	return &reporter{log: log, now: time.Now, next: map[string]time.Time{}}
}

// report logs that subject (a user or a trunk) reached limit, unless that
// was logged already in this window; until ends the window.
func (r *reporter) report(limit, subject, detail string, until time.Time) {
	now := r.now()
	key := limit + "\x00" + subject
	r.mu.Lock()
	if now.Before(r.next[key]) {
		r.mu.Unlock()
		return
	}
	if until.IsZero() || !until.After(now) {
		until = now.Add(reportInterval)
	}
	r.next[key] = until
	if len(r.next) > 10000 {
		for k, t := range r.next {
			if !now.Before(t) {
				delete(r.next, k)
			}
		}
	}
	r.mu.Unlock()
	r.log.Warn("call limit reached", "limit", limit, "subject", subject, "detail", detail,
		"logged_again_after", fmt.Sprint(until.Sub(now).Round(time.Second)))
}

package admin

import (
	"sync"
	"time"
)

// point is one sample of the statistics.
type point struct {
	Time          time.Time `json:"time"`
	Calls         int       `json:"calls"`         // calls in progress
	Registrations int       `json:"registrations"` // registrations in force
	NewCalls      uint64    `json:"new_calls"`     // calls started since the previous sample
	started       uint64    // calls started since the switch started
}

// Stats is GET stats: samples of the last hour, oldest first.
type Stats struct {
	IntervalSeconds float64 `json:"interval_s"`
	Points          []point `json:"points"`
}

// sampler keeps the last samples in a ring.
type sampler struct {
	every time.Duration
	mu    sync.Mutex
	ring  []point
	next  int
	full  bool
}

func newSampler(every, keep time.Duration) *sampler {
	n := max(int(keep/every), 1)
	return &sampler{every: every, ring: make([]point, n)}
}

func (s *sampler) add(p point) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.next - 1
	if prev < 0 {
		prev = len(s.ring) - 1
	}
	if s.next > 0 || s.full {
		p.NewCalls = p.started - min(s.ring[prev].started, p.started)
	}
	s.ring[s.next] = p
	s.next++
	if s.next == len(s.ring) {
		s.next, s.full = 0, true
	}
}

func (s *sampler) snapshot() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{IntervalSeconds: s.every.Seconds()}
	if s.full {
		st.Points = append(st.Points, s.ring[s.next:]...)
	}
	st.Points = append(st.Points, s.ring[:s.next]...)
	return st
}

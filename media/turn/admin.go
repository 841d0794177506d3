package turn

import (
	"net"
	"sort"
	"sync"
	"time"
)

// Allocation is one TURN allocation in force (RFC 8656 §2.1), for the
// operations console.
type Allocation struct {
	// User is the user the allocation counts against (the SIP user of a
	// REST username).
	User string `json:"user"`
	// Username is the TURN username the client used.
	Username string `json:"username"`
	// Client is the client's transport address, Transport how it reached
	// the server.
	Client    string    `json:"client"`
	Transport string    `json:"transport"`
	Relay     string    `json:"relay"`
	Created   time.Time `json:"created"`
}

// allocations tracks the allocations in force, from pion's lifecycle
// callbacks (pion/turn only counts them).
type allocations struct {
	mu sync.Mutex
	m  map[string]Allocation // by client 5-tuple: src|dst
}

func allocKey(src, dst net.Addr) string { return src.String() + "|" + dst.String() }

func (a *allocations) created(src, dst net.Addr, al Allocation) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m == nil {
		a.m = map[string]Allocation{}
	}
	a.m[allocKey(src, dst)] = al
}

func (a *allocations) deleted(src, dst net.Addr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.m, allocKey(src, dst))
}

// AllocationList returns the allocations in force, oldest first.
func (s *Server) AllocationList() []Allocation {
	s.allocs.mu.Lock()
	out := make([]Allocation, 0, len(s.allocs.m))
	for _, a := range s.allocs.m {
		out = append(out, a)
	}
	s.allocs.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out
}

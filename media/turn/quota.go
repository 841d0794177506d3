package turn

import (
	"sync"
	"time"
)

// reservationTTL bounds how long an admitted Allocate may take to become an
// allocation. pion/turn calls the QuotaHandler before it creates the relay
// socket and reports nothing when that fails, so a reservation that is not
// confirmed by OnAllocationCreated within this time is forgotten.
const reservationTTL = 2 * time.Second

// userQuota counts the allocations each user holds (RFC 8656 §7.2:
// the quota is per username, not per client transport address).
//
// Admission reserves a slot; OnAllocationCreated turns the oldest reservation
// into an active allocation and OnAllocationDeleted releases it. Reserving at
// admission keeps concurrent read loops from admitting more than max.
type userQuota struct {
	max int // <= 0: unlimited

	mu      sync.Mutex
	active  map[string]int
	pending map[string][]time.Time
}

func newUserQuota(maxPerUser int) *userQuota {
	return &userQuota{
		max:     maxPerUser,
		active:  make(map[string]int),
		pending: make(map[string][]time.Time),
	}
}

// admit reserves an allocation slot for user and reports whether one was free.
func (q *userQuota) admit(user string, now time.Time) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	p := q.pending[user]
	i := 0
	for i < len(p) && now.Sub(p[i]) > reservationTTL {
		i++
	}
	p = p[i:]
	if q.max > 0 && q.active[user]+len(p) >= q.max {
		q.setPending(user, p)

		return false
	}
	q.setPending(user, append(p, now))

	return true
}

// created records a new allocation of user, consuming its oldest reservation.
func (q *userQuota) created(user string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if p := q.pending[user]; len(p) > 0 {
		q.setPending(user, p[1:])
	}
	q.active[user]++
}

// deleted records the end of an allocation of user.
func (q *userQuota) deleted(user string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if n := q.active[user] - 1; n > 0 {
		q.active[user] = n
	} else {
		delete(q.active, user)
	}
}

// count returns the number of active allocations of user.
func (q *userQuota) count(user string) int {
	q.mu.Lock()
	defer q.mu.Unlock()

	return q.active[user]
}

func (q *userQuota) setPending(user string, p []time.Time) {
	if len(p) == 0 {
		delete(q.pending, user)

		return
	}
	q.pending[user] = p
}

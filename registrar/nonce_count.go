package registrar

import (
	"encoding/binary"
	"hash/maphash"
	"time"
)

// Memory for nonces, bounded whatever the rate.
//
// The nonce count (RFC 7616 §3.4) of every nonce used with qop must be
// remembered while the nonce can still verify, to refuse a replay. Kept for
// a whole nonce lifetime, that memory grows with the registration rate:
// five minutes at 5,000 registrations/s are 1.5 million nonces. So the
// counts are kept in two generations of at most maxNonceCounts/2 each; a
// generation ends after a nonce lifetime, or sooner when it is full, and
// when one is dropped every nonce issued before the generation after it
// began becomes stale (a client then gets a fresh challenge with
// stale=true, one more round trip). Under a normal load the generations
// last a nonce lifetime and nothing changes; under a flood of
// registrations nonces simply live shorter.
//
// A generation is a fixed open-addressing table (ncTable) of 8-byte slots,
// allocated once: a Go map of the 16-byte nonce ids took ~21 bytes per
// slot, doubled as it grew (garbage at every generation) and, full, was
// the largest single part of the live heap while registering at 18,000/s
// (10 MB of ~46), which the garbage collector's goal multiplies (see
// docs/decisions.md, "nonce counts").
//
// Challenges are remembered by the request they answer (nonceSalt), in a
// fixed table, for a short while, so that the challenge to a retransmitted
// request repeats the nonce — the same 401 a transaction would have sent
// again (REGISTERs and challenges are answered without transactions).

const (
	// maxNonceCounts bounds the nonce counts remembered (two generations
	// of ncTable, 2 MiB each).
	maxNonceCounts = 1 << 18
	// recentChallenges is the size of the table of recent challenges;
	// recentFor is how long a request's challenge is repeated to its
	// retransmissions: a UDP client retransmits a request for up to 64*T1
	// = 32 s, most often within the first few seconds (RFC 3261
	// §17.1.2.2).
	recentChallenges = 1 << 15
	recentFor        = 32 * time.Second
)

// recentChallenge is the issue time of the nonce sent to the request salt.
type recentChallenge struct {
	salt   uint64
	issued int64 // unix ns
}

// issueTime returns the issue time (unix ns) of the nonce for the request
// identified by salt: that of its recent challenge if any and still
// usable, else now (which is recorded).
func (a *Authenticator) issueTime(salt uint64) int64 {
	now := a.now()
	floor := a.floor()
	a.recentMu.Lock()
	defer a.recentMu.Unlock()
	r := &a.recent[salt%recentChallenges]
	if salt != 0 && r.salt == salt {
		t := time.Unix(0, r.issued)
		if now.Sub(t) < min(recentFor, a.ttl/2) && !t.Before(floor) {
			return r.issued
		}
	}
	*r = recentChallenge{salt: salt, issued: now.UnixNano()}
	return r.issued
}

// floor returns the issue time before which nonces are stale.
func (a *Authenticator) floor() time.Time {
	a.ncMu.Lock()
	defer a.ncMu.Unlock()
	return a.ncFloor
}

// useNonceCount records nc for nonce and reports whether it is higher than
// any count seen before with that nonce (false also when the nonce is older
// than the counts remembered).
func (a *Authenticator) useNonceCount(nonce string, nc uint32) bool {
	id := nonceIDOf(nonce)
	issued := time.Unix(0, int64(binary.BigEndian.Uint64(id[:8])))
	h := maphash.Bytes(a.ncSeed, id[:])
	a.ncMu.Lock()
	defer a.ncMu.Unlock()
	if now := a.now(); now.After(a.ncRotate) || a.ncCur.n >= a.maxCounts/2 {
		// Drop the older generation: the nonces it may hold counts of
		// were issued before the newer one began.
		a.ncFloor = a.ncCurFrom
		a.ncPrev, a.ncCur = a.ncCur, a.ncPrev
		a.ncCur.reset()
		a.ncCurFrom, a.ncRotate = now, now.Add(a.ttl)
	}
	if issued.Before(a.ncFloor) {
		return false
	}
	s := a.ncCur.slot(h)
	last, ok := s.nc, s.tag != 0
	if !ok {
		if p := a.ncPrev.slot(h); p.tag != 0 {
			last, ok = p.nc, true
		}
	}
	if ok && nc <= last {
		return false
	}
	if s.tag == 0 {
		s.tag = ncTag(h)
		a.ncCur.n++
	}
	s.nc = nc
	return true
}

// setMaxCounts sizes the two generations for at most n counts in all.
func (a *Authenticator) setMaxCounts(n int) {
	a.maxCounts = n
	a.ncCur, a.ncPrev = newNCTable(n/2), newNCTable(n/2)
}

// ncTable is one generation of nonce counts: linear probing over a
// power-of-two array at most half full (a generation ends at n entries,
// see useNonceCount), so a probe always meets an empty slot. A slot holds
// 32 bits of the nonce id's seeded hash (the slot index gives more): two
// ids alike in both are one in billions, and cost that nonce a fresh
// challenge, never a replay accepted, since a shared slot holds the
// higher count.
type ncTable struct {
	slots []ncSlot
	n     int // slots in use
}

// ncSlot is a count and the tag of its nonce id (0: empty).
type ncSlot struct{ tag, nc uint32 }

func newNCTable(entries int) *ncTable {
	size := 2
	for size < 2*entries {
		size <<= 1
	}
	return &ncTable{slots: make([]ncSlot, size)}
}

// ncTag is the tag kept for the hash h: its high half, never 0.
func ncTag(h uint64) uint32 { return uint32(h>>32) | 1 }

// slot returns the slot holding h's tag, or the empty slot where it goes.
func (t *ncTable) slot(h uint64) *ncSlot {
	tag, mask := ncTag(h), uint64(len(t.slots)-1)
	for i := h & mask; ; i = (i + 1) & mask {
		if s := &t.slots[i]; s.tag == tag || s.tag == 0 {
			return s
		}
	}
}

func (t *ncTable) reset() {
	clear(t.slots)
	t.n = 0
}

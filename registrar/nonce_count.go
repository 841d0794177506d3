package registrar

import (
	"encoding/binary"
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
// Challenges are remembered by the request they answer (nonceSalt), in a
// fixed table, for a short while, so that the challenge to a retransmitted
// request repeats the nonce — the same 401 a transaction would have sent
// again (REGISTERs and challenges are answered without transactions).

const (
	// maxNonceCounts bounds the nonce counts remembered (two generations);
	// each costs ~30 bytes.
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
	a.ncMu.Lock()
	defer a.ncMu.Unlock()
	if now := a.now(); now.After(a.ncRotate) || len(a.ncCur) >= a.maxCounts/2 {
		// Drop the older generation: the nonces it may hold counts of
		// were issued before the newer one began.
		a.ncFloor = a.ncCurFrom
		a.ncPrev, a.ncCur = a.ncCur, make(map[nonceID]uint32, len(a.ncCur))
		a.ncCurFrom, a.ncRotate = now, now.Add(a.ttl)
	}
	if issued.Before(a.ncFloor) {
		return false
	}
	last, ok := a.ncCur[id]
	if !ok {
		last, ok = a.ncPrev[id]
	}
	if ok && nc <= last {
		return false
	}
	a.ncCur[id] = nc
	return true
}

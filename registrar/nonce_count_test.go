package registrar

import (
	"testing"
	"time"
)

// The nonce counts kept are bounded: past the bound the oldest generation
// goes, and the nonces it may have counted become stale instead of
// replayable.
func TestNonceCountsBounded(t *testing.T) {
	a, err := NewAuthenticator(testRealm, nil, time.Minute, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_000_000, 0)
	a.now = func() time.Time { return now }
	a.ncCurFrom, a.ncRotate = now, now.Add(time.Minute)
	a.setMaxCounts(100)
	first := a.newNonce(1)
	if !a.useNonceCount(first, 1) {
		t.Fatal("first use refused")
	}
	for i := 0; i < 300; i++ {
		now = now.Add(time.Millisecond)
		if n := a.newNonce(uint64(1000 + i)); !a.useNonceCount(n, 1) {
			t.Fatalf("fresh nonce %d refused", i)
		}
		if a.ncCur.n+a.ncPrev.n > a.maxCounts {
			t.Fatalf("%d counts kept, bound %d", a.ncCur.n+a.ncPrev.n, a.maxCounts)
		}
	}
	// first's count is forgotten: a replay of it must not pass.
	if a.useNonceCount(first, 1) {
		t.Error("replay of a forgotten nonce accepted")
	}
	if ours, _ := a.checkNonce(first); !ours {
		t.Error("old nonce not recognised as ours")
	}
	// A nonce issued now still works, and counts up.
	n := a.newNonce(7)
	if !a.useNonceCount(n, 1) || a.useNonceCount(n, 1) || !a.useNonceCount(n, 2) {
		t.Error("nonce count of a new nonce")
	}
}

// A retransmitted request is challenged with the same nonce; after
// recentFor, or for another request, the nonce differs.
func TestChallengeRepeatsForRequest(t *testing.T) {
	a, err := NewAuthenticator(testRealm, nil, 5*time.Minute, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_000_000, 0)
	a.now = func() time.Time { return now }
	n1 := a.newNonce(42)
	now = now.Add(2 * time.Second)
	if n2 := a.newNonce(42); n2 != n1 {
		t.Errorf("retransmission challenged with another nonce")
	}
	if a.newNonce(43) == n1 {
		t.Error("another request got the same nonce")
	}
	now = now.Add(recentFor)
	if a.newNonce(42) == n1 {
		t.Error("nonce repeated after recentFor")
	}
}

// Hashes that fall on the same slot probe on to the next ones, each keeps
// its own count, and a table is empty again after reset.
func TestNCTableProbes(t *testing.T) {
	tb := newNCTable(4) // 8 slots
	if len(tb.slots) != 8 {
		t.Fatalf("%d slots for 4 entries, want 8", len(tb.slots))
	}
	hashes := []uint64{3, 11<<32 | 3, 12<<32 | 3, 4} // 3 on slot 3, then 4 and 5
	for i, h := range hashes {
		s := tb.slot(h)
		if s.tag != 0 {
			t.Fatalf("hash %d found before it was put", i)
		}
		s.tag, s.nc = ncTag(h), uint32(10+i)
		tb.n++
	}
	for i, h := range hashes {
		if s := tb.slot(h); s.tag != ncTag(h) || s.nc != uint32(10+i) {
			t.Errorf("hash %d: slot %+v", i, *s)
		}
	}
	if s := &tb.slots[5]; s.tag != ncTag(hashes[2]) {
		t.Errorf("third hash on slot 3 not probed to slot 5: %+v", tb.slots)
	}
	tb.reset()
	if tb.n != 0 || tb.slot(hashes[1]).tag != 0 {
		t.Error("reset kept entries")
	}
}

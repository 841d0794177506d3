package admin

import (
	"testing"
	"time"
)

func TestMOS(t *testing.T) {
	for _, c := range []struct {
		loss, jitter float64
		lo, hi       float64
	}{
		{0, 0, 4.35, 4.45},   // G.711 at its best: R ≈ 92.7
		{1, 5, 4.1, 4.35},    // a little loss
		{5, 20, 3.3, 3.9},    // audible
		{20, 60, 1.5, 2.8},   // bad
		{100, 0, 1, 1.3},     // nothing gets through
		{-3, -1, 4.35, 4.45}, // nonsense is clamped
	} {
		if m := MOS(c.loss, c.jitter); m < c.lo || m > c.hi {
			t.Errorf("MOS(%g%%, %g ms) = %.2f, want %.2f..%.2f", c.loss, c.jitter, m, c.lo, c.hi)
		}
	}
	if MOS(2, 10) <= MOS(4, 10) || MOS(2, 10) <= MOS(2, 200) {
		t.Error("MOS does not fall with loss and jitter")
	}
}

func TestSampler(t *testing.T) {
	s := newSampler(10*time.Second, time.Minute) // 6 points
	t0 := time.Now()
	for i := range 9 {
		s.add(point{Time: t0.Add(time.Duration(i) * 10 * time.Second), Calls: i, started: uint64(3 * i)})
	}
	st := s.snapshot()
	if len(st.Points) != 6 || st.Points[0].Calls != 3 || st.Points[5].Calls != 8 || st.IntervalSeconds != 10 {
		t.Fatalf("points %+v", st.Points)
	}
	for _, p := range st.Points {
		if p.NewCalls != 3 {
			t.Fatalf("new calls per sample: %+v", st.Points)
		}
	}
}

func TestSessions(t *testing.T) {
	s := newSessions(time.Hour)
	now := time.Now()
	id, ss := s.create("ops", now)
	if got, ok := s.get(id, now.Add(time.Minute)); !ok || got != ss || got.csrf == "" {
		t.Fatal("session not found")
	}
	if _, ok := s.get(id, now.Add(2*time.Hour)); ok {
		t.Fatal("an expired session is valid")
	}
	s.sweep(now.Add(2 * time.Hour))
	if len(s.m) != 0 {
		t.Fatal("sweep kept an expired session")
	}
}

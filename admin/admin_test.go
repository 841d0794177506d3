package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/switchboard/switchboard/registrar"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/trace"
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

// fakeSwitch is a Switch with n calls in progress.
type fakeSwitch struct{ n int }

func (f fakeSwitch) Calls() []sip.CallInfo {
	t0 := time.Now().Add(-time.Hour)
	out := make([]sip.CallInfo, f.n)
	for i := range out {
		out[i] = sip.CallInfo{ID: fmt.Sprint("call-", i), State: sip.CallAnswered, Started: t0.Add(time.Duration(i) * time.Second)}
	}
	return out
}
func (f fakeSwitch) CallsStarted() uint64                       { return uint64(f.n) }
func (f fakeSwitch) CallCount() int                             { return f.n }
func (fakeSwitch) Hangup(context.Context, string, string) error { return nil }
func (fakeSwitch) Draining() bool                               { return false }
func (fakeSwitch) FloodBanned() []sip.FloodBan                  { return nil }
func (fakeSwitch) LiftFloodBan(netip.Addr) bool                 { return false }

// TestLiveCallsBounded: a live update carries at most maxLiveCalls calls,
// the oldest, and the number of them all.
func TestLiveCallsBounded(t *testing.T) {
	for _, n := range []int{0, 3, maxLiveCalls + 50} {
		c := &Console{cfg: Config{Switch: fakeSwitch{n}, Traces: trace.New(1), LiveEvery: time.Second,
			RegistrationsHead: func(int) (int, []registrar.Binding) { return 0, nil }}, now: time.Now, log: slog.Default()}
		c.live = newLive(c)
		var u update
		if err := json.Unmarshal(c.live.encode(c.live.compute(true)), &u); err != nil {
			t.Fatal(err)
		}
		if u.CallsTotal != n || len(u.Calls) != min(n, maxLiveCalls) {
			t.Fatalf("%d calls: update has %d of calls_total %d", n, len(u.Calls), u.CallsTotal)
		}
		if n > 0 && u.Calls[0].ID != "call-0" {
			t.Fatalf("%d calls: the first sent is %s, not the oldest", n, u.Calls[0].ID)
		}
	}
}

package registrar

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/sqldb"
)

// Head gives what the first n of All would be, and the number of bindings
// held, through insertions, replacements and removals that keep the
// Location's index of AORs in step with its table.
func TestHeadIsTheStartOfAll(t *testing.T) {
	now := time.Now()
	l := &Location{aors: map[string][]*Binding{}, order: newAOROrder(), flows: map[flowKey]map[*Binding]struct{}{},
		now: func() time.Time { return now }, writer: sqldb.NewBatchWriter(nil, "bindings", 4096, slog.Default())}
	for _, i := range rand.Perm(300) {
		aor := fmt.Sprintf("u%03d", i%120)
		exp := now.Add(time.Minute)
		if i%7 == 0 {
			exp = now.Add(-time.Second) // expired: held until purged, but never shown
		}
		l.insertLocked(&Binding{AOR: aor, Contact: fmt.Sprintf("sip:%s@192.0.2.%d", aor, i), Expires: exp})
	}
	check := func(stage string) {
		t.Helper()
		all := l.All()
		for _, n := range []int{0, 1, 5, 100, len(all), len(all) + 10} {
			total, first := l.Head(n)
			want := all[:min(n, len(all))]
			if total != l.Count() || !slices.EqualFunc(first, want, func(a, b Binding) bool { return a.AOR == b.AOR && a.Contact == b.Contact }) {
				t.Fatalf("%s: Head(%d) = %d, %d bindings; want %d, %v", stage, n, total, len(first), l.Count(), want)
			}
		}
		if got := l.order.Len(); got != len(l.aors) {
			t.Fatalf("%s: %d AORs in the index, %d in the table", stage, got, len(l.aors))
		}
	}
	check("loaded")
	l.purgeExpired()
	if _, all := l.Head(1000); len(all) != l.Count() {
		t.Fatalf("after the purge: %d held, %d in force", l.Count(), len(all))
	}
	check("purged")
	// Take every binding of some AORs, then give a few of them one again.
	for i := 0; i < 120; i += 3 {
		aor := fmt.Sprintf("u%03d", i)
		_ = l.update(aor, func([]*Binding) ([]*Binding, []*Binding, []*Binding, error) { return nil, nil, nil, nil })
	}
	check("removed")
	for i := 0; i < 120; i += 9 {
		aor := fmt.Sprintf("u%03d", i)
		b := &Binding{AOR: aor, Contact: "sip:" + aor + "@198.51.100.1", Expires: now.Add(time.Hour)}
		_ = l.update(aor, func(cur []*Binding) ([]*Binding, []*Binding, []*Binding, error) {
			return append(cur, b), []*Binding{b}, nil, nil
		})
	}
	check("re-added")
}

// BenchmarkHead is the console's live view of a table of 100,000
// registrations: the first 500 and the count, every second.
func BenchmarkHead(b *testing.B) {
	now := time.Now()
	l := &Location{aors: map[string][]*Binding{}, order: newAOROrder(), flows: map[flowKey]map[*Binding]struct{}{},
		now: func() time.Time { return now }}
	for _, i := range rand.Perm(100_000) {
		aor := fmt.Sprintf("sip:u%d@switchboard.local", i)
		l.insertLocked(&Binding{AOR: aor, Contact: fmt.Sprintf("sip:u%d@192.0.2.1:%d", i, 1024+i%60000), Expires: now.Add(time.Hour)})
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, first := l.Head(500); len(first) != 500 {
			b.Fatal(len(first))
		}
	}
}

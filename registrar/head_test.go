package registrar

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// Head gives what the first n of All would be, and All's length.
func TestHeadIsTheStartOfAll(t *testing.T) {
	now := time.Now()
	l := &Location{aors: map[string][]*Binding{}, now: func() time.Time { return now }}
	for _, i := range rand.Perm(300) {
		aor := fmt.Sprintf("u%03d", i%120)
		exp := now.Add(time.Minute)
		if i%7 == 0 {
			exp = now.Add(-time.Second) // expired: in neither
		}
		l.aors[aor] = append(l.aors[aor], &Binding{AOR: aor, Contact: fmt.Sprintf("sip:%s@192.0.2.%d", aor, i), Expires: exp})
	}
	all := l.All()
	for _, n := range []int{0, 1, 5, 100, len(all), len(all) + 10} {
		total, first := l.Head(n)
		want := all[:min(n, len(all))]
		if total != len(all) || !slices.EqualFunc(first, want, func(a, b Binding) bool { return a.AOR == b.AOR && a.Contact == b.Contact }) {
			t.Fatalf("Head(%d) = %d, %d bindings; want %d, %v", n, total, len(first), len(all), want)
		}
	}
}

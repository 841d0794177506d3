package media

import (
	"math"
	"testing"
	"time"
)

func TestLoss(t *testing.T) {
	type pkt struct {
		ssrc uint32
		seq  uint16
	}
	seqs := func(ssrc uint32, s ...int) []pkt {
		out := make([]pkt, len(s))
		for i, v := range s {
			out[i] = pkt{ssrc, uint16(v)}
		}
		return out
	}
	tests := []struct {
		name string
		pkts []pkt
		want uint64
	}{
		{"in order", seqs(1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 0},
		{"one gap of three", seqs(1, 1, 2, 3, 7, 8), 3},
		{"two gaps", seqs(1, 10, 12, 13, 16), 3},
		{"reordered", seqs(1, 1, 2, 4, 3, 5), 0},
		{"reordered, one lost", seqs(1, 1, 3, 2, 5), 1},
		{"duplicate never negative", seqs(1, 1, 2, 2, 2, 3), 0},
		{"wrap around", seqs(1, 65533, 65534, 65535, 0, 1, 3), 1},
		{"wrap around with loss across it", seqs(1, 65530, 65535, 2), 6},
		{"lost first packet after start is not seen", seqs(1, 5, 6, 7), 0},
		{"ssrc change keeps earlier losses",
			append(seqs(1, 1, 2, 4), seqs(2, 100, 101, 103)...), 2},
		{"stray jump is ignored", seqs(1, 1, 2, 3, 30000, 4, 5), 0},
		{"restart after two in sequence past a jump", seqs(1, 10, 11, 13, 40000, 40001, 40002, 40004), 2},
		{"gap of max dropout minus one is a loss", seqs(1, 1, 1+maxDropout-1), maxDropout - 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s rxStats
			for i, p := range tt.pkts {
				s.update(rtpFields{seq: p.seq, ssrc: p.ssrc, ts: uint32(i * 160)}, int64(i)*20e6, 8000)
			}
			if got := s.lost(); got != tt.want {
				t.Errorf("lost = %d, want %d", got, tt.want)
			}
		})
	}
}

// referenceJitter is RFC 3550 §A.8 in floating point, in nanoseconds.
func referenceJitter(ts []uint32, arrival []int64, rate float64) float64 {
	var j float64
	for i := 1; i < len(ts); i++ {
		d := float64(arrival[i]-arrival[i-1]) - float64(int32(ts[i]-ts[i-1]))*1e9/rate
		j += (math.Abs(d) - j) / 16
	}
	return j
}

func TestJitter(t *testing.T) {
	const ms = int64(time.Millisecond)
	steady := func(n int) ([]uint32, []int64) {
		ts := make([]uint32, n)
		ar := make([]int64, n)
		for i := range ts {
			ts[i] = uint32(1000 + 160*i)
			ar[i] = 5*ms + int64(i)*20*ms
		}
		return ts, ar
	}
	tests := []struct {
		name string
		rate uint32
		mod  func(ts []uint32, ar []int64)
	}{
		{"steady stream has none", 8000, func([]uint32, []int64) {}},
		{"alternating 5 ms early and late", 8000, func(_ []uint32, ar []int64) {
			for i := range ar {
				if i%2 == 1 {
					ar[i] += 5 * ms
				}
			}
		}},
		{"one late packet", 8000, func(_ []uint32, ar []int64) { ar[10] += 30 * ms }},
		{"growing delay", 8000, func(_ []uint32, ar []int64) {
			for i := range ar {
				ar[i] += int64(i) * ms / 2
			}
		}},
		{"timestamp wraps", 8000, func(ts []uint32, _ []int64) {
			for i := range ts {
				ts[i] += math.MaxUint32 - 160*10
			}
		}},
		{"48 kHz clock", 48000, func(ts []uint32, ar []int64) {
			for i := range ts {
				ts[i] = uint32(960 * i)
				if i%3 == 0 {
					ar[i] += 3 * ms
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts, ar := steady(50)
			tt.mod(ts, ar)
			var s rxStats
			for i := range ts {
				s.update(rtpFields{seq: uint16(i), ssrc: 7, ts: ts[i]}, ar[i], tt.rate)
			}
			want := referenceJitter(ts, ar, float64(tt.rate))
			got := float64(s.jitter())
			// Integer arithmetic and the arrival clock's rounding to
			// timestamp units (125 µs at 8 kHz) allow a small error.
			tol := 1e9/float64(tt.rate) + 1000
			if math.Abs(got-want) > tol {
				t.Errorf("jitter = %v, want %v", time.Duration(got), time.Duration(want))
			}
		})
	}
}

func TestJitterPayloadTypeChange(t *testing.T) {
	var s rxStats
	// Audio, then a DTMF event whose timestamp is unrelated and frozen:
	// the switch itself must not count as jitter.
	for i := 0; i < 20; i++ {
		s.update(rtpFields{pt: 0, seq: uint16(i), ssrc: 1, ts: uint32(160 * i)}, int64(i)*20e6, 8000)
	}
	s.update(rtpFields{pt: 101, seq: 20, ssrc: 1, ts: 999999}, 20*20e6, 8000)
	if j := s.jitter(); j != 0 {
		t.Fatalf("jitter after payload type change = %v, want 0", j)
	}
}

func TestLossNeverPanicsOnZero(t *testing.T) {
	var s rxStats
	if s.lost() != 0 || s.jitter() != 0 {
		t.Fatal("fresh stats not zero")
	}
}

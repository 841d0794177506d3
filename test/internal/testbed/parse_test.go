package testbed

import (
	"math"
	"os"
	"path/filepath"
	"testing"
)

func TestParseLogfmt(t *testing.T) {
	tests := []struct {
		name, line string
		want       map[string]string
	}{
		{"listener", `time=2026-01-02T03:04:05.000Z level=INFO msg=listening component=sip transport=udp addr=127.0.0.1:40211`,
			map[string]string{"level": "INFO", "msg": "listening", "component": "sip", "transport": "udp", "addr": "127.0.0.1:40211"}},
		{"quoted", `level=WARN msg="a b \"c\"" addr=[::1]:5060`,
			map[string]string{"level": "WARN", "msg": `a b "c"`, "addr": "[::1]:5060"}},
		{"garbage", `panic: boom`, map[string]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ParseLogfmt(tt.line)
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q (all: %v)", k, got[k], v, got)
				}
			}
			if len(tt.want) == 0 && len(got) != 0 {
				t.Errorf("got %v, want nothing", got)
			}
		})
	}
}

func TestParseTable(t *testing.T) {
	tests := []struct {
		name, in string
		want     []map[string]string
	}{
		{"tabwriter", "START                CALLER  CALLEE  CALL-ID         STATUS\n" +
			"2026-01-02 03:04:05  alice   bob     1-42@127.0.0.1  answered\n" +
			"2026-01-02 03:04:06  alice   bob     x               failed\n",
			[]map[string]string{
				{"start": "2026-01-02 03:04:05", "caller": "alice", "callee": "bob", "call-id": "1-42@127.0.0.1", "status": "answered"},
				{"start": "2026-01-02 03:04:06", "caller": "alice", "callee": "bob", "call-id": "x", "status": "failed"},
			}},
		{"tabs", "start\tcaller\tCall_ID\n2026-01-02 03:04:05\talice\tabc\n",
			[]map[string]string{{"start": "2026-01-02 03:04:05", "caller": "alice", "call-id": "abc"}}},
		{"header only", "START CALLER\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseTable(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d rows %v, want %d", len(got), got, len(tt.want))
			}
			for i := range got {
				for k, v := range tt.want[i] {
					if got[i][k] != v {
						t.Errorf("row %d %s = %q, want %q", i, k, got[i][k], v)
					}
				}
			}
		})
	}
}

func TestMeasureTone(t *testing.T) {
	w := WAV{Rate: 8000, Channels: 1, Samples: make([]int16, 16000)}
	for i := range w.Samples {
		w.Samples[i] = int16(8000 * math.Sin(2*math.Pi*1000*float64(i)/8000))
	}
	if got := MeasureTone(w, 1000); got.Share < 0.95 || got.Active < 0.99 || got.Seconds != 2 {
		t.Errorf("1000 Hz tone measured at 1000 Hz: %+v", got)
	}
	if got := MeasureTone(w, 600); got.Share > 0.05 {
		t.Errorf("1000 Hz tone measured at 600 Hz: %+v", got)
	}
	if got := MeasureTone(WAV{Rate: 8000, Samples: make([]int16, 8000)}, 1000); got.Active != 0 {
		t.Errorf("silence: %+v", got)
	}
}

func TestReadWAVFromSox(t *testing.T) {
	p := MakeTone(t, filepath.Join(t.TempDir(), "tone.wav"), 600, 1)
	w, err := ReadWAV(p)
	if err != nil {
		t.Fatal(err)
	}
	if w.Rate != 8000 || w.Channels != 1 || len(w.Samples) != 8000 {
		t.Fatalf("got rate %d, %d channels, %d samples", w.Rate, w.Channels, len(w.Samples))
	}
	if got := MeasureTone(w, 600); got.Share < 0.95 {
		t.Errorf("sox 600 Hz tone: %+v", got)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
}

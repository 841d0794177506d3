package fielderr

import (
	"errors"
	"strings"
	"testing"
)

func TestNamed(t *testing.T) {
	keys := map[string]string{"TimerC": "sip.timer_c", "Flood.Ban": "security.flood.ban"}
	cause := errors.New("boom")
	tests := []struct {
		err  error
		want string
	}{
		{New("TimerC", "%s is too short", "1ms"), "sip.timer_c: 1ms is too short"},
		{In("Flood", New("Ban", "must not be negative")), "security.flood.ban: must not be negative"},
		{New("Other", "bad: %w", cause), "sip (Other): bad: boom"},
		{cause, "sip: boom"},
	}
	for _, tc := range tests {
		got := Named("sip", keys, tc.err)
		if got.Error() != tc.want {
			t.Errorf("Named(%v) = %q, want %q", tc.err, got, tc.want)
		}
		if strings.Contains(tc.want, "boom") && !errors.Is(got, cause) {
			t.Errorf("Named(%v) lost its cause", tc.err)
		}
	}
	if Named("x", nil, nil) != nil {
		t.Error("Named(nil) is not nil")
	}
}

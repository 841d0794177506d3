package userpart

import (
	"strings"
	"testing"
)

func TestValid(t *testing.T) {
	for _, tc := range []struct {
		name, s, marks string
		want           bool
	}{
		{"letters and digits", "alice42", "", true},
		{"upper case", "Bob", "", true},
		{"a mark given", "a.b", ".", true},
		{"a mark not given", "a.b", "-", false},
		{"empty", "", "-", false},
		{"longest", strings.Repeat("a", MaxLen), "", true},
		{"too long", strings.Repeat("a", MaxLen+1), "", false},
		{"space", "a b", "-", false},
		{"escape", "a%20b", "-", false},
		{"non-ASCII letter", "José", "", false},
		{"at sign", "a@b", "-_.", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Valid(tc.s, tc.marks); got != tc.want {
				t.Fatalf("Valid(%q, %q) = %v, want %v", tc.s, tc.marks, got, tc.want)
			}
		})
	}
}

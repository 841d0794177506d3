package sipstatus

import (
	"errors"
	"fmt"
	"testing"

	"github.com/emiago/sipgo/sip"
)

func TestResponse(t *testing.T) {
	req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "bob", Host: "example.org"})
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.INVITE})
	tests := []struct {
		name   string
		err    error
		code   int
		header string
	}{
		{"status", New(403, "Forbidden", errors.New("no")), 403, ""},
		{"wrapped", fmt.Errorf("register: %w", New(423, "Interval Too Brief", nil, sip.NewHeader("Min-Expires", "60"))), 423, "Min-Expires"},
		{"plain error", errors.New("disk full"), 500, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := Response(req, tc.err)
			if res.StatusCode != tc.code {
				t.Fatalf("status %d, want %d", res.StatusCode, tc.code)
			}
			if tc.header != "" && res.GetHeader(tc.header) == nil {
				t.Fatalf("no %s header:\n%s", tc.header, res)
			}
		})
	}
	if got := New(480, "Temporarily Unavailable", errors.New("offline")).Error(); got != "Temporarily Unavailable: offline" {
		t.Fatalf("Error() = %q", got)
	}
}

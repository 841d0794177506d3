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

// testRegister is a REGISTER as a phone sends it.
const testRegister = "REGISTER sip:example.org SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK2;rport\r\n" +
	"From: <sip:alice@example.org>;tag=a2\r\n" +
	"To: <sip:alice@example.org>\r\n" +
	"Call-ID: r1\r\n" +
	"CSeq: 2 REGISTER\r\n" +
	"Contact: <sip:alice@192.0.2.1:5070>\r\n" +
	"Content-Length: 0\r\n\r\n"

// TestNewResponse checks NewResponse against sipgo's NewResponseFromRequest
// (the same message but for the To tag, random in both) and that building
// and changing a response leaves the request as it was.
func TestNewResponse(t *testing.T) {
	const invite = "INVITE sip:bob@example.org SIP/2.0\r\n" +
		"Record-Route: <sip:p2.example.org;lr>\r\n" +
		"v: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK1;rport\r\n" +
		"Via: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK0, SIP/2.0/TCP 192.0.2.8;branch=z9hG4bKx\r\n" +
		"Record-Route: <sip:p1.example.org;lr>\r\n" +
		"Max-Forwards: 70\r\n" +
		"f: \"Alice\" <sip:alice@example.org>;tag=a1\r\n" +
		"To: <sip:bob@example.org>\r\n" +
		"Call-ID: c1@192.0.2.1\r\n" +
		"CSeq: 7 INVITE\r\n" +
		"Timestamp: 54\r\n" +
		"Contact: <sip:alice@192.0.2.1:5070>\r\n" +
		"Content-Length: 0\r\n\r\n"
	const inDialog = "BYE sip:alice@192.0.2.1:5070 SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 192.0.2.7;branch=z9hG4bK3;rport\r\n" +
		"From: <sip:bob@example.org>;tag=b1\r\n" +
		"To: <sip:alice@example.org>;tag=a1\r\n" +
		"Call-ID: c1@192.0.2.1\r\n" +
		"CSeq: 1 BYE\r\n" +
		"Content-Length: 0\r\n\r\n"
	for _, tc := range []struct {
		name  string
		msg   string
		codes []int
	}{
		{"invite", invite, []int{100, 180, 183, 200, 407, 486}},
		{"register", testRegister, []int{200, 401}},
		{"in-dialog", inDialog, []int{200, 481}},
	} {
		for _, code := range tc.codes {
			t.Run(fmt.Sprintf("%s %d", tc.name, code), func(t *testing.T) {
				req := parseRequest(t, tc.msg)
				before := req.String()
				want := sip.NewResponseFromRequest(req, code, "Reason", nil)
				got := NewResponse(req, code, "Reason")
				wantTag, wantHas := want.To().Params.Get("tag")
				gotTag, gotHas := got.To().Params.Get("tag")
				if wantHas != gotHas || (code == 100 || tc.name == "in-dialog") && gotTag != wantTag {
					t.Fatalf("To tag %q (%v), sipgo's %q (%v)", gotTag, gotHas, wantTag, wantHas)
				}
				if gotHas && tc.name != "in-dialog" && len(gotTag) < 16 {
					t.Fatalf("To tag %q: too short to be unique (RFC 3261 §19.3)", gotTag)
				}
				got.To().Params.Add("tag", "x")
				want.To().Params.Add("tag", "x")
				if got.String() != want.String() {
					t.Fatalf("response:\n%s\nsipgo's:\n%s", got, want)
				}
				if got.Destination() != want.Destination() || got.Transport() != want.Transport() {
					t.Fatalf("destination %s %s, sipgo's %s %s", got.Transport(), got.Destination(), want.Transport(), want.Destination())
				}
				// What a stateless answer does to its response: a tag on
				// the To, a header more; the request does not change.
				got.To().Params.Add("tag", "sb1")
				got.AppendHeader(sip.NewHeader("WWW-Authenticate", "Digest"))
				if after := req.String(); after != before {
					t.Fatalf("the request changed:\n%s\nwas:\n%s", after, before)
				}
			})
		}
	}
}

// TestNewResponseTags checks that responses to one request get different
// tags.
func TestNewResponseTags(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		res := NewResponse(parseRequest(t, "OPTIONS sip:example.org SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:example.org>\r\nCall-ID: o\r\nCSeq: 1 OPTIONS\r\n\r\n"), 200, "OK")
		tag, _ := res.To().Params.Get("tag")
		if seen[tag] {
			t.Fatalf("tag %q twice", tag)
		}
		seen[tag] = true
	}
}

func parseRequest(t testing.TB, msg string) *sip.Request {
	t.Helper()
	m, err := sip.ParseMessage([]byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	req := m.(*sip.Request)
	req.SetTransport("UDP")
	req.SetSource("198.51.100.4:5071")
	return req
}

func BenchmarkNewResponse(b *testing.B) {
	req := parseRequest(b, testRegister)
	b.Run("sipgo", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			sip.NewResponseFromRequest(req, 200, "OK", nil)
		}
	})
	b.Run("NewResponse", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			NewResponse(req, 200, "OK")
		}
	})
}

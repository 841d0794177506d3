package sip

import (
	"net/netip"
	"strings"
	"testing"

	gosip "github.com/emiago/sipgo/sip"
)

// ourVia is a top Via as the switch writes it on a BYE forwarded
// statelessly.
const ourVia = "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=" + branchPrefix + "0123456789abcdef.0123456789abcdef01" + statelessBranch + ";rport=5060\r\n"

// byeOK is a 200 to a BYE with the Vias vias.
func byeOK(vias string) string {
	return "SIP/2.0 200 OK\r\n" + vias +
		"From: <sip:alice@switchboard.local>;tag=a\r\nTo: <sip:bob@switchboard.local>;tag=b\r\nCall-ID: c1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
}

var rawResponseCases = []struct {
	name string
	msg  string
	dest string // "" when readResponse leaves it to sipgo
}{
	{"received and rport", byeOK(ourVia + "Via: SIP/2.0/UDP 10.0.0.7:5062;branch=z9hG4bK-a;received=192.0.2.9;rport=40000\r\n"), "192.0.2.9:40000"},
	{"sent-by", byeOK(ourVia + "Via: SIP/2.0/UDP 192.0.2.9:5070;branch=z9hG4bK-a\r\n"), "192.0.2.9:5070"},
	{"no port", byeOK(ourVia + "v: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK-a;rport\r\n"), "192.0.2.9:5060"},
	{"IPv6", byeOK(ourVia + "Via: SIP/2.0/UDP [2001:db8::1]:5070;branch=z9hG4bK-a;rport=5071\r\n"), "[2001:db8::1]:5071"},
	{"IPv6 received", byeOK(ourVia + "Via: SIP/2.0/UDP 10.0.0.7;received=2001:db8::2;branch=z9hG4bK-a\r\n"), "[2001:db8::2]:5060"},
	{"next in a list", byeOK(ourVia + "Via: SIP/2.0/UDP 192.0.2.9:5070;branch=z9hG4bK-a, SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK-b\r\n"), ""},
	{"headers between", byeOK(ourVia + "Record-Route: <sip:x>\r\nVia: SIP/2.0/UDP 192.0.2.9:5070;branch=z9hG4bK-a\r\n"), "192.0.2.9:5070"},
	{"a 180", strings.Replace(byeOK(ourVia+"Via: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK-a\r\n"), "200 OK", "180 Ringing", 1), "192.0.2.9:5060"},
	{"ours in a list", byeOK(strings.TrimSuffix(ourVia, "\r\n") + ", SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK-a\r\n"), ""},
	{"no next Via", byeOK(ourVia), ""},
	{"next over TCP", byeOK(ourVia + "Via: SIP/2.0/TCP 192.0.2.9;branch=z9hG4bK-a\r\n"), ""},
	{"next a host name", byeOK(ourVia + "Via: SIP/2.0/UDP pbx.example.com;branch=z9hG4bK-a\r\n"), ""},
	{"rport with a zero", byeOK(ourVia + "Via: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK-a;rport=05060\r\n"), ""},
	{"not stateless", byeOK(strings.Replace(ourVia, statelessBranch, "", 1) + "Via: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK-a\r\n"), ""},
	{"folded", byeOK(ourVia + "Via: SIP/2.0/UDP 192.0.2.9\r\n ;branch=z9hG4bK-a\r\n"), ""},
	{"two CSeqs", strings.Replace(byeOK(ourVia+"Via: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK-a\r\n"), "CSeq: 2 BYE\r\n", "CSeq: 2 BYE\r\nCSeq: 3 BYE\r\n", 1), ""},
	{"status 099", strings.Replace(byeOK(ourVia+"Via: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK-a\r\n"), "200 OK", "099 X", 1), ""},
}

// TestReadResponse: a response to a request forwarded statelessly is read
// from its bytes, as the parsed path reads it: where it goes, and what is
// sent on is the response without our Via.
func TestReadResponse(t *testing.T) {
	for _, tc := range rawResponseCases {
		t.Run(tc.name, func(t *testing.T) {
			var r rawResponse
			ok := readResponse(&r, []byte(tc.msg))
			if ok != (tc.dest != "") {
				t.Fatalf("read: %v, want %v", ok, tc.dest != "")
			}
			if !ok {
				return
			}
			if got := r.dest.String(); got != tc.dest {
				t.Errorf("to %s, want %s", got, tc.dest)
			}
			checkRawResponse(t, []byte(tc.msg), &r)
		})
	}
}

// checkRawResponse compares what readResponse read of data with sipgo's
// parse and forwardStrayResponse's copy, when sipgo parses data.
func checkRawResponse(t *testing.T, data []byte, r *rawResponse) {
	t.Helper()
	m, err := gosip.ParseMessage(data)
	if err != nil {
		return // the next hop gets what the callee sent (see rawresponse.go)
	}
	res, ok := m.(*gosip.Response)
	if !ok {
		t.Fatalf("read as a response, parsed as %T", m)
	}
	v := res.Via()
	if v == nil {
		t.Fatal("read a Via sipgo did not")
	}
	if br, _ := v.Params.Get("branch"); br != string(r.branch) || v.Host != string(r.topHost) || res.StatusCode != r.status {
		t.Fatalf("read branch %q host %q status %d, parsed %q %q %d", r.branch, r.topHost, r.status, br, v.Host, res.StatusCode)
	}
	if res.CSeq() == nil || string(res.CSeq().MethodName) != string(r.method) {
		t.Fatalf("read method %q, parsed CSeq %v", r.method, res.CSeq())
	}
	want := relayCopy(res)
	removeTopHeader(want, "Via")
	if want.Via() == nil {
		t.Fatal("read a next Via sipgo did not")
	}
	if ap, err := netip.ParseAddrPort(want.Destination()); err == nil && ap != r.dest {
		t.Fatalf("read destination %s, parsed %s", r.dest, want.Destination())
	}
	sent := append(append([]byte(nil), data[:r.cut]...), data[r.cutTo:]...)
	gm, err := gosip.ParseMessage(sent)
	if err != nil {
		t.Fatalf("what is sent does not parse: %v\n%s", err, sent)
	}
	got := gm.(*gosip.Response)
	if got.StartLine() != want.StartLine() || headerLines(got) != headerLines(want) || string(got.Body()) != string(want.Body()) {
		t.Fatalf("sent\n%s\nparsed path sends\n%s", got, want)
	}
}

// headerLines writes a message's headers one per line, but
// Content-Length, which sipgo adds when it writes a message that had none
// (over UDP the body is then the rest of the datagram: the same body).
func headerLines(m interface{ Headers() []gosip.Header }) string {
	var b strings.Builder
	for _, h := range m.Headers() {
		if n := strings.ToLower(h.Name()); n == "content-length" || n == "l" {
			continue
		}
		b.WriteString(h.Name() + ": " + h.Value() + "\n")
	}
	return b.String()
}

// FuzzReadResponse: whatever response readResponse reads and sipgo
// parses, both read the same and send on the same.
func FuzzReadResponse(f *testing.F) {
	for _, tc := range rawResponseCases {
		f.Add([]byte(tc.msg))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var r rawResponse
		if readResponse(&r, data) {
			checkRawResponse(t, data, &r)
		}
	})
}

package sip

import (
	"bytes"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	gosip "github.com/emiago/sipgo/sip"
)

// inDialogCase is an ACK or a BYE inside a dialog the switch
// record-routed: %[1]s is the switch's Route entry (signed), %[2]s its
// host:port.
type inDialogCase struct {
	name string
	msg  string
	raw  bool // forwarded from its bytes; false: left to the parsed path
}

const (
	callerTag = "caller1"
	calleeTag = "callee1"
	dlgCallID = "dlg-call-1@192.0.2.7"
)

var inDialogCases = []inDialogCase{
	{"ACK", "ACK sip:bob@192.0.2.8:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bK-a1;rport\r\n" +
		"Route: %[1]s\r\nMax-Forwards: 70\r\nFrom: <sip:alice@switchboard.local>;tag=" + callerTag + "\r\nTo: <sip:bob@switchboard.local>;tag=" + calleeTag + "\r\n" +
		"Call-ID: " + dlgCallID + "\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n", true},
	{"BYE of the callee", "BYE sip:alice@192.0.2.7:5062;transport=udp SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.1.1:5070;branch=z9hG4bK-b1;rport\r\n" +
		"Route: %[1]s\r\nMax-Forwards: 69\r\nFrom: \"Bob\" <sip:bob@switchboard.local>;tag=" + calleeTag + "\r\nTo: <sip:alice@switchboard.local>;tag=" + callerTag + "\r\n" +
		"Call-ID: " + dlgCallID + "\r\nCSeq: 5 BYE\r\nUser-Agent: x\r\nContent-Length: 0\r\n\r\n", true},
	{"compact, no Max-Forwards", "BYE sip:bob@192.0.2.8:5070 SIP/2.0\r\nv: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bK-a2\r\n" +
		"Route: %[1]s\r\nf: <sip:alice@switchboard.local>;tag=" + callerTag + "\r\nt: <sip:bob@switchboard.local>;tag=" + calleeTag + "\r\n" +
		"i: " + dlgCallID + "\r\nCSeq: 2 BYE\r\nl: 0\r\n\r\n", true},
	{"credentials", "ACK sip:bob@192.0.2.8:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bK-a3;rport\r\n" +
		"Max-Forwards: 70\r\nProxy-Authorization: Digest username=\"alice\", realm=\"switchboard.local\", nonce=\"n\", uri=\"sip:bob@x\", response=\"0\"\r\n" +
		"Route: %[1]s\r\nProxy-Authorization: Digest username=\"alice\", realm=\"other.example\", nonce=\"n\", uri=\"sip:bob@x\", response=\"0\"\r\n" +
		"From: <sip:alice@switchboard.local>;tag=" + callerTag + "\r\nTo: <sip:bob@switchboard.local>;tag=" + calleeTag + "\r\n" +
		"Call-ID: " + dlgCallID + "\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n", true},
	{"double record-route, then a proxy", "BYE sip:bob@192.0.2.8:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bK-a4\r\n" +
		"Route: %[1]s\r\nRoute: <sip:%[2]s;transport=udp;lr>\r\nRoute: <sip:192.0.2.50:5080;lr>\r\nMax-Forwards: 70\r\n" +
		"From: <sip:alice@switchboard.local>;tag=" + callerTag + "\r\nTo: <sip:bob@switchboard.local>;tag=" + calleeTag + "\r\n" +
		"Call-ID: " + dlgCallID + "\r\nCSeq: 3 BYE\r\nContent-Length: 0\r\n\r\n", true},
	{"IPv6 target", "ACK sip:bob@[2001:db8::8]:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bK-a5;rport\r\n" +
		"Route: %[1]s\r\nFrom: <sip:alice@switchboard.local>;tag=" + callerTag + "\r\nTo: <sip:bob@switchboard.local>;tag=" + calleeTag + "\r\n" +
		"Call-ID: " + dlgCallID + "\r\nCSeq: 1 ACK\r\n\r\n", false}, // no IPv6 listener: the parsed path's 503
	{"not signed", "BYE sip:bob@192.0.2.8:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bK-a6\r\n" +
		"Route: <sip:%[2]s;lr;sbd=00112233445566778899>\r\nFrom: <sip:alice@switchboard.local>;tag=" + callerTag + "\r\nTo: <sip:bob@switchboard.local>;tag=" + calleeTag + "\r\n" +
		"Call-ID: " + dlgCallID + "\r\nCSeq: 3 BYE\r\nContent-Length: 0\r\n\r\n", false},
	{"no Route", "BYE sip:bob@192.0.2.8:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bK-a7\r\n" +
		"From: <sip:alice@switchboard.local>;tag=" + callerTag + "\r\nTo: <sip:bob@switchboard.local>;tag=" + calleeTag + "\r\n" +
		"Call-ID: " + dlgCallID + "\r\nCSeq: 3 BYE\r\nContent-Length: 0\r\n\r\n", false},
	{"Routes on one line", "BYE sip:bob@192.0.2.8:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bK-a8\r\n" +
		"Route: %[1]s, <sip:192.0.2.50;lr>\r\nFrom: <sip:alice@switchboard.local>;tag=" + callerTag + "\r\nTo: <sip:bob@switchboard.local>;tag=" + calleeTag + "\r\n" +
		"Call-ID: " + dlgCallID + "\r\nCSeq: 3 BYE\r\nContent-Length: 0\r\n\r\n", false},
	{"alias", "BYE sip:bob@10.0.0.8:5070;alias=192.0.2.8~5070~1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bK-a9\r\n" +
		"Route: %[1]s\r\nFrom: <sip:alice@switchboard.local>;tag=" + callerTag + "\r\nTo: <sip:bob@switchboard.local>;tag=" + calleeTag + "\r\n" +
		"Call-ID: " + dlgCallID + "\r\nCSeq: 3 BYE\r\nContent-Length: 0\r\n\r\n", false},
	{"over TCP", "BYE sip:bob@192.0.2.8:5070;transport=tcp SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bK-b0\r\n" +
		"Route: %[1]s\r\nFrom: <sip:alice@switchboard.local>;tag=" + callerTag + "\r\nTo: <sip:bob@switchboard.local>;tag=" + calleeTag + "\r\n" +
		"Call-ID: " + dlgCallID + "\r\nCSeq: 3 BYE\r\nContent-Length: 0\r\n\r\n", false},
	{"a host name", "BYE sip:bob@pbx.example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bK-b1\r\n" +
		"Route: %[1]s\r\nFrom: <sip:alice@switchboard.local>;tag=" + callerTag + "\r\nTo: <sip:bob@switchboard.local>;tag=" + calleeTag + "\r\n" +
		"Call-ID: " + dlgCallID + "\r\nCSeq: 3 BYE\r\nContent-Length: 0\r\n\r\n", false},
	{"an SDP", "ACK sip:bob@192.0.2.8:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bK-b2\r\n" +
		"Route: %[1]s\r\nFrom: <sip:alice@switchboard.local>;tag=" + callerTag + "\r\nTo: <sip:bob@switchboard.local>;tag=" + calleeTag + "\r\n" +
		"Call-ID: " + dlgCallID + "\r\nCSeq: 1 ACK\r\nContent-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n", false},
	{"Proxy-Require", "BYE sip:bob@192.0.2.8:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bK-b3\r\n" +
		"Route: %[1]s\r\nProxy-Require: foo\r\nFrom: <sip:alice@switchboard.local>;tag=" + callerTag + "\r\nTo: <sip:bob@switchboard.local>;tag=" + calleeTag + "\r\n" +
		"Call-ID: " + dlgCallID + "\r\nCSeq: 3 BYE\r\nContent-Length: 0\r\n\r\n", false},
}

// inDialogSrc is where the test requests come from.
var inDialogSrc = netip.MustParseAddrPort("192.0.2.7:5062")

// inDialogMessage fills c's message in for sw.
func inDialogMessage(sw *testSwitch, msg string) []byte {
	hostPort := sw.srv.Addrs()["udp"]
	route := "<sip:" + hostPort + ";transport=udp;lr;" + dialogParam + "=" + sw.srv.dialogToken(dlgCallID, callerTag) + ">"
	return []byte(strings.NewReplacer("%[1]s", route, "%[2]s", hostPort).Replace(msg))
}

// TestInDialogAsParsed: an ACK or a BYE forwarded from its bytes is the
// request the parsed path forwards, to the same next hop from the same
// listener; what the reading does not vouch for is left to it.
func TestInDialogAsParsed(t *testing.T) {
	sw := startSwitch(t)
	fp := sw.fastPath()
	for _, tc := range inDialogCases {
		t.Run(tc.name, func(t *testing.T) {
			if got := checkInDialog(t, sw, fp, inDialogMessage(sw, tc.msg)); got != tc.raw {
				t.Fatalf("forwarded from the bytes: %v, want %v", got, tc.raw)
			}
		})
	}
}

// checkInDialog forwards data from its bytes and, when that takes it and
// sipgo parses it, compares with the parsed path's prepare. It reports
// whether the bytes took it.
func checkInDialog(t *testing.T, sw *testSwitch, fp *fastPath, data []byte) bool {
	t.Helper()
	method := gosip.BYE
	if bytes.HasPrefix(data, []byte("ACK ")) {
		method = gosip.ACK
	}
	var r rawInDialog
	if !readInDialog(&r, data, method) {
		return false
	}
	var buf bytes.Buffer
	dest, laddr, ok := fp.forwardRaw(&r, data, inDialogSrc, &buf)
	if !ok {
		return false
	}
	m, err := gosip.ParseMessage(data)
	if err != nil {
		return true // forwarded as it came (see rawindialog.go)
	}
	req, ok := m.(*gosip.Request)
	if !ok {
		t.Fatalf("read as a request, parsed as %T", m)
	}
	req.SetTransport("UDP")
	req.SetSource(inDialogSrc.String())
	if err := sw.srv.validate(req); err != nil {
		t.Fatalf("forwarded from the bytes, refused by validate: %v", err)
	}
	popped, signed := sw.srv.popOwnRoutes(req)
	if err := sw.srv.inOurDialog(req, popped, signed); err != nil {
		t.Fatalf("forwarded from the bytes, refused by inOurDialog: %v", err)
	}
	fwd, err := sw.srv.prepare(req, dialogTarget(req), false, true)
	if err != nil {
		t.Fatalf("forwarded from the bytes, refused by prepare: %v", err)
	}
	if fwd.Destination() != dest.String() || fwd.Laddr.String() != laddr {
		t.Fatalf("to %s from %s, parsed path to %s from %s", dest, laddr, fwd.Destination(), fwd.Laddr.String())
	}
	gm, err := gosip.ParseMessage(buf.Bytes())
	if err != nil {
		t.Fatalf("what is sent does not parse: %v\n%s", err, buf.Bytes())
	}
	got := gm.(*gosip.Request)
	if got.Recipient.String() != fwd.Recipient.String() || got.Method != fwd.Method {
		t.Fatalf("sent %s %s, parsed path %s %s", got.Method, got.Recipient.String(), fwd.Method, fwd.Recipient.String())
	}
	// The same headers; in the same order but for Max-Forwards and the
	// credentials kept, which the parsed path moves to the end.
	if g, w := sortedLines(got), sortedLines(fwd); g != w {
		t.Fatalf("sent\n%s\nparsed path sends\n%s", buf.Bytes(), fwd)
	}
	for _, name := range []string{"Via", "Route"} {
		if g, w := headerValues(got, name), headerValues(fwd, name); !slices.Equal(g, w) {
			t.Fatalf("%s: sent %q, parsed path %q", name, g, w)
		}
	}
	return true
}

// fastPath returns the switch's fast path once Serve has started it.
func (s *testSwitch) fastPath() *fastPath {
	s.t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		s.srv.mu.Lock()
		f := s.srv.fast
		s.srv.mu.Unlock()
		if f != nil {
			return f
		}
	}
	s.t.Fatal("the fast path did not start")
	return nil
}

// sortedLines is headerLines sorted.
func sortedLines(m interface{ Headers() []gosip.Header }) string {
	lines := strings.Split(headerLines(m), "\n")
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// FuzzInDialog: whatever ACK or BYE is forwarded from its bytes and
// parsed by sipgo is forwarded as the parsed path forwards it.
func FuzzInDialog(f *testing.F) {
	sw := startSwitch(f)
	fp := sw.fastPath()
	for _, tc := range inDialogCases {
		f.Add(inDialogMessage(sw, tc.msg))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkInDialog(t, sw, fp, data)
	})
}

// BenchmarkInDialog: forwarding a BYE from its bytes (readInDialog on the
// read loop, forwardRaw on a worker) against the parsed path (sipgo's
// parse, validate, popOwnRoutes, inOurDialog, prepare and sipgo's
// writing of the request), without the system calls.
func BenchmarkInDialog(b *testing.B) {
	sw := startSwitch(b)
	fp := sw.fastPath()
	data := inDialogMessage(sw, inDialogCases[1].msg)
	b.Run("bytes", func(b *testing.B) {
		var buf bytes.Buffer
		b.ReportAllocs()
		for b.Loop() {
			var r rawInDialog
			if !readInDialog(&r, data, gosip.BYE) {
				b.Fatal("not read")
			}
			if _, _, ok := fp.forwardRaw(&r, data, inDialogSrc, &buf); !ok {
				b.Fatal("not forwarded")
			}
		}
	})
	b.Run("parsed", func(b *testing.B) {
		var buf bytes.Buffer
		b.ReportAllocs()
		for b.Loop() {
			req := fp.parseRequest(data)
			req.SetTransport("UDP")
			req.SetSource(inDialogSrc.String())
			if err := sw.srv.validate(req); err != nil {
				b.Fatal(err)
			}
			popped, signed := sw.srv.popOwnRoutes(req)
			if err := sw.srv.inOurDialog(req, popped, signed); err != nil {
				b.Fatal(err)
			}
			fwd, err := sw.srv.prepare(req, dialogTarget(req), false, true)
			if err != nil {
				b.Fatal(err)
			}
			buf.Reset()
			fwd.StringWrite(&buf)
		}
	})
}

// TestWriteVia: writeVia writes what sipgo's StringWrite writes.
func TestWriteVia(t *testing.T) {
	for _, host := range []string{"192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1", "fe80::1%eth0", "pbx.example.com"} {
		for _, port := range []int{0, 5060} {
			v := &gosip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: host, Port: port, Params: gosip.NewParams()}
			v.Params.Add("branch", "z9hG4bK-1")
			v.Params.Add("rport", "")
			v.Params.Add("x", "a b")
			var got, want bytes.Buffer
			writeVia(&got, v)
			v.StringWrite(&want)
			want.WriteString("\r\n")
			if got.String() != want.String() {
				t.Errorf("wrote %q, sipgo %q", got.String(), want.String())
			}
		}
	}
}

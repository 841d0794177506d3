package sip

import (
	"bytes"
	"strings"
	"testing"

	gosip "github.com/emiago/sipgo/sip"
)

// A call's INVITE with credentials and its 200 as SIPp sends them.
const (
	copyInvite = "INVITE sip:bob@switchboard.local SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1-2;rport\r\n" +
		"From: alice <sip:alice@switchboard.local>;tag=1\r\n" +
		"To: bob <sip:bob@switchboard.local>\r\n" +
		"Call-ID: 1-123@127.0.0.1\r\n" +
		"CSeq: 2 INVITE\r\n" +
		"Contact: <sip:alice@127.0.0.1:5070>\r\n" +
		"Max-Forwards: 70\r\n" +
		"Proxy-Authorization: Digest username=\"alice\",realm=\"switchboard.local\",nonce=\"abc\",uri=\"sip:bob@switchboard.local\",response=\"0123456789abcdef0123456789abcdef\",algorithm=MD5\r\n" +
		"Subject: Performance Test\r\n" +
		"Content-Type: application/sdp\r\n" +
		"Content-Length: 129\r\n\r\n" +
		"v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
	copyOK = "SIP/2.0 200 OK\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-sb-x;rport=5060\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1-2;rport=5070;received=127.0.0.1\r\n" +
		"Record-Route: <sip:127.0.0.1:5060;transport=udp;lr;sb=abc>\r\n" +
		"From: alice <sip:alice@switchboard.local>;tag=1\r\n" +
		"To: bob <sip:bob@switchboard.local>;tag=2\r\n" +
		"Call-ID: 1-123@127.0.0.1\r\n" +
		"CSeq: 2 INVITE\r\n" +
		"Contact: <sip:bob@127.0.0.1:5080;transport=UDP>\r\n" +
		"Content-Type: application/sdp\r\n" +
		"Content-Length: 0\r\n\r\n"
)

func parseCopyMessage(t testing.TB, raw string) gosip.Message {
	m, err := gosip.NewParser().ParseSIP([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestCopiesLeaveTheOriginal: what prepare and relay change of their copies
// (the headers each copies) does not reach the received message, which
// the server transaction and the call's dialog keep; the copies are sent
// as Clone's would be.
func TestCopiesLeaveTheOriginal(t *testing.T) {
	req := parseCopyMessage(t, copyInvite).(*gosip.Request)
	before := req.String()
	fwd := requestCopy(req, gosip.Uri{Scheme: "sip", User: "bob", Host: "127.0.0.1", Port: 5080})
	if want := strings.Replace(req.Clone().String(), "sip:bob@switchboard.local SIP", "sip:bob@127.0.0.1:5080 SIP", 1); fwd.String() != want {
		t.Fatalf("request copy:\n%s\nwant:\n%s", fwd, want)
	}
	fwd.Via().Params.Add("received", "192.0.2.1")
	fwd.From().Params.Add("x", "1")
	fwd.To().Address.User = "carol"
	fwd.CSeq().SeqNo++
	fwd.Contact().Address.UriParams.Add("alias", "a~1~udp")
	fwd.MaxForwards().Dec()
	fwd.RemoveHeader("Subject")
	fwd.SetBody([]byte("v=0\r\n"))
	if req.String() != before {
		t.Fatalf("the request changed with its copy:\n%s", req)
	}

	res := parseCopyMessage(t, copyOK).(*gosip.Response)
	before = res.String()
	out := relayCopy(res)
	if out.String() != res.Clone().String() {
		t.Fatalf("response copy:\n%s\nwant:\n%s", out, res.Clone())
	}
	removeTopHeader(out, "Via")
	out.CSeq().SeqNo = 9
	out.From().Address.User = "dave"
	out.To().Params.Add("y", "2")
	out.Contact().Address.UriParams.Add("alias", "b~2~udp")
	out.SetBody([]byte("v=0\r\n"))
	if res.String() != before {
		t.Fatalf("the response changed with its copy:\n%s", res)
	}
}

func BenchmarkRequestCopy(b *testing.B) {
	req := parseCopyMessage(b, copyInvite).(*gosip.Request)
	uri := gosip.Uri{Scheme: "sip", User: "bob", Host: "127.0.0.1", Port: 5080}
	b.Run("copy", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			requestCopy(req, uri)
		}
	})
	b.Run("clone", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			req.Clone().Recipient = uri
		}
	})
}

func BenchmarkRelayCopy(b *testing.B) {
	res := parseCopyMessage(b, copyOK).(*gosip.Response)
	b.Run("copy", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			relayCopy(res)
		}
	})
	b.Run("clone", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			res.Clone()
		}
	})
}

// TestHashWritersDoNotAllocate: what loopHash writes of the Request-URI
// and the Via costs no allocation once its buffer has grown (sipgo's
// StringWrite of the same: 3 and 8, docs/upstream/sipgo-stringwrite-allocs.md).
func TestHashWritersDoNotAllocate(t *testing.T) {
	via := &gosip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: "192.0.2.1", Port: 5060,
		Params: gosip.HeaderParams{{K: "branch", V: "z9hG4bK776asdhds"}, {K: "rport", V: "5060"}, {K: "received", V: "192.0.2.1"}}}
	uri := gosip.Uri{Scheme: "sip", User: "bob", Host: "192.0.2.2", Port: 5060, UriParams: gosip.HeaderParams{{K: "transport", V: "udp"}}}
	var buf bytes.Buffer
	buf.Grow(512)
	if n := testing.AllocsPerRun(100, func() {
		buf.Reset()
		hashURI(&buf, &uri)
		hashVia(&buf, via)
	}); n != 0 {
		t.Errorf("%v allocations per Request-URI and Via written", n)
	}
	if got := buf.String(); got != "sip:bob@192.0.2.2:5060;transport=udpSIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;rport=5060;received=192.0.2.1" {
		t.Errorf("written %q", got)
	}
}

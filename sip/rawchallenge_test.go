package sip

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	gosip "github.com/emiago/sipgo/sip"

	"github.com/switchboard/switchboard/registrar"
)

// rawRequestCases are REGISTERs and INVITEs without credentials (and one
// with credentials for another realm, challenged as well), %[1]s
// standing for the sender's address and %[2]s for the domain; raw tells
// whether the stateless challenge answers them from their bytes.
var rawRequestCases = []struct {
	name string
	msg  string
	raw  bool
}{
	{"sipp", "REGISTER sip:%[2]s SIP/2.0\r\nVia: SIP/2.0/UDP %[1]s;branch=z9hG4bK-1;rport\r\nFrom: <sip:carol@%[2]s>;tag=f1\r\n" +
		"To: <sip:carol@%[2]s>\r\nCall-ID: c1@h\r\nCSeq: 1 REGISTER\r\nContact: <sip:carol@%[1]s>\r\nMax-Forwards: 70\r\nExpires: 3600\r\n" +
		"User-Agent: SIPp\r\nContent-Length: 0\r\n\r\n", true},
	{"compact forms, lower case, spacing", "REGISTER sip:%[2]s SIP/2.0\r\nv : SIP/2.0/UDP %[1]s;branch=z9hG4bK-2;rport\r\nf:<sip:carol@%[2]s>;tag=f2\r\n" +
		"t:  \"Carol\" <sip:carol@%[2]s>\r\ni: c2\r\ncseq:  7 REGISTER\r\nm: <sip:carol@%[1]s>\r\nl: 0\r\n\r\n", true},
	{"several Vias", "REGISTER sip:%[2]s SIP/2.0\r\nVia: SIP/2.0/UDP %[1]s;branch=z9hG4bK-3;rport\r\nv: SIP/2.0/TCP 192.0.2.7:5060;branch=z9hG4bK-x\r\n" +
		"Via: SIP/2.0/UDP 192.0.2.8;branch=z9hG4bK-y;received=192.0.2.9\r\nFrom: <sip:carol@%[2]s>;tag=f3\r\nTo: <sip:carol@%[2]s>\r\n" +
		"Call-ID: c3\r\nCSeq: 1 REGISTER\r\nContact: <sip:carol@%[1]s>\r\n\r\n", true},
	{"a tag in the display name", "REGISTER sip:%[2]s SIP/2.0\r\nVia: SIP/2.0/UDP %[1]s;branch=z9hG4bK-4\r\nFrom: \"x;tag=no\" <sip:carol@%[2]s;tag=no>;tag=yes\r\n" +
		"To: \"y;tag=no\" <sip:carol@%[2]s>\r\nCall-ID: c4\r\nCSeq: 2 REGISTER\r\nContact: *\r\nExpires: 0\r\n\r\n", true},
	{"rport with a value, received already there", "REGISTER sip:%[2]s SIP/2.0\r\nVia: SIP/2.0/UDP %[1]s;rport=1;received=192.0.2.1;branch=z9hG4bK-5\r\n" +
		"From: <sip:carol@%[2]s>;tag=f5\r\nTo: <sip:carol@%[2]s>\r\nCall-ID: c5\r\nCSeq: 1 REGISTER\r\n\r\n", true},
	{"rport before received", "REGISTER sip:%[2]s SIP/2.0\r\nVia: SIP/2.0/UDP %[1]s;rport;received=192.0.2.1;branch=z9hG4bK-6\r\n" +
		"From: <sip:carol@%[2]s>;tag=f6\r\nTo: <sip:carol@%[2]s>\r\nCall-ID: c6\r\nCSeq: 1 REGISTER\r\n\r\n", true},

	{"white space in a Via", "REGISTER sip:%[2]s SIP/2.0\r\nVia: SIP/2.0/UDP %[1]s ; branch=z9hG4bK-19 ;rport\r\nFrom: <sip:carol@%[2]s>;tag=f19\r\n" +
		"To: <sip:carol@%[2]s>\r\nCall-ID: c19\r\nCSeq: 1 REGISTER\r\n\r\n", false},
	{"white space in CSeq", "REGISTER sip:%[2]s SIP/2.0\r\nVia: SIP/2.0/UDP %[1]s;branch=z9hG4bK-20\r\nFrom: <sip:carol@%[2]s>;tag=f20\r\n" +
		"To: <sip:carol@%[2]s>\r\nCall-ID: c20\r\nCSeq: 1  REGISTER\r\n\r\n", false},
	{"a Via line listing two", "REGISTER sip:%[2]s SIP/2.0\r\nVia: SIP/2.0/UDP %[1]s;branch=z9hG4bK-21;rport, SIP/2.0/TCP 192.0.2.7:5060;branch=z9hG4bK-x\r\n" +
		"From: <sip:carol@%[2]s>;tag=f21\r\nTo: <sip:carol@%[2]s>\r\nCall-ID: c21\r\nCSeq: 1 REGISTER\r\n\r\n", false},
	{"credentials", "REGISTER sip:%[2]s SIP/2.0\r\nVia: SIP/2.0/UDP %[1]s;branch=z9hG4bK-7\r\nFrom: <sip:carol@%[2]s>;tag=f7\r\n" +
		"To: <sip:carol@%[2]s>\r\nCall-ID: c7\r\nCSeq: 1 REGISTER\r\nAuthorization: Digest username=\"carol\", realm=\"x\", nonce=\"n\", uri=\"sip:x\", response=\"0\"\r\n\r\n", true}, // registered from the bytes (rawregister.go): challenged
	{"a To tag", "REGISTER sip:%[2]s SIP/2.0\r\nVia: SIP/2.0/UDP %[1]s;branch=z9hG4bK-8\r\nFrom: <sip:carol@%[2]s>;tag=f8\r\n" +
		"To: <sip:carol@%[2]s>;tag=t8\r\nCall-ID: c8\r\nCSeq: 1 REGISTER\r\n\r\n", false},
	{"a folded header", "REGISTER sip:%[2]s SIP/2.0\r\nVia: SIP/2.0/UDP %[1]s;branch=z9hG4bK-9\r\nFrom: <sip:carol@%[2]s>\r\n ;tag=f9\r\n" +
		"To: <sip:carol@%[2]s>\r\nCall-ID: c9\r\nCSeq: 1 REGISTER\r\n\r\n", false},
	{"Max-Forwards 0", "REGISTER sip:%[2]s SIP/2.0\r\nVia: SIP/2.0/UDP %[1]s;branch=z9hG4bK-10\r\nFrom: <sip:carol@%[2]s>;tag=f10\r\n" +
		"To: <sip:carol@%[2]s>\r\nCall-ID: c10\r\nCSeq: 1 REGISTER\r\nMax-Forwards: 0\r\n\r\n", false},
	{"a body", "REGISTER sip:%[2]s SIP/2.0\r\nVia: SIP/2.0/UDP %[1]s;branch=z9hG4bK-11\r\nFrom: <sip:carol@%[2]s>;tag=f11\r\n" +
		"To: <sip:carol@%[2]s>\r\nCall-ID: c11\r\nCSeq: 1 REGISTER\r\nContent-Length: 5\r\n\r\nhello", false},
	{"another domain", "REGISTER sip:example.org SIP/2.0\r\nVia: SIP/2.0/UDP %[1]s;branch=z9hG4bK-12\r\nFrom: <sip:carol@%[2]s>;tag=f12\r\n" +
		"To: <sip:carol@%[2]s>\r\nCall-ID: c12\r\nCSeq: 1 REGISTER\r\n\r\n", false},
	{"CSeq of another method", "REGISTER sip:%[2]s SIP/2.0\r\nVia: SIP/2.0/UDP %[1]s;branch=z9hG4bK-13\r\nFrom: <sip:carol@%[2]s>;tag=f13\r\n" +
		"To: <sip:carol@%[2]s>\r\nCall-ID: c13\r\nCSeq: 1 INVITE\r\n\r\n", false},
	{"two Call-IDs", "REGISTER sip:%[2]s SIP/2.0\r\nVia: SIP/2.0/UDP %[1]s;branch=z9hG4bK-14\r\nFrom: <sip:carol@%[2]s>;tag=f14\r\n" +
		"To: <sip:carol@%[2]s>\r\nCall-ID: c14\r\ni: c14b\r\nCSeq: 1 REGISTER\r\n\r\n", false},
	{"no Via", "REGISTER sip:%[2]s SIP/2.0\r\nFrom: <sip:carol@%[2]s>;tag=f15\r\nTo: <sip:carol@%[2]s>\r\nCall-ID: c15\r\nCSeq: 1 REGISTER\r\n\r\n", false},
	{"a Via of ours", "REGISTER sip:%[2]s SIP/2.0\r\nVia: SIP/2.0/UDP %[1]s;branch=z9hG4bK-16\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=" + branchPrefix + "00\r\n" +
		"From: <sip:carol@%[2]s>;tag=f16\r\nTo: <sip:carol@%[2]s>\r\nCall-ID: c16\r\nCSeq: 1 REGISTER\r\n\r\n", false},
	{"Proxy-Require", "REGISTER sip:%[2]s SIP/2.0\r\nVia: SIP/2.0/UDP %[1]s;branch=z9hG4bK-17\r\nFrom: <sip:carol@%[2]s>;tag=f17\r\n" +
		"To: <sip:carol@%[2]s>\r\nCall-ID: c17\r\nCSeq: 1 REGISTER\r\nProxy-Require: foo\r\n\r\n", false},
	{"invite", "INVITE sip:bob@%[2]s SIP/2.0\r\nVia: SIP/2.0/UDP %[1]s;branch=z9hG4bK-30;rport\r\nMax-Forwards: 70\r\n" +
		"From: \"Carol\" <sip:carol@%[2]s>;tag=f30\r\nTo: <sip:bob@%[2]s>\r\nCall-ID: c30\r\nCSeq: 1 INVITE\r\n" +
		"Contact: <sip:carol@%[1]s>\r\nContent-Type: application/sdp\r\nContent-Length: 12\r\n\r\nv=0\r\no=x y\r\n", true},
	{"invite to a number elsewhere, no Content-Length", "INVITE sip:+15551234@example.org SIP/2.0\r\nv: SIP/2.0/UDP %[1]s;branch=z9hG4bK-31\r\n" +
		"f: <sip:carol@%[2]s>;tag=f31\r\nt: <sip:+15551234@example.org>\r\ni: c31\r\nCSeq: 9 INVITE\r\n\r\nv=0\r\n", true},
	{"invite, Content-Length longer than the body", "INVITE sip:bob@%[2]s SIP/2.0\r\nVia: SIP/2.0/UDP %[1]s;branch=z9hG4bK-32\r\n" +
		"From: <sip:carol@%[2]s>;tag=f32\r\nTo: <sip:bob@%[2]s>\r\nCall-ID: c32\r\nCSeq: 1 INVITE\r\nContent-Length: 99\r\n\r\nv=0\r\n", false},
	{"invite from elsewhere", "INVITE sip:bob@%[2]s SIP/2.0\r\nVia: SIP/2.0/UDP %[1]s;branch=z9hG4bK-33\r\n" +
		"From: <sip:mallory@example.org>;tag=f33\r\nTo: <sip:bob@%[2]s>\r\nCall-ID: c33\r\nCSeq: 1 INVITE\r\n\r\n", false},
	{"invite to a tel URI", "INVITE tel:+15551234 SIP/2.0\r\nVia: SIP/2.0/UDP %[1]s;branch=z9hG4bK-34\r\n" +
		"From: <sip:carol@%[2]s>;tag=f34\r\nTo: <tel:+15551234>\r\nCall-ID: c34\r\nCSeq: 1 INVITE\r\n\r\n", false},
	{"invite with credentials", "INVITE sip:bob@%[2]s SIP/2.0\r\nVia: SIP/2.0/UDP %[1]s;branch=z9hG4bK-35\r\n" +
		"From: <sip:carol@%[2]s>;tag=f35\r\nTo: <sip:bob@%[2]s>\r\nCall-ID: c35\r\nCSeq: 1 INVITE\r\nProxy-Authorization: Digest username=\"carol\"\r\n\r\n", false},
	{"bare LF", "REGISTER sip:%[2]s SIP/2.0\nVia: SIP/2.0/UDP %[1]s;branch=z9hG4bK-18\nFrom: <sip:carol@%[2]s>;tag=f18\n" +
		"To: <sip:carol@%[2]s>\nCall-ID: c18\nCSeq: 1 REGISTER\n\n", false},
}

// TestRawChallengeAsParsed: a REGISTER or initial INVITE without
// credentials gets the same answer from its bytes as from the parsed path
// — status, Vias (with RFC 3581's rport and received), From, To and its
// tag, Call-ID, CSeq, and the challenge with the same nonce — and those the
// stateless challenge does not vouch for go down the parsed path.
func TestRawChallengeAsParsed(t *testing.T) {
	sw := startSwitch(t)
	c := newRawClient(t, sw)
	ask := func(msg string) (string, bool) {
		t.Helper()
		return c.ask(msg, time.Second)
	}
	fast := c.fast
	for _, tc := range rawRequestCases {
		t.Run(tc.name, func(t *testing.T) {
			invite := strings.HasPrefix(tc.msg, "INVITE ")
			msg := fmt.Sprintf(tc.msg, c.conn.LocalAddr().String(), testDomain)
			fast.noRaw.Store(true)
			parsed, parsedOK := ask(msg)
			fast.noRaw.Store(false)
			before := fast.raw.Load()
			raw, rawOK := ask(msg)
			if took := fast.raw.Load() > before; took != tc.raw {
				t.Fatalf("answered from the bytes: %v, want %v; answer:\n%s", took, tc.raw, raw)
			}
			if !tc.raw {
				// (An INVITE sipgo takes is a transaction: the second is
				// a retransmission of the first.)
				if !invite && parsedOK != rawOK {
					t.Fatalf("answered %v, parsed path %v:\n%s\n%s", rawOK, parsedOK, raw, parsed)
				}
				return
			}
			if !parsedOK || !rawOK {
				t.Fatalf("answered %v, parsed path %v:\n%s\n%s", rawOK, parsedOK, raw, parsed)
			}
			want := 401
			if invite {
				want = 407
			}
			p, r := mustParseResponse(t, parsed), mustParseResponse(t, raw)
			if p.StatusCode != want || r.StatusCode != want {
				t.Fatalf("status %d, parsed path %d", r.StatusCode, p.StatusCode)
			}
			if r.String() != p.String() {
				t.Fatalf("answer from the bytes:\n%s\nfrom the parsed path:\n%s", r, p)
			}
			if !strings.Contains(raw, "\r\nContent-Length: 0\r\n") {
				t.Fatalf("no Content-Length 0:\n%s", raw)
			}
		})
	}
}

func mustParseResponse(t *testing.T, s string) *gosip.Response {
	t.Helper()
	m, err := gosip.ParseMessage([]byte(s))
	if err != nil {
		t.Fatalf("%v:\n%s", err, s)
	}
	res, ok := m.(*gosip.Response)
	if !ok {
		t.Fatalf("not a response:\n%s", s)
	}
	return res
}

// FuzzReadRequest: readRequest never panics, and what it vouches for
// reads as sipgo's parser reads it: a request of that method without a To
// tag, with the same Call-ID, From tag and host, CSeq, top branch and
// rport, and number of Vias (and an ACK's To tag).
func FuzzReadRequest(f *testing.F) {
	for _, tc := range rawRequestCases {
		f.Add([]byte(fmt.Sprintf(tc.msg, "192.0.2.1:5060", testDomain)))
	}
	for _, tc := range rawRegisterCases {
		f.Add([]byte(fmt.Sprintf(tc.msg, "192.0.2.1:5060", testDomain, "c1", `Digest username="carol", realm="`+testDomain+`", nonce="n", uri="sip:x", response="0"`)))
	}
	f.Add([]byte("ACK sip:bob@" + testDomain + " SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1\r\nFrom: <sip:carol@" + testDomain + ">;tag=f1\r\n" +
		"To: <sip:bob@" + testDomain + ">;tag=sb0011223344556677\r\nCall-ID: c1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"))
	// What fuzzing found sipgo reading another way.
	for _, via := range []string{"SIP/2.0/ 0,", "SIP/2.0/ 0,SIP/2.0/ 0", "SIP/2.0/ 0:A;branch=0", "SIP/2.0/UDP h ; branch=1 ;rport"} {
		f.Add([]byte("REGISTER :00 SIP/2.0\r\nV:" + via + "\r\nF::00\r\nT::00\r\nCAll-ID:0\r\nCSeq:0 REGISTER\r\n\r\n"))
	}
	f.Add([]byte("REGISTER sip: SIP/2.0\r\nv:SIP/2.0/0 0\r\nf::000\r\nt::00\r\ni:0\r\nCSeq:0 REGISTER\r\r\nAuthoriZAtion:\r\n\r\n")) // a CR alone
	f.Add([]byte("REGISTER sip:" + testDomain + " SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-1\r\nFrom: <sip:carol@" + testDomain + ">;tag=f\r\n" +
		"To: <sip:carol@" + testDomain + ">\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\nUser-Agent:\r\nuser-agent: x\r\nExpires:\r\nAuthorization: Digest x\r\n\r\n")) // empty values
	f.Add([]byte("REGISTER sip: SIP/2.0\r\nV:SIP/2.0/0 0\r\nF:<sip:@@0>\r\nT::00\r\nCAll-ID:0\r\nCSeq:0 REGISTER\r\n\r\n")) // two @
	f.Fuzz(func(t *testing.T, data []byte) {
		method := gosip.REGISTER
		switch {
		case strings.HasPrefix(string(data), "INVITE "):
			method = gosip.INVITE
		case strings.HasPrefix(string(data), "ACK "):
			method = gosip.ACK
		}
		var r rawRequest
		if !readRequest(&r, data, method) {
			return
		}
		m, err := gosip.ParseMessage(data)
		if method == gosip.REGISTER && r.auth && r.nreg >= 0 && !r.route && err == nil {
			checkRawRegister(t, &r, data, m)
		}
		if err != nil {
			return // a header readRequest skips (Contact, ...): refused once it has credentials
		}
		req, isReq := m.(*gosip.Request)
		if !isReq || req.Method != method || isInDialog(req) != (method == gosip.ACK) || req.CallID() == nil || req.CSeq() == nil || req.Via() == nil || req.From() == nil {
			t.Fatalf("readRequest vouched for what sipgo reads as %v", m)
		}
		tag, _ := req.From().Params.Get("tag")
		branch, _ := req.Via().Params.Get("branch")
		rport, hasRport := req.Via().Params.Get("rport")
		want := struct {
			callID, tag, branch string
			seq                 uint32
			vias                int
			rport               bool
			fromHost            string
			ruriHost            string
			ruriPort            int
			toTag               string
		}{req.CallID().Value(), tag, branch, req.CSeq().SeqNo, len(req.GetHeaders("Via")), hasRport && rport == "", req.From().Address.Host, req.Recipient.Host, req.Recipient.Port, ""}
		if method == gosip.ACK {
			want.toTag, _ = req.To().Params.Get("tag")
		}
		got := want
		got.callID, got.tag, got.branch, got.seq, got.vias, got.rport = r.id.CallID, r.id.FromTag, r.id.Branch, r.id.Seq, r.nvia, r.topVia.rport
		got.fromHost, got.ruriHost, got.ruriPort, got.toTag = r.fromHost, r.ruriHost, r.ruriPort, r.toTag
		if got != want {
			t.Fatalf("readRequest read %+v, sipgo %+v", got, want)
		}
	})
}

// checkRawRegister checks that the registration from the bytes reads r,
// read from data, as the registrar reads sipgo's parse of data, m
// (registrar.RequestOf): the rawJob from a copy of data (rebase), data
// overwritten before. (A message sipgo refuses for a header the registrar
// does not read is registered from its bytes, as Kamailio, which parses
// a header when it first needs it, does.)
func checkRawRegister(t *testing.T, r *rawRequest, data []byte, m gosip.Message) {
	t.Helper()
	orig := append([]byte(nil), data...)
	j := newRawJob(r, data)
	for i := range data {
		data[i] = 'X'
	}
	defer copy(data, orig)
	local, remote := newTextAddr(netip.MustParseAddrPort("127.0.0.1:5060")), newTextAddr(netip.MustParseAddrPort("192.0.2.1:5062"))
	req := m.(*gosip.Request)
	req.SetTransport("UDP")
	req.SetSource(remote.String())
	req.SetDestination(local.String())
	want := registrar.RequestOf(req)
	got, ok := j.registration(local, remote)
	if !ok {
		t.Fatalf("no registration from what sipgo reads as:\n%s", req)
	}
	if g, w := registrationText(got), registrationText(want); g != w {
		t.Fatalf("registration from the bytes:\n%s\nfrom sipgo's parse:\n%s\nof:\n%q", g, w, orig)
	}
}

// registrationText is what the registrar reads of a REGISTER, as text.
func registrationText(q *registrar.Request) string {
	var b strings.Builder
	fmt.Fprintf(&b, "method=%s id=%+v aor=%q hasTo=%v src=%s local=%s transport=%s vias=%d ua=%q expires=%q/%v\n",
		q.Method, q.ID, q.AOR, q.HasTo, q.Source, q.Local, q.Transport, q.Vias, q.UserAgent, q.Expires, q.HasExpires)
	if v := q.Via; v != nil {
		fmt.Fprintf(&b, "via %q %q %q %q %d\n", v.ProtocolName, v.ProtocolVersion, v.Transport, v.Host, v.Port)
	}
	for _, c := range q.Contacts {
		fmt.Fprintf(&b, "contact %T %s\n", c, c.Value())
	}
	fmt.Fprintf(&b, "authorization %q\nrequire %q\npath %q\nsupported %q\n", q.Authorization, q.Require, q.Path, q.Supported)
	return b.String()
}

// BenchmarkReadRequest compares readRequest with sipgo's parser on a
// REGISTER as SIPp sends it.
func BenchmarkReadRequest(b *testing.B) {
	data := []byte(fmt.Sprintf(rawRequestCases[0].msg, "127.0.0.1:5070", testDomain))
	b.Run("readRequest", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			var r rawRequest
			if !readRequest(&r, data, gosip.REGISTER) {
				b.Fatal("not read")
			}
		}
	})
	b.Run("sipgo", func(b *testing.B) {
		p := gosip.NewParser()
		b.ReportAllocs()
		for range b.N {
			if _, err := p.ParseSIP(data); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestRawAckAbsorbed: the ACK of a 407 sent from the bytes is read from its
// bytes and absorbed (no transaction, no answer); an ACK whose To tag is
// not the one the challenge gave is not.
func TestRawAckAbsorbed(t *testing.T) {
	sw := startSwitch(t)
	c := newRawClient(t, sw)
	fast := c.fast
	local := c.conn.LocalAddr().String()
	invite := fmt.Sprintf("INVITE sip:bob@%[2]s SIP/2.0\r\nVia: SIP/2.0/UDP %[1]s;branch=z9hG4bK-a1;rport\r\nFrom: <sip:carol@%[2]s>;tag=fa\r\n"+
		"To: <sip:bob@%[2]s>\r\nCall-ID: ca\r\nCSeq: 5 INVITE\r\nContent-Length: 0\r\n\r\n", local, testDomain)
	answer, ok := c.ask(invite, 2*time.Second)
	if !ok {
		t.Fatal("no answer to the INVITE")
	}
	res := mustParseResponse(t, answer)
	if res.StatusCode != 407 {
		t.Fatalf("status %d", res.StatusCode)
	}
	tag, _ := res.To().Params.Get("tag")
	ack := func(tag string) string {
		return fmt.Sprintf("ACK sip:bob@%[2]s SIP/2.0\r\nVia: SIP/2.0/UDP %[1]s;branch=z9hG4bK-a1;rport\r\nFrom: <sip:carol@%[2]s>;tag=fa\r\n"+
			"To: <sip:bob@%[2]s>;tag=%[3]s\r\nCall-ID: ca\r\nCSeq: 5 ACK\r\nContent-Length: 0\r\n\r\n", local, testDomain, tag)
	}
	for _, tc := range []struct {
		tag    string
		absorb bool
	}{{tag, true}, {statelessTagPrefix + "0000000000000000", false}} {
		before, requests := fast.raw.Load(), sw.srv.Stats.Requests.Load()
		if _, err := c.conn.WriteToUDP([]byte(ack(tc.tag)), c.server); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, "the ACK counted", func() bool { return sw.srv.Stats.Requests.Load() > requests })
		if got := fast.raw.Load() > before; got != tc.absorb {
			t.Fatalf("ACK with To tag %s absorbed from its bytes: %v, want %v", tc.tag, got, tc.absorb)
		}
	}
	if n := sw.srv.LiveTransactions(); n != 0 {
		t.Errorf("%d transactions alive", n)
	}
}

// rawClient sends datagrams as they are to a test switch's UDP listener.
type rawClient struct {
	t      *testing.T
	conn   *net.UDPConn
	server *net.UDPAddr
	fast   *fastPath // the switch's, once started
}

func newRawClient(t *testing.T, sw *testSwitch) *rawClient {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	server, err := net.ResolveUDPAddr("udp", sw.srv.Addrs()["udp"])
	if err != nil {
		t.Fatal(err)
	}
	c := &rawClient{t: t, conn: conn, server: server}
	eventually(t, 5*time.Second, "the fast path started", func() bool {
		sw.srv.mu.Lock()
		defer sw.srv.mu.Unlock()
		c.fast = sw.srv.fast
		return c.fast != nil
	})
	return c
}

// ask sends msg and returns the datagram that comes back within wait, or
// false.
func (c *rawClient) ask(msg string, wait time.Duration) (string, bool) {
	c.t.Helper()
	if _, err := c.conn.WriteToUDP([]byte(msg), c.server); err != nil {
		c.t.Fatal(err)
	}
	buf := make([]byte, 8192)
	_ = c.conn.SetReadDeadline(time.Now().Add(wait))
	n, _, err := c.conn.ReadFromUDP(buf)
	if err != nil {
		return "", false
	}
	return string(buf[:n]), true
}

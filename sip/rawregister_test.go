package sip

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	gosip "github.com/emiago/sipgo/sip"

	"github.com/switchboard/switchboard/internal/siptest"
	"github.com/switchboard/switchboard/registrar"
)

// rawRegisterCases are REGISTERs with credentials: %[1]s stands for the
// sender's address, %[2]s for the domain, %[3]s for the Call-ID and %[4]s
// for the Authorization value (carol's, unless user says whose password
// answers the challenge); raw tells whether they are registered from their
// bytes, status is the answer's.
var rawRegisterCases = []struct {
	name   string
	msg    string
	user   string
	raw    bool
	status int
}{
	{"sipp", "REGISTER sip:%[2]s SIP/2.0\r\nVia: SIP/2.0/UDP %[1]s;branch=z9hG4bK-%[3]s;rport\r\nFrom: <sip:carol@%[2]s>;tag=f1\r\n" +
		"To: <sip:carol@%[2]s>\r\nCall-ID: %[3]s\r\nCSeq: 2 REGISTER\r\nContact: <sip:carol@%[1]s>\r\nMax-Forwards: 70\r\nExpires: 3600\r\n" +
		"User-Agent: SIPp\r\nAuthorization: %[4]s\r\nContent-Length: 0\r\n\r\n", "", true, 200},
	{"compact forms, parameters, headers nothing reads", "REGISTER sip:%[2]s SIP/2.0\r\nv: SIP/2.0/UDP %[1]s;branch=z9hG4bK-%[3]s\r\nf: \"Carol\" <sip:carol@%[2]s>;tag=f2\r\n" +
		"t: <sip:carol@%[2]s>\r\ni: %[3]s\r\nCSeq: 9 REGISTER\r\nm: \"C\" <sip:carol@%[1]s;transport=udp>;expires=600;q=0.5\r\nk: path, gruu\r\n" +
		"Allow: INVITE, ACK, BYE\r\nu: presence\r\nAccept: application/sdp\r\nDate: Sat, 13 Nov 2010 23:29:00 GMT\r\n" +
		"Authorization: %[4]s\r\nl: 0\r\n\r\n", "", true, 200},
	{"two contacts on one line, one more on another", "REGISTER sip:%[2]s SIP/2.0\r\nVia: SIP/2.0/UDP %[1]s;branch=z9hG4bK-%[3]s\r\n" +
		"From: <sip:carol@%[2]s>;tag=f3\r\nTo: <sip:carol@%[2]s>\r\nCall-ID: %[3]s\r\nCSeq: 1 REGISTER\r\n" +
		"Contact: <sip:carol@192.0.2.1:5062>, <sip:carol@192.0.2.2>;expires=120\r\nContact: <sip:carol@192.0.2.3>\r\n" +
		"Authorization: %[4]s\r\n\r\n", "", true, 200},
	{"an outbound flow, a header nobody knows, Timestamp", "REGISTER sip:%[2]s SIP/2.0\r\nVia: SIP/2.0/UDP %[1]s;branch=z9hG4bK-%[3]s;rport\r\n" +
		"From: <sip:carol@%[2]s>;tag=f4\r\nTo: <sip:carol@%[2]s>\r\nCall-ID: %[3]s\r\nCSeq: 1 REGISTER\r\nSupported: outbound\r\n" +
		"Contact: <sip:carol@%[1]s;ob>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\";reg-id=1\r\n" +
		"X-Anything: at all\r\nTimestamp: 54\r\nAuthorization: %[4]s\r\n\r\n", "", true, 200},
	{"a wrong password", "REGISTER sip:%[2]s SIP/2.0\r\nVia: SIP/2.0/UDP %[1]s;branch=z9hG4bK-%[3]s\r\nFrom: <sip:carol@%[2]s>;tag=f5\r\n" +
		"To: <sip:carol@%[2]s>\r\nCall-ID: %[3]s\r\nCSeq: 2 REGISTER\r\nContact: <sip:carol@%[1]s>\r\nAuthorization: %[4]s\r\n\r\n", "wrong", true, 401},
	{"another user's bindings", "REGISTER sip:%[2]s SIP/2.0\r\nVia: SIP/2.0/UDP %[1]s;branch=z9hG4bK-%[3]s\r\nFrom: <sip:carol@%[2]s>;tag=f6\r\n" +
		"To: <sip:alice@%[2]s>\r\nCall-ID: %[3]s\r\nCSeq: 2 REGISTER\r\nContact: <sip:alice@%[1]s>\r\nAuthorization: %[4]s\r\n\r\n", "", true, 403},
	{"too brief", "REGISTER sip:%[2]s SIP/2.0\r\nVia: SIP/2.0/UDP %[1]s;branch=z9hG4bK-%[3]s\r\nFrom: <sip:carol@%[2]s>;tag=f7\r\n" +
		"To: <sip:carol@%[2]s>\r\nCall-ID: %[3]s\r\nCSeq: 2 REGISTER\r\nContact: <sip:carol@%[1]s>\r\nExpires: 5\r\nAuthorization: %[4]s\r\n\r\n", "", true, 423},
	{"a bad Expires", "REGISTER sip:%[2]s SIP/2.0\r\nVia: SIP/2.0/UDP %[1]s;branch=z9hG4bK-%[3]s\r\nFrom: <sip:carol@%[2]s>;tag=f8\r\n" +
		"To: <sip:carol@%[2]s>\r\nCall-ID: %[3]s\r\nCSeq: 2 REGISTER\r\nContact: <sip:carol@%[1]s>\r\nExpires: soon\r\nAuthorization: %[4]s\r\n\r\n", "", true, 400},
	{"another domain", "REGISTER sip:example.org SIP/2.0\r\nVia: SIP/2.0/UDP %[1]s;branch=z9hG4bK-%[3]s\r\nFrom: <sip:carol@%[2]s>;tag=f9\r\n" +
		"To: <sip:carol@%[2]s>\r\nCall-ID: %[3]s\r\nCSeq: 2 REGISTER\r\nContact: <sip:carol@%[1]s>\r\nAuthorization: %[4]s\r\n\r\n", "", true, 403},
	{"all bindings removed", "REGISTER sip:%[2]s SIP/2.0\r\nVia: SIP/2.0/UDP %[1]s;branch=z9hG4bK-%[3]s\r\nFrom: <sip:carol@%[2]s>;tag=f10\r\n" +
		"To: <sip:carol@%[2]s>\r\nCall-ID: %[3]s\r\nCSeq: 3 REGISTER\r\nContact: *\r\nExpires: 0\r\nAuthorization: %[4]s\r\n\r\n", "", true, 200},
	{"a folded header", "REGISTER sip:%[2]s SIP/2.0\r\nVia: SIP/2.0/UDP %[1]s;branch=z9hG4bK-%[3]s\r\nFrom: <sip:carol@%[2]s>;tag=f11\r\n" +
		"To: <sip:carol@%[2]s>\r\nCall-ID: %[3]s\r\nCSeq: 2 REGISTER\r\nContact: <sip:carol@%[1]s>\r\nAuthorization: %[4]s\r\nX-Long: a\r\n b\r\n\r\n", "", false, 200},
	{"a To tag", "REGISTER sip:%[2]s SIP/2.0\r\nVia: SIP/2.0/UDP %[1]s;branch=z9hG4bK-%[3]s\r\nFrom: <sip:carol@%[2]s>;tag=f12\r\n" +
		"To: <sip:carol@%[2]s>;tag=t12\r\nCall-ID: %[3]s\r\nCSeq: 2 REGISTER\r\nContact: <sip:carol@%[1]s>\r\nAuthorization: %[4]s\r\n\r\n", "", false, 0},
}

// TestRawRegisterAsParsed: a REGISTER with credentials gets the same answer
// from its bytes as from the parsed path — status, the registrar's
// headers (Contact list, Date, Require, Supported, challenges, Min-Expires),
// Vias with rport and received, From, To and its tag, CSeq — and the
// bindings are the same; those readRequest does not vouch for go down the
// parsed path. Each case is sent twice with its own Call-ID and nonce
// count: by the parsed path, then from the bytes.
func TestRawRegisterAsParsed(t *testing.T) {
	sw := startSwitch(t)
	c := newRawClient(t, sw)
	fast := c.fast
	local := c.conn.LocalAddr().String()
	first, ok := c.ask(fmt.Sprintf(rawRequestCases[0].msg, local, testDomain), time.Second)
	if !ok {
		t.Fatal("no challenge")
	}
	chal := siptest.Challenge(mustParseResponse(t, first), "MD5")
	if chal == "" {
		t.Fatalf("no MD5 challenge:\n%s", first)
	}
	nc := 0
	msgFor := func(tmpl, user, callID string) string {
		t.Helper()
		nc++
		pw := passwords["carol"]
		if user == "wrong" {
			pw = "not-" + pw
		}
		v, err := siptest.DigestValue(chal, "REGISTER", "sip:"+testDomain, siptest.Credentials{User: "carol", Password: pw, Count: nc, Cnonce: "cn" + strconv.Itoa(nc)})
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf(tmpl, local, testDomain, callID, v)
	}
	for i, tc := range rawRegisterCases {
		t.Run(tc.name, func(t *testing.T) {
			fast.noRaw.Store(true)
			parsed, parsedOK := c.ask(msgFor(tc.msg, tc.user, fmt.Sprintf("p%d", i)), time.Second)
			parsedBindings := bindingsOf(t, sw)
			fast.noRaw.Store(false)
			before := fast.raw.Load()
			raw, rawOK := c.ask(msgFor(tc.msg, tc.user, fmt.Sprintf("r%d", i)), time.Second)
			if took := fast.raw.Load() > before; took != tc.raw {
				t.Fatalf("answered from the bytes: %v, want %v; answer:\n%s", took, tc.raw, raw)
			}
			if parsedOK != rawOK {
				t.Fatalf("answered %v, parsed path %v:\n%s\n%s", rawOK, parsedOK, raw, parsed)
			}
			if !rawOK {
				if tc.status != 0 {
					t.Fatal("no answer")
				}
				return
			}
			p, r := mustParseResponse(t, parsed), mustParseResponse(t, raw)
			if !tc.raw {
				if p.StatusCode != r.StatusCode {
					t.Fatalf("status %d, then %d", p.StatusCode, r.StatusCode)
				}
				return
			}
			if p.StatusCode != tc.status || r.StatusCode != tc.status {
				t.Fatalf("status %d, parsed path %d, want %d:\n%s", r.StatusCode, p.StatusCode, tc.status, raw)
			}
			if got, want := sameRegistration(t, r), sameRegistration(t, p); got != want {
				t.Fatalf("answer from the bytes:\n%s\nfrom the parsed path:\n%s", got, want)
			}
			if got := bindingsOf(t, sw); got != parsedBindings {
				t.Fatalf("bindings after the REGISTER from the bytes:\n%s\nafter the parsed one:\n%s", got, parsedBindings)
			}
		})
	}
}

var (
	expiresParam = regexp.MustCompile(`expires=\d+`)
	dateHeader   = regexp.MustCompile(`(?m)^Date: .*$`)
	nonceParam   = regexp.MustCompile(`nonce="[^"]*"`)
)

// sameRegistration is res as sipgo serialises it, without what differs
// between two registrations of one test case: the Call-ID (and with it
// the Via branch, the To tag and a challenge's nonce), the Date and the
// seconds left.
func sameRegistration(t *testing.T, res *gosip.Response) string {
	t.Helper()
	s := res.String()
	callID := res.CallID().Value()
	s = strings.ReplaceAll(s, callID, "CALLID")
	if tag, ok := res.To().Params.Get("tag"); ok {
		s = strings.ReplaceAll(s, tag, "TAG")
	}
	s = expiresParam.ReplaceAllString(s, "expires=N")
	s = nonceParam.ReplaceAllString(s, `nonce="N"`) // of the request's hash
	return dateHeader.ReplaceAllString(s, "Date: D")
}

// bindingsOf lists carol's bindings without what differs between two
// registrations of one test case (Call-ID, CSeq, times).
func bindingsOf(t *testing.T, sw *testSwitch) string {
	t.Helper()
	bs, _, err := sw.reg.Lookup(t.Context(), "carol")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, x := range bs {
		fmt.Fprintf(&b, "%s q=%v src=%s %s nat=%v ua=%q instance=%q reg-id=%d local=%s\n",
			x.Contact, x.Q, x.Source, x.Transport, x.NAT, x.UserAgent, x.Instance, x.RegID, x.Local)
	}
	return b.String()
}

// BenchmarkRegistration compares what the registrar gets of a REGISTER
// with credentials as SIPp sends it: read from its bytes (readRequest,
// the worker's copy, registration) or parsed by sipgo (RequestOf).
func BenchmarkRegistration(b *testing.B) {
	auth := `Digest username="u000001",realm="` + testDomain + `",nonce="GO3oSIJxEapz4XSOFFPOb6vK3ObDvTosPFNSK1iUwBY",uri="sip:` + testDomain +
		`",response="0123456789abcdef0123456789abcdef",algorithm=MD5,cnonce="6b8b4567",qop=auth,nc=00000001`
	data := []byte(fmt.Sprintf(rawRegisterCases[0].msg, "127.0.0.1:5070", testDomain, "1-12345@127.0.0.1", auth))
	local, remote := newTextAddr(netip.MustParseAddrPort("127.0.0.1:5060")), newTextAddr(netip.MustParseAddrPort("127.0.0.1:5070"))
	b.Run("bytes", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			var r rawRequest
			if !readRequest(&r, data, gosip.REGISTER) || !r.auth {
				b.Fatal("not read")
			}
			j := newRawJob(&r, data)
			if _, ok := j.registration(local, remote); !ok {
				b.Fatal("no registration")
			}
		}
	})
	b.Run("sipgo", func(b *testing.B) {
		p := gosip.NewParser()
		b.ReportAllocs()
		for range b.N {
			m, err := p.ParseSIP(data)
			if err != nil {
				b.Fatal(err)
			}
			req := m.(*gosip.Request)
			req.SetTransport("UDP")
			req.SetSource(remote.String())
			req.SetDestination(local.String())
			_ = registrar.RequestOf(req)
		}
	})
}

package sip

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	gosip "github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/switchboard/switchboard/cdr"
	"github.com/switchboard/switchboard/internal/sipstatus"
	"github.com/switchboard/switchboard/internal/siptest"
)

// fakeRouter routes every number to its carriers in order and sends
// calls from its carriers to alice; it records what was released.
type fakeRouter struct {
	carriers map[netip.AddrPort]string
	legs     []TrunkLeg

	mu       sync.Mutex
	released []string
}

func (r *fakeRouter) Carrier(src netip.AddrPort, _ string) string { return r.carriers[src] }

func (r *fakeRouter) Inbound(trunk string, req *gosip.Request) (*InboundCall, error) {
	if req.Recipient.User != "+4930123456" {
		return nil, sipstatus.New(404, "Not Found", nil)
	}
	return &InboundCall{Trunk: trunk, Dialled: req.Recipient.User, Number: "+4930123456", Users: []string{"alice"},
		Release: func() { r.release("in " + trunk) }}, nil
}

func (r *fakeRouter) Outbound(_ context.Context, user string, req *gosip.Request, local bool) (*OutboundCall, error) {
	if !strings.HasPrefix(req.Recipient.User, "0") {
		return nil, nil
	}
	if req.Recipient.User == "0900" {
		return nil, sipstatus.New(403, "Forbidden", nil, gosip.NewHeader("Warning", `399 switchboard.local "blocked"`))
	}
	return &OutboundCall{Dialled: req.Recipient.User, Number: "+49" + req.Recipient.User[1:], Route: `^\+49`,
		Legs: r.legs, Release: func() { r.release("out " + user) }}, nil
}

func (r *fakeRouter) release(what string) {
	r.mu.Lock()
	r.released = append(r.released, what)
	r.mu.Unlock()
}

func (r *fakeRouter) releases() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.released, ",")
}

// carrier is a UDP phone standing in for a carrier's SIP server.
func (s *testSwitch) carrier(name string) *siptest.Phone {
	s.t.Helper()
	return siptest.NewPhone(s.t, siptest.Config{Transport: "udp", Server: s.srv.Addrs()["udp"], User: name, Name: name, Trace: s.tr})
}

func carrierLeg(c *siptest.Phone, name, number string, user, pw string) TrunkLeg {
	host := c.Addr().Addr().String()
	uri := gosip.Uri{Scheme: "sip", User: number, Host: host, Port: int(c.Addr().Port()), UriParams: gosip.NewParams()}
	uri.UriParams.Add("user", "phone")
	id := gosip.Uri{Scheme: "sip", User: "+4930123456", Host: host, UriParams: gosip.NewParams()}
	slots := make(chan struct{}, 1)
	return TrunkLeg{Trunk: name, URI: uri, Dest: c.Addr().String(), Transport: "UDP", Identity: id,
		Username: user, Password: pw, Timeout: 500 * time.Millisecond,
		Acquire: func() (func(), bool) {
			select {
			case slots <- struct{}{}:
				return once(func() { <-slots }), true
			default:
				return nil, false
			}
		}}
}

// challenge answers req with a digest challenge (407 or 401).
func challenge(c *siptest.Phone, req *gosip.Request, code int) {
	name, reason := "WWW-Authenticate", "Unauthorized"
	if code == 407 {
		name, reason = "Proxy-Authenticate", "Proxy Authentication Required"
	}
	c.Reply(req, code, reason, name+`: Digest realm="carrier", nonce="n`+siptest.Rand(4)+`", qop="auth", algorithm=MD5`)
}

// checkCredentials verifies the digest credentials of req in header.
func checkCredentials(t *testing.T, req *gosip.Request, header, user, pw string) {
	t.Helper()
	h := req.GetHeader(header)
	if h == nil {
		t.Fatalf("re-sent INVITE without %s:\n%s", header, req)
	}
	cred, err := digest.ParseCredentials(h.Value())
	if err != nil {
		t.Fatal(err)
	}
	want, _ := digest.Digest(&digest.Challenge{Realm: "carrier", Nonce: cred.Nonce, QOP: []string{"auth"}, Algorithm: "MD5"},
		digest.Options{Method: "INVITE", URI: cred.URI, Username: user, Password: pw, Cnonce: cred.Cnonce, Count: cred.Nc})
	if cred.Username != user || cred.Response != want.Response || cred.URI != req.Recipient.String() {
		t.Errorf("%s %s: wrong credentials for %s (uri %s, want %s)", header, h.Value(), user, cred.URI, req.Recipient.String())
	}
}

// TestTrunkCallFailover: a user's call to a number goes to the first
// trunk as its Router says (Request-URI, the caller's number in From and
// P-Asserted-Identity), which challenges it (407: re-sent with credentials,
// a new branch and the next CSeq) and fails (503); the second trunk
// challenges (401) and answers. Upstream the caller sees its own From and
// CSeq; in the dialog its ACK and BYE reach the trunk with the trunk's
// From and CSeq, and the trunk's answer comes back with the caller's. The
// record names the trunk, and the Router's releases ran once each.
func TestTrunkCallFailover(t *testing.T) {
	router := &fakeRouter{carriers: map[netip.AddrPort]string{}}
	sw := startSwitch(t, func(c *Config) { c.Router = router })
	c1, c2 := sw.carrier("carrier1"), sw.carrier("carrier2")
	router.legs = []TrunkLeg{carrierLeg(c1, "carrier1", "+49301234567", "u1", "p1"), carrierLeg(c2, "carrier2", "+49301234567", "u2", "p2")}
	alice := sw.registered("alice", "")

	inv := invite(t, alice, "0301234567")
	alice.WaitResponse(inv, 100, 100)
	cseq := inv.CSeq()

	first := c1.WaitRequest("INVITE")
	if got := first.Recipient.String(); got != router.legs[0].URI.String() {
		t.Errorf("Request-URI %s, want %s", got, router.legs[0].URI.String())
	}
	if got := first.From().Address.String(); got != router.legs[0].Identity.String() {
		t.Errorf("From %s, want the caller's number %s", got, router.legs[0].Identity.String())
	}
	if tag, _ := first.From().Params.Get("tag"); !strings.Contains(inv.Get("From"), tag) {
		t.Errorf("From tag %q is not the caller's", tag)
	}
	if pai := headerValues(first, "P-Asserted-Identity"); len(pai) != 1 || pai[0] != "<"+router.legs[0].Identity.String()+">" {
		t.Errorf("P-Asserted-Identity %q", pai)
	}
	if int(first.CSeq().SeqNo) != cseq {
		t.Errorf("first INVITE CSeq %d, want the caller's %d", first.CSeq().SeqNo, cseq)
	}
	challenge(c1, first, 407)
	second := c1.WaitRequest("INVITE")
	checkCredentials(t, second, "Proxy-Authorization", "u1", "p1")
	b1, _ := first.Via().Params.Get("branch")
	b2, _ := second.Via().Params.Get("branch")
	if int(second.CSeq().SeqNo) != cseq+1 || b1 == b2 {
		t.Errorf("re-sent INVITE: CSeq %d (want %d), branch %s (first %s)", second.CSeq().SeqNo, cseq+1, b2, b1)
	}
	c1.Reply(second, 503, "Service Unavailable")

	// carrier2, on a new branch from the caller's CSeq again.
	third := c2.WaitRequest("INVITE")
	if int(third.CSeq().SeqNo) != cseq || third.GetHeader("Proxy-Authorization") != nil {
		t.Errorf("INVITE to carrier2: CSeq %d, credentials %v", third.CSeq().SeqNo, third.GetHeader("Proxy-Authorization"))
	}
	challenge(c2, third, 401)
	fourth := c2.WaitRequest("INVITE")
	checkCredentials(t, fourth, "Authorization", "u2", "p2")
	c2.Reply(fourth, 180, "Ringing")
	ringing := alice.WaitResponse(inv, 180, 180)
	if int(ringing.CSeq().SeqNo) != cseq || ringing.From().Address.User != "alice" {
		t.Errorf("180 reached alice with CSeq %d and From %s", ringing.CSeq().SeqNo, ringing.From().Address.String())
	}
	c2.Reply(fourth, 200, "OK")
	ok := alice.WaitResponse(inv, 200, 200)
	if int(ok.CSeq().SeqNo) != cseq || ok.From().Address.User != "alice" {
		t.Errorf("200 reached alice with CSeq %d and From %s", ok.CSeq().SeqNo, ok.From().Address.String())
	}

	ad := alice.UACDialog(inv, ok)
	alice.Send(ad.Request("ACK"))
	// (Not the ACKs of the 401s, which sipgo's transactions sent.)
	ack := c2.Wait(siptest.And(siptest.IsRequest("ACK"), func(m gosip.Message) bool {
		return m.(*gosip.Request).Recipient.User == "carrier2"
	}), 0, "the ACK of the 200").(*gosip.Request)
	if int(ack.CSeq().SeqNo) != cseq+1 || ack.From().Address.User != "+4930123456" {
		t.Errorf("ACK at carrier2: CSeq %d (want %d), From %s", ack.CSeq().SeqNo, cseq+1, ack.From().Address.String())
	}
	bye := ad.Request("BYE")
	alice.Send(bye)
	got := c2.WaitRequest("BYE")
	if int(got.CSeq().SeqNo) != bye.CSeq()+1 || got.From().Address.User != "+4930123456" {
		t.Errorf("BYE at carrier2: CSeq %d (want %d), From %s", got.CSeq().SeqNo, bye.CSeq()+1, got.From().Address.String())
	}
	c2.Reply(got, 200, "OK")
	done := alice.WaitFinal(bye)
	wantStatus(t, done, 200)
	if done.CSeq().SeqNo != uint32(bye.CSeq()) || done.From().Address.User != "alice" {
		t.Errorf("200 to the BYE reached alice with CSeq %d (want %d), From %s", done.CSeq().SeqNo, bye.CSeq(), done.From().Address.String())
	}

	r := sw.record(inv.Get("Call-ID"), "trunk call ended", func(r cdr.Record) bool { return !r.Ended.IsZero() })
	if r.Trunk != "carrier2" || r.Dialled != "0301234567" || r.Number != "+49301234567" || r.Route != `^\+49` || r.Status != 200 {
		t.Errorf("record %+v", r)
	}
	eventually(t, 2*time.Second, "releases", func() bool { return router.releases() == "out alice" })
	for _, l := range router.legs {
		rel, ok := l.Acquire()
		if !ok {
			t.Errorf("%s's slot still taken after the call", l.Trunk)
			continue
		}
		rel()
	}
}

// TestTrunkCallNoAnswer: a trunk that sends nothing within its leg's
// Timeout is abandoned for the next; one at max_calls is skipped; when
// every trunk fails the caller gets the best answer (RFC 3261 §16.7 step 6).
func TestTrunkCallNoAnswer(t *testing.T) {
	router := &fakeRouter{carriers: map[netip.AddrPort]string{}}
	sw := startSwitch(t, func(c *Config) { c.Router = router })
	c1, c2, c3 := sw.carrier("carrier1"), sw.carrier("carrier2"), sw.carrier("carrier3")
	full := carrierLeg(c3, "carrier3", "+4930555", "", "")
	hold, _ := full.Acquire() // carrier3 is at max_calls
	defer hold()
	router.legs = []TrunkLeg{full, carrierLeg(c1, "carrier1", "+4930555", "", ""), carrierLeg(c2, "carrier2", "+4930555", "", "")}
	alice := sw.registered("alice", "")

	start := time.Now()
	inv := invite(t, alice, "030555")
	c1.WaitRequest("INVITE") // and never answered
	req := c2.WaitRequest("INVITE")
	if d := time.Since(start); d < 450*time.Millisecond {
		t.Errorf("carrier2 tried after %s, before carrier1's 500 ms", d)
	}
	c2.Reply(req, 500, "Server Internal Error")
	res := alice.WaitFinal(inv)
	wantStatus(t, res, 408) // carrier1's timeout ranks above carrier2's 500 (§16.7 step 6)
	c3.ExpectNone(siptest.IsRequest("INVITE"), 100*time.Millisecond, "an INVITE to the trunk at max_calls")
	eventually(t, 2*time.Second, "release", func() bool { return router.releases() == "out alice" })

	// A challenge the trunk's leg has no credentials for is not passed to
	// the caller (it would answer with its own): the next trunk is tried.
	router.legs = []TrunkLeg{carrierLeg(c1, "carrier1", "+4930555", "", ""), carrierLeg(c2, "carrier2", "+4930555", "", "")}
	inv = invite(t, alice, "030555")
	challenge(c1, c1.WaitRequest("INVITE"), 407)
	c2.Reply(c2.WaitRequest("INVITE"), 486, "Busy Here")
	res = alice.WaitFinal(inv)
	wantStatus(t, res, 486)
	if len(headerValues(res, "Proxy-Authenticate")) != 0 {
		t.Errorf("the trunk's challenge reached the caller:\n%s", res)
	}
	// A refusal of the Router is the caller's answer.
	inv = invite(t, alice, "0900")
	res = alice.WaitFinal(inv)
	wantStatus(t, res, 403)
	if w := headerValues(res, "Warning"); len(w) != 1 || !strings.Contains(w[0], "blocked") {
		t.Errorf("Warning %q", w)
	}
}

// TestTrunkInbound: a request from a trunk's address needs no credentials
// and rings the users of its number; the trunk hangs up. An unknown number
// is 404; the same INVITE from anywhere else is a stranger's (403).
func TestTrunkInbound(t *testing.T) {
	router := &fakeRouter{carriers: map[netip.AddrPort]string{}}
	sw := startSwitch(t, func(c *Config) { c.Router = router })
	c1 := sw.carrier("carrier1")
	router.carriers[c1.Addr()] = "carrier1"
	alice := sw.registered("alice", "")
	udp := sw.srv.Addrs()["udp"]

	call := func(c *siptest.Phone, number string) *siptest.Msg {
		m := c.Request("INVITE", "sip:"+number+"@"+udp)
		m.Set("From", "<sip:+4917012345@carrier.example>;tag="+siptest.Rand(4))
		m.Set("Content-Type", "application/sdp")
		m.Body = sdpOffer(c)
		c.Send(m)
		return m
	}
	inv := call(c1, "+4930123456")
	req := alice.WaitRequest("INVITE")
	answer(t, alice, req)
	ok := c1.WaitResponse(inv, 200, 200)
	cd := c1.UACDialog(inv, ok)
	c1.Send(cd.Request("ACK"))
	alice.WaitRequest("ACK")
	bye := cd.Request("BYE")
	c1.Send(bye)
	alice.Reply(alice.WaitRequest("BYE"), 200, "OK")
	wantStatus(t, c1.WaitFinal(bye), 200)
	r := sw.record(inv.Get("Call-ID"), "inbound call ended", func(r cdr.Record) bool { return !r.Ended.IsZero() })
	if r.Trunk != "carrier1" || r.Number != "+4930123456" || r.Route != "inbound" || r.Status != 200 || r.HangupBy != "caller" {
		t.Errorf("record %+v", r)
	}
	eventually(t, 2*time.Second, "release", func() bool { return router.releases() == "in carrier1" })

	wantStatus(t, c1.WaitFinal(call(c1, "+4930000000")), 404)
	stranger := sw.carrier("stranger")
	wantStatus(t, stranger.WaitFinal(call(stranger, "+4930123456")), 403)
	alice.ExpectNone(siptest.IsRequest("INVITE"), 100*time.Millisecond, "a stranger's call")
}

// TestRestoreHop: a response relayed up gets the CSeq, From and To URI
// of the request it answers.
func TestRestoreHop(t *testing.T) {
	req, err := siptest.ParseRequest("INVITE sip:x@h SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\r\n"+
		"From: \"Alice\" <sip:alice@switchboard.local>;tag=a\r\nTo: <sip:0301234567@switchboard.local>\r\nCall-ID: c\r\n"+
		"CSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n", "UDP", "1.2.3.4:5060")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := siptest.Parse("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\r\n" +
		"From: <sip:+4930123456@carrier>;tag=a\r\nTo: <sip:+49301234567@carrier>;tag=b\r\nCall-ID: c\r\n" +
		"CSeq: 8 INVITE\r\nContent-Length: 0\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	res := msg.(*gosip.Response)
	restoreHop(req, res)
	if res.CSeq().SeqNo != 7 || res.From().Address.String() != "sip:alice@switchboard.local" ||
		res.To().Address.String() != "sip:0301234567@switchboard.local" {
		t.Errorf("restored:\n%s", res)
	}
	if tag, _ := res.To().Params.Get("tag"); tag != "b" {
		t.Errorf("To tag %q, want the answerer's", tag)
	}
	if tag, _ := res.From().Params.Get("tag"); tag != "a" {
		t.Errorf("From tag %q", tag)
	}
}

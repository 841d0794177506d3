package trace

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/sip"
)

var (
	swAddr     = netip.MustParseAddrPort("127.0.0.1:5060")
	callerAddr = netip.MustParseAddrPort("127.0.0.1:5070")
	calleeAddr = netip.MustParseAddrPort("127.0.0.1:5080")
)

func request(method, callID, toTag string) string {
	to := "<sip:bob@example.com>"
	if toTag != "" {
		to += ";tag=" + toTag
	}
	return fmt.Sprintf("%s sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKx\r\n"+
		"From: <sip:alice@example.com>;tag=a\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: 1 %s\r\nContent-Length: 0\r\n\r\n",
		method, to, callID, method)
}

func response(code int, reason, method, callID string) string {
	return fmt.Sprintf("SIP/2.0 %d %s\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKx\r\n"+
		"From: <sip:alice@example.com>;tag=a\r\nTo: <sip:bob@example.com>;tag=b\r\ni: %s\r\nCSeq: 1 %s\r\nl: 0\r\n\r\n",
		code, reason, callID, method)
}

func observe(s *Store, sent bool, remote netip.AddrPort, raw string, at time.Time) {
	s.Observe(sip.NewMessage(at, sent, "udp", swAddr, remote, []byte(raw)))
}

func TestCallTraceAndLadder(t *testing.T) {
	s := New(10)
	t0 := time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC)
	steps := []struct {
		sent   bool
		remote netip.AddrPort
		raw    string
	}{
		{false, callerAddr, request("INVITE", "c1", "")},
		{true, callerAddr, response(407, "Proxy Authentication Required", "INVITE", "c1")},
		{false, callerAddr, request("INVITE", "c1", "")},
		{true, callerAddr, response(100, "Trying", "INVITE", "c1")},
		{true, calleeAddr, request("INVITE", "c1", "")},
		{false, calleeAddr, response(180, "Ringing", "INVITE", "c1")},
		{true, callerAddr, response(180, "Ringing", "INVITE", "c1")},
		{false, calleeAddr, response(200, "OK", "INVITE", "c1")},
		{true, callerAddr, response(200, "OK", "INVITE", "c1")},
		{false, callerAddr, request("ACK", "c1", "b")},
		{true, calleeAddr, request("ACK", "c1", "b")},
	}
	for i, st := range steps {
		observe(s, st.sent, st.remote, st.raw, t0.Add(time.Duration(i)*time.Millisecond))
	}
	// Not calls: never traced.
	observe(s, false, callerAddr, request("REGISTER", "r1", ""), t0)
	observe(s, false, callerAddr, request("BYE", "unknown", "x"), t0)
	observe(s, false, callerAddr, "garbage\r\n\r\n", t0)
	if n, _ := s.Len(); n != 1 {
		t.Fatalf("%d calls traced, want 1", n)
	}
	c, ok := s.Get("c1")
	if !ok || len(c.Messages) != len(steps) {
		t.Fatalf("trace of c1: %v, %d messages", ok, len(c.Messages))
	}
	var labels []string
	for _, m := range c.Messages {
		labels = append(labels, m.Label())
	}
	want := "INVITE,407 Proxy Authentication Required,INVITE,100 Trying,INVITE,180 Ringing,180 Ringing,200 OK,200 OK,ACK,ACK"
	if got := strings.Join(labels, ","); got != want {
		t.Fatalf("labels %s\nwant %s", got, want)
	}
	if m := c.Messages[1]; m.Direction != "out" || m.From != swAddr.String() || m.To != callerAddr.String() || m.Method != "INVITE" {
		t.Fatalf("407: %+v", m)
	}
	from, to, caller, callee := Columns(c)
	if caller != callerAddr.String() || callee != calleeAddr.String() {
		t.Fatalf("columns: caller %s callee %s", caller, callee)
	}
	if from[4] != Switch || to[4] != Callee || from[5] != Callee || to[5] != Switch || from[0] != Caller {
		t.Fatalf("columns of messages: %v -> %v", from, to)
	}
	l := Ladder(c)
	if !strings.Contains(l, "INVITE") || !strings.Contains(l, "407 Proxy") || strings.Count(l, "\n") != len(steps)+3 {
		t.Fatalf("ladder:\n%s", l)
	}
	t.Logf("\n%s", l)
}

// A response noted after what the peer sent on receiving it is put back
// before it.
func TestCausalOrder(t *testing.T) {
	s := New(10)
	t0 := time.Now()
	observe(s, false, callerAddr, request("INVITE", "c1", ""), t0)
	observe(s, false, callerAddr, strings.Replace(request("ACK", "c1", "b"), "CSeq: 1", "CSeq: 1", 1), t0.Add(2*time.Millisecond))
	observe(s, false, callerAddr, strings.Replace(request("INVITE", "c1", ""), "CSeq: 1", "CSeq: 2", 1), t0.Add(3*time.Millisecond))
	observe(s, true, callerAddr, response(407, "Proxy Authentication Required", "INVITE", "c1"), t0.Add(4*time.Millisecond))
	c, _ := s.Get("c1")
	var got []string
	for _, m := range c.Messages {
		got = append(got, m.Label())
	}
	if g := strings.Join(got, ","); g != "INVITE,407 Proxy Authentication Required,ACK,INVITE" {
		t.Fatalf("order %s", g)
	}
}

func TestBounded(t *testing.T) {
	s := New(3)
	now := time.Now()
	for i := range 10 {
		observe(s, false, callerAddr, request("INVITE", fmt.Sprint("c", i), ""), now)
	}
	if n, _ := s.Len(); n != 3 {
		t.Fatalf("%d calls kept, want 3", n)
	}
	if _, ok := s.Get("c0"); ok {
		t.Fatal("the oldest call was not evicted")
	}
	if _, ok := s.Get("c9"); !ok {
		t.Fatal("the newest call is missing")
	}
	// One call's messages are capped.
	for range MaxMessages + 50 {
		observe(s, false, callerAddr, request("INFO", "c9", "b"), now)
	}
	c, _ := s.Get("c9")
	if len(c.Messages) != MaxMessages || c.Dropped != 51 {
		t.Fatalf("c9: %d messages, %d dropped", len(c.Messages), c.Dropped)
	}
	// A REGISTER flood adds nothing.
	_, before := s.Len()
	for i := range 10000 {
		observe(s, false, callerAddr, request("REGISTER", fmt.Sprint("r", i), ""), now)
		observe(s, false, callerAddr, request("OPTIONS", fmt.Sprint("o", i), ""), now)
	}
	if n, after := s.Len(); n != 3 || after != before {
		t.Fatalf("after a REGISTER flood: %d calls, %d bytes (before %d)", n, after, before)
	}
}

// sippRegister and sippRegisterOK are a registration as bench/compare's
// SIPp sends it and the switch answers it.
const (
	sippRegister = "REGISTER sip:switchboard.local SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:26000;branch=z9hG4bK-3197-1-0;rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:u000001@switchboard.local>;tag=3197reg1\r\n" +
		"To: <sip:u000001@switchboard.local>\r\nCall-ID: 1-3197@127.0.0.1\r\nCSeq: 2 REGISTER\r\n" +
		"Contact: <sip:u000001@127.0.0.1:26000;transport=UDP>\r\nExpires: 3600\r\n" +
		"Authorization: Digest username=\"u000001\",realm=\"switchboard.local\",uri=\"sip:switchboard.local\"," +
		"nonce=\"AAAAAGVhZ2xlc2FyZWdyZWF0YW5kc29hcmV5b3U\",response=\"0123456789abcdef0123456789abcdef\",algorithm=MD5\r\n" +
		"User-Agent: sipp\r\nContent-Length: 0\r\n\r\n"
	sippRegisterOK = "SIP/2.0 200 OK\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:26000;branch=z9hG4bK-3197-1-0;rport=26000;received=127.0.0.1\r\n" +
		"From: <sip:u000001@switchboard.local>;tag=3197reg1\r\nTo: <sip:u000001@switchboard.local>;tag=sb0123456789abcdef\r\n" +
		"Call-ID: 1-3197@127.0.0.1\r\nCSeq: 2 REGISTER\r\n" +
		"Contact: <sip:u000001@127.0.0.1:26000;transport=UDP>;expires=3600\r\nDate: Wed, 02 Dec 2026 03:00:00 GMT\r\n" +
		"Server: switchboard\r\nContent-Length: 0\r\n\r\n"
)

// BenchmarkObserveRegister is what a registration's messages, which are
// not traced, cost the store.
func BenchmarkObserveRegister(b *testing.B) {
	s := New(1000)
	req := sip.NewMessage(time.Now(), false, "udp", swAddr, callerAddr, []byte(sippRegister))
	res := sip.NewMessage(time.Now(), true, "udp", swAddr, callerAddr, []byte(sippRegisterOK))
	b.ReportAllocs()
	for b.Loop() {
		s.Observe(req)
		s.Observe(res)
	}
}

// BenchmarkObserveUntracedCall is a message of a call the store does not
// hold (its INVITE was evicted, or came before the switch started).
func BenchmarkObserveUntracedCall(b *testing.B) {
	s := New(1000)
	m := sip.NewMessage(time.Now(), false, "udp", swAddr, callerAddr, []byte(response(180, "Ringing", "INVITE", "nope")))
	b.ReportAllocs()
	for b.Loop() {
		s.Observe(m)
	}
}

// BenchmarkObserveCall is one message kept in a call's trace.
func BenchmarkObserveCall(b *testing.B) {
	s := New(1000)
	msgs := make([]*sip.Message, 1000)
	for i := range msgs {
		id := fmt.Sprint("call-", i)
		observe(s, false, callerAddr, request("INVITE", id, ""), time.Now())
		msgs[i] = sip.NewMessage(time.Now(), true, "udp", swAddr, callerAddr, []byte(response(180, "Ringing", "INVITE", id)))
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s.Observe(msgs[i%len(msgs)])
		i++
		if i%(MaxMessages-1) == 0 {
			b.StopTimer()
			s = New(1000)
			for j := range msgs {
				observe(s, false, callerAddr, request("INVITE", fmt.Sprint("call-", j), ""), time.Now())
			}
			b.StartTimer()
		}
	}
}

// TestChunksReused: an evicted call's chunks hold the next call's
// messages, and what Get returned before stays as it was; a message larger
// than a chunk is kept whole.
func TestChunksReused(t *testing.T) {
	s := New(1)
	t0 := time.Now()
	observe(s, false, callerAddr, request("INVITE", "first", ""), t0)
	observe(s, true, calleeAddr, response(180, "Ringing", "INVITE", "first"), t0)
	before, ok := s.Get("first")
	if !ok || len(before.Messages) != 2 {
		t.Fatalf("first call: %+v", before)
	}
	want := before.Messages[0].Raw + before.Messages[1].Raw
	big := strings.Replace(request("INVITE", "second", ""), "Content-Length: 0\r\n\r\n",
		fmt.Sprintf("Content-Length: %d\r\n\r\n%s", 3*chunkSize, strings.Repeat("v", 3*chunkSize)), 1)
	observe(s, false, callerAddr, request("INVITE", "second", ""), t0) // evicts "first", reuses its chunk
	observe(s, true, calleeAddr, big, t0)
	observe(s, false, calleeAddr, response(200, "OK", "INVITE", "second"), t0)
	if _, ok := s.Get("first"); ok {
		t.Fatal("first call still kept")
	}
	if got := before.Messages[0].Raw + before.Messages[1].Raw; got != want {
		t.Fatalf("a trace returned by Get changed when its chunks were reused:\n%q", got)
	}
	after, ok := s.Get("second")
	if !ok || len(after.Messages) != 3 {
		t.Fatalf("second call: %d messages", len(after.Messages))
	}
	if after.Messages[0].Raw != request("INVITE", "second", "") || after.Messages[1].Raw != big ||
		after.Messages[2].Raw != response(200, "OK", "INVITE", "second") {
		t.Fatal("second call's messages not kept as they were")
	}
	if after.Messages[1].To != calleeAddr.String() || after.Messages[2].From != calleeAddr.String() {
		t.Fatalf("addresses: %+v", after.Messages[1:])
	}
	if n := len(s.free); n > maxFree {
		t.Fatalf("%d chunks kept free", n)
	}
}

// BenchmarkObserveCalls is the store in its steady state: calls of ten
// messages each (an INVITE with SDP-sized body, responses, ACK, BYE) keep
// coming, three times as many as it keeps, so that opening a call evicts
// the oldest one, as in a switch that has been up a while. Per message.
func BenchmarkObserveCalls(b *testing.B) {
	const keep, calls = 100, 300
	body := strings.Repeat("a=x-padding:0123456789abcdef0123456789abcdef\r\n", 16) // ~750 bytes, an SDP's size
	var msgs []*sip.Message
	for i := range calls {
		id := fmt.Sprint("steady-", i)
		inv := strings.Replace(request("INVITE", id, ""), "Content-Length: 0\r\n\r\n", "Content-Length: 750\r\n\r\n"+body, 1)
		for _, m := range []struct {
			sent   bool
			remote netip.AddrPort
			raw    string
		}{
			{false, callerAddr, inv}, {true, calleeAddr, inv},
			{false, calleeAddr, response(180, "Ringing", "INVITE", id)}, {true, callerAddr, response(180, "Ringing", "INVITE", id)},
			{false, calleeAddr, response(200, "OK", "INVITE", id)}, {true, callerAddr, response(200, "OK", "INVITE", id)},
			{false, callerAddr, request("ACK", id, "b")}, {true, calleeAddr, request("ACK", id, "b")},
			{false, callerAddr, request("BYE", id, "b")}, {true, calleeAddr, request("BYE", id, "b")},
		} {
			msgs = append(msgs, sip.NewMessage(time.Now(), m.sent, "udp", swAddr, m.remote, []byte(m.raw)))
		}
	}
	s := New(keep)
	for _, m := range msgs { // warm up: every call once
		s.Observe(m)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s.Observe(msgs[i%len(msgs)])
		i++
	}
}

// FuzzObserve feeds the store what a peer may send: it must not panic,
// must keep only what belongs to a call it opened, and must show back
// every message it kept as it was.
func FuzzObserve(f *testing.F) {
	f.Add([]byte(request("INVITE", "c1", "")), []byte(response(180, "Ringing", "INVITE", "c1")))
	f.Add([]byte(sippRegister), []byte(sippRegisterOK))
	f.Add([]byte("INVITE x SIP/2.0\r\ni: a\r\nt: <sip:b>;tag\r\n\r\n"), []byte("SIP/2.0 999 x\r\ni: a\r\n\r\n"))
	f.Add([]byte("SIP/2.0 200\r\nCSeq: 1\r\nCall-ID:\r\n"), []byte("\r\n\r\n"))
	f.Fuzz(func(t *testing.T, first, second []byte) {
		s := New(2)
		now := time.Now()
		s.Observe(sip.NewMessage(now, false, "udp", swAddr, callerAddr, first))
		s.Observe(sip.NewMessage(now, true, "tcp", swAddr, calleeAddr, second))
		opener := func(b []byte) (string, bool) {
			h, ok := scan(b)
			return string(h.callID), ok && !h.skip && len(h.callID) > 0 && h.status == 0 && string(h.method) == "INVITE" && !h.toTag
		}
		opens := map[string]bool{}
		id, firstOpens := opener(first)
		if firstOpens {
			opens[id] = true
		}
		if id2, ok := opener(second); ok {
			opens[id2] = true
		}
		if calls, _ := s.Len(); calls != len(opens) {
			t.Fatalf("%d calls traced from %q and %q, want %d", calls, first, second, len(opens))
		}
		if !firstOpens {
			return
		}
		h, _ := scan(first)
		c, ok := s.Get(string(h.callID))
		if !ok || len(c.Messages) == 0 || c.Messages[0].Raw != string(first) || c.Messages[0].Method != "INVITE" {
			t.Fatalf("trace of %q: %+v", first, c)
		}
		if c.Messages[0].From != callerAddr.String() || c.Messages[0].To != swAddr.String() {
			t.Fatalf("addresses %s -> %s", c.Messages[0].From, c.Messages[0].To)
		}
	})
}

// A message whose sender says it is of a REGISTER (sip.Message.Method) is
// dropped without its headers being read, even with a traced Call-ID; the
// others of that call are kept.
func TestMethodHintSkips(t *testing.T) {
	s := New(10)
	now := time.Now()
	observe(s, false, callerAddr, request("INVITE", "c1", ""), now)
	m := sip.NewMessage(now, true, "udp", swAddr, callerAddr, []byte(response(200, "OK", "INVITE", "c1")))
	m.Method = "REGISTER"
	s.Observe(m)
	observe(s, true, callerAddr, response(180, "Ringing", "INVITE", "c1"), now)
	c, ok := s.Get("c1")
	if !ok || len(c.Messages) != 2 || c.Messages[1].Status != 180 {
		t.Fatalf("trace of c1: %+v", c)
	}
}

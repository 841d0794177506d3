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
	s.Observe(&sip.Message{Time: at, Sent: sent, Transport: "udp", Local: swAddr, Remote: remote, Data: []byte(raw)})
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

func BenchmarkObserveRegister(b *testing.B) {
	s := New(1000)
	m := &sip.Message{Time: time.Now(), Transport: "udp", Local: swAddr, Remote: callerAddr, Data: []byte(request("REGISTER", "r", ""))}
	for b.Loop() {
		s.Observe(m)
	}
}

package sip

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/siptest"
)

// TestRegisterStatelessRetransmission: a REGISTER over UDP is answered by
// the fast path without a transaction, and a retransmission of it gets the
// very same response (same To tag), which the phone drops as a duplicate —
// as a UA matches a retransmitted response to its transaction.
func TestRegisterStatelessRetransmission(t *testing.T) {
	sw := startSwitch(t)
	p := sw.phone("carol", "udp", "")
	m := p.Register(3600)
	p.Send(m)
	first := p.WaitFinal(m)
	wantStatus(t, first, 401)
	p.Send(m) // the retransmission
	eventually(t, 5*time.Second, "the same response to the retransmission", func() bool { return p.Dups() > 0 })
	// The credentials then register as usual, still without a transaction.
	m = p.Authenticate(m, first, "MD5")
	p.Send(m)
	wantStatus(t, p.WaitFinal(m), 200)
	if n := sw.srv.LiveTransactions(); n != 0 {
		t.Errorf("%d server transactions alive after stateless REGISTERs", n)
	}
	if got := sw.srv.Stats.Requests.Load(); got != 3 {
		t.Errorf("requests counted %d, want 3", got)
	}
}

// TestInviteChallengeStateless: an initial INVITE over UDP without
// credentials is challenged without a transaction; its retransmission gets
// the same 407 (same To tag), the 407's ACK is absorbed, and the INVITE
// with credentials then goes through as a call.
func TestInviteChallengeStateless(t *testing.T) {
	sw := startSwitch(t)
	bob := sw.registered("bob", "")
	alice := sw.registered("alice", "")
	requests, refused := sw.srv.Stats.Requests.Load(), sw.srv.Stats.Refused.Load()

	first := sdpInvite(alice, "bob")
	alice.Send(first)
	res := alice.WaitFinal(first)
	wantStatus(t, res, 407)
	tag, _ := res.To().Params.Get("tag")
	if !strings.HasPrefix(tag, statelessTagPrefix) {
		t.Fatalf("407 To tag %q is not a stateless one", tag)
	}
	if n := sw.srv.LiveTransactions(); n != 0 {
		t.Errorf("%d server transactions alive after a challenge", n)
	}
	alice.Send(first) // the retransmission
	eventually(t, 5*time.Second, "the same 407 to the retransmission", func() bool { return alice.Dups() > 0 })
	alice.Send(siptest.Ack(first, res))
	inv := alice.Authenticate(first, res, "MD5")
	alice.Send(inv)
	alice.WaitResponse(inv, 100, 100)
	bob.WaitRequest("INVITE")
	// INVITE, its retransmission, the ACKs (absorbed: ours, and the
	// phone's own of the repeated 407) and the INVITE with credentials.
	if got := sw.srv.Stats.Requests.Load() - requests; got < 4 {
		t.Errorf("requests counted %d, want at least 4", got)
	}
	if got := sw.srv.Stats.Refused.Load() - refused; got != 2 {
		t.Errorf("refused %d, want the two challenges", got)
	}
}

// TestInviteChallengeFallsBack: what the fast path must leave to the
// stateful path: an INVITE with credentials (tested above), one from a
// stranger's domain, and an ACK whose To tag is not a stateless challenge's.
func TestInviteChallengeFallsBack(t *testing.T) {
	sw := startSwitch(t)
	alice := sw.registered("alice", "")
	f := sw.srv.fast
	stranger := alice.Request("INVITE", callURI("alice"))
	stranger.Set("From", "<sip:mallory@elsewhere.example>;tag=m1")
	from := net.UDPAddrFromAddrPort(alice.Addr())
	if f.take(nil, from, []byte(stranger.String())) {
		t.Error("an INVITE from a stranger was taken by the fast path")
	}
	inv := alice.Request("INVITE", callURI("bob"))
	alice.Send(inv)
	res := alice.WaitFinal(inv)
	wantStatus(t, res, 407)
	ack := siptest.Ack(inv, res)
	if !f.take(nil, from, []byte(ack.String())) {
		t.Error("the ACK of a stateless 407 was not absorbed")
	}
	ack.Set("To", "<"+callURI("bob")+">;tag=sb0123456789abcdef")
	if f.absorbAck([]byte(ack.String())) {
		t.Error("an ACK with a forged stateless tag was absorbed")
	}
	for _, c := range []struct {
		text string
		want bool
	}{
		{"INVITE sip:a SIP/2.0\r\nVia: x\r\nProxy-Authorization: Digest x\r\n\r\n", true},
		{"INVITE sip:a SIP/2.0\r\nproxy-authorization : Digest x\r\n\r\n", true},
		{"INVITE sip:a SIP/2.0\r\nVia: x\r\n\r\nProxy-Authorization: in the body\r\n", false},
		{"INVITE sip:a SIP/2.0\r\nProxy-Authorization-X: y\r\n\r\n", false},
		{"INVITE sip:a SIP/2.0\nProxy-Authorization:x\n\n", true},
	} {
		if got := hasHeader([]byte(c.text), "Proxy-Authorization"); got != c.want {
			t.Errorf("hasHeader(%q) = %v, want %v", c.text, got, c.want)
		}
	}
	if v, ok := headerValue([]byte("ACK sip:a SIP/2.0\r\nVia: x\r\nt : <sip:b@c>;tag=sb1\r\n\r\n"), "To", "t"); !ok || string(v) != "<sip:b@c>;tag=sb1" {
		t.Errorf("headerValue of a compact To: %q, %v", v, ok)
	}
}

// TestFastPathObserved: the Observer sees each message of a stateless
// registration once, read and written, the fast path's responses with
// their method and their addresses.
func TestFastPathObserved(t *testing.T) {
	type seen struct {
		sent                 bool
		method, first, local string
		remote, transport    string
	}
	var mu sync.Mutex
	var got []seen
	sw := startSwitch(t, func(c *Config) {
		c.Observer = func(m *Message) {
			first, _, _ := strings.Cut(string(m.Data), "\r\n")
			l, r := m.AddrText()
			mu.Lock()
			got = append(got, seen{m.Sent, m.Method, first, l, r, m.Transport})
			mu.Unlock()
		}
	})
	p := sw.phone("carol", "udp", "")
	m := p.Register(3600)
	p.Send(m)
	first := p.WaitFinal(m)
	wantStatus(t, first, 401)
	m = p.Authenticate(m, first, "MD5")
	p.Send(m)
	wantStatus(t, p.WaitFinal(m), 200)
	var want []seen
	eventually(t, 5*time.Second, "four messages observed", func() bool {
		mu.Lock()
		defer mu.Unlock()
		want = nil
		for _, s := range got {
			if strings.HasPrefix(s.first, "REGISTER ") || strings.HasPrefix(s.first, "SIP/2.0 ") {
				want = append(want, s)
			}
		}
		return len(want) >= 4
	})
	time.Sleep(100 * time.Millisecond) // a duplicate would come now
	mu.Lock()
	defer mu.Unlock()
	if len(want) != 4 {
		t.Fatalf("observed %d messages of the registration, want 4: %+v", len(want), want)
	}
	phone := p.Addr().String()
	for i, s := range want {
		wantSent := i%2 == 1
		if s.sent != wantSent || s.transport != "udp" || s.remote != phone || s.local == "" {
			t.Errorf("message %d %q: sent %v transport %q local %q remote %q; want sent %v, udp, remote %s",
				i, s.first, s.sent, s.transport, s.local, s.remote, wantSent, phone)
		}
		if wantSent && s.method != "REGISTER" {
			t.Errorf("response %q observed with method %q, want REGISTER", s.first, s.method)
		}
	}
}

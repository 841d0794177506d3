package sip

import (
	"testing"
	"time"
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

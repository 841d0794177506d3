package sip

import (
	"testing"
	"time"

	"github.com/switchboard/switchboard/cdr"
	"github.com/switchboard/switchboard/internal/siptest"
)

// TestStatelessAckAndBye: over UDP the ACK of a 2xx and the BYE are
// forwarded without transactions, a retransmitted BYE with the same
// branch, and the BYE's response is sent back from the read loop; the
// call ends.
func TestStatelessAckAndBye(t *testing.T) {
	sw := startSwitch(t)
	bob := sw.registered("bob", "")
	alice := sw.registered("alice", "")
	f := sw.srv.fast
	inv := invite(t, alice, "bob")
	answer(t, bob, bob.WaitRequest("INVITE"))
	ok := alice.WaitResponse(inv, 200, 200)
	ad := alice.UACDialog(inv, ok)

	before, raw := f.dialog.Load(), f.raw.Load()
	alice.Send(ad.Request("ACK"))
	bob.WaitRequest("ACK")
	eventually(t, 5*time.Second, "the ACK forwarded statelessly", func() bool { return f.dialog.Load()-before == 1 })
	eventually(t, 5*time.Second, "the ACK forwarded from its bytes (rawindialog.go)", func() bool { return f.raw.Load() == raw+1 })

	bye := ad.Request("BYE")
	alice.Send(bye)
	first := bob.WaitRequest("BYE")
	if b, _ := first.Via().Params.Get("branch"); !sw.srv.ourBranch(b) {
		t.Errorf("BYE forwarded with branch %s, not one of ours", b)
	}
	// As Timer E would: the copy reaches bob as the same request (the
	// phone drops it as a retransmission: same top Via, so same branch).
	dups := bob.Dups()
	alice.Send(bye)
	eventually(t, 5*time.Second, "the retransmitted BYE at bob", func() bool { return bob.Dups() > dups })
	bob.ExpectNone(siptest.IsRequest("BYE"), 300*time.Millisecond, "the BYE's copy with another branch")
	// The counter is added after the send, so a peer can see the packet
	// first: wait for it rather than read it once.
	eventually(t, 5*time.Second, "the ACK and both BYEs forwarded statelessly", func() bool { return f.dialog.Load()-before == 3 })
	if got := f.raw.Load() - raw; got != 3 {
		t.Errorf("%d forwarded from their bytes, want the ACK and both BYEs", got)
	}
	raw = f.raw.Load()
	bob.Reply(first, 200, "OK")
	wantStatus(t, alice.WaitFinal(bye), 200)
	eventually(t, 5*time.Second, "the BYE's 200 sent on from its bytes (rawresponse.go)", func() bool { return f.raw.Load() > raw })
	eventually(t, 5*time.Second, "the ACK, both BYEs and the 200 from the read loop forwarded statelessly", func() bool { return f.dialog.Load()-before == 4 })
	sw.record(inv.Get("Call-ID"), "ended by the BYE", func(r cdr.Record) bool { return !r.Ended.IsZero() && r.HangupBy == "caller" })
	eventually(t, 10*time.Second, "no transaction left", func() bool { return sw.srv.LiveTransactions() == 0 })

	// A BYE for no dialog of ours is answered statelessly with its own
	// To tag (RFC 3261 §8.2.6.2).
	stray := alice.Request("BYE", callURI("bob"))
	stray.Set("To", "<"+callURI("bob")+">;tag=gone1")
	alice.Send(stray)
	res := alice.WaitFinal(stray)
	wantStatus(t, res, 481)
	if tag, _ := res.To().Params.Get("tag"); tag != "gone1" {
		t.Errorf("481 with To tag %q, want the request's", tag)
	}
}

// TestAckOfErrorReachesTransaction: the ACK of an error the switch
// relayed from its INVITE server transaction has that INVITE's branch and
// goes to the transaction, which then stops retransmitting the error.
func TestAckOfErrorReachesTransaction(t *testing.T) {
	sw := startSwitch(t)
	bob := sw.registered("bob", "")
	alice := sw.registered("alice", "")
	f := sw.srv.fast
	inv := invite(t, alice, "bob")
	bob.Reply(bob.WaitRequest("INVITE"), 486, "Busy Here")
	res := alice.WaitFinal(inv)
	wantStatus(t, res, 486)
	before := f.dialog.Load()
	dups := alice.Dups()
	alice.Send(siptest.Ack(inv, res))
	// Without the ACK, Timer G resends the 486 0.5 s, 1.5 s, 3.5 s after
	// the first (the phone counts the copies it drops).
	time.Sleep(2500 * time.Millisecond)
	if n := alice.Dups() - dups; n != 0 {
		t.Errorf("the 486 was retransmitted %d times after its ACK", n)
	}
	if got := f.dialog.Load() - before; got != 0 {
		t.Errorf("the ACK of the 486 was forwarded statelessly (%d)", got)
	}
}

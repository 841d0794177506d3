package hostile

import (
	"strings"
	"syscall"
	"testing"
	"time"

	gosip "github.com/emiago/sipgo/sip"

	"github.com/switchboard/switchboard/internal/siptest"
	"github.com/switchboard/switchboard/test/internal/testbed"
)

// openRows returns the CDR rows without an end time.
func openRows(rows []testbed.CDR) []testbed.CDR {
	var out []testbed.CDR
	for _, r := range rows {
		if e := strings.TrimSpace(r["ended"]); e == "" || e == "-" {
			out = append(out, r)
		}
	}
	return out
}

// rowOf returns the CDR row of callID, or nil.
func rowOf(rows []testbed.CDR, callID string) testbed.CDR {
	for _, r := range rows {
		if r["call-id"] == callID {
			return r
		}
	}
	return nil
}

// waitDraining waits until the server has logged that SIGTERM started the
// drain.
func (v *victim) waitDraining(t *testing.T) {
	t.Helper()
	if !testbed.Eventually(t, 5*time.Second, func() bool { return strings.Contains(v.Log(), "SIGTERM") },
		"a SIGTERM log line after the signal") {
		t.FailNow()
	}
}

// waitBYE waits up to limit for the switch's BYE of callID at p, answers it
// 200 and returns when it came.
func waitBYE(t *testing.T, p *siptest.Phone, callID string, limit time.Duration) time.Time {
	t.Helper()
	msg, ok := p.TryWait(siptest.And(siptest.IsRequest("BYE"), siptest.CallID(callID)), limit)
	if !ok {
		t.Fatalf("%s got no BYE for the call within %s", p.User(), limit)
	}
	at := time.Now()
	p.Reply(msg.(*gosip.Request), 200, "OK")
	return at
}

// TestDrainHangsUpAfterGrace answers a call between two local users, then
// sends the switch SIGTERM with shutdown_grace: 2s: after the grace (not
// before) the switch sends BYE to both parties, exits with status 0, and
// the call record is closed with reason "shutdown".
func TestDrainHangsUpAfterGrace(t *testing.T) {
	const grace = 2 * time.Second
	v := startVictim(t, "shutdown_grace: 2s")
	bob := v.registered("bob")
	alice := v.registered("alice")
	cl := placeCall(t, alice, bob)
	callID := cl.caller.CallID

	sent := time.Now()
	if err := v.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	atAlice := waitBYE(t, alice, callID, grace+8*time.Second)
	atBob := waitBYE(t, bob, callID, 3*time.Second)
	for who, at := range map[string]time.Time{"alice": atAlice, "bob": atBob} {
		if d := at.Sub(sent); d < grace-200*time.Millisecond {
			t.Errorf("%s got the switch's BYE %s after SIGTERM, before the %s grace", who, d.Round(time.Millisecond), grace)
		}
	}
	code, err := v.WaitExit(15 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code != 0 {
		t.Errorf("switchboard exited with status %d after SIGTERM, want 0", code)
	}
	t.Logf("BYE to alice %s and to bob %s after SIGTERM; exited %s after it",
		atAlice.Sub(sent).Round(time.Millisecond), atBob.Sub(sent).Round(time.Millisecond), time.Since(sent).Round(time.Millisecond))

	rows := v.CDRs(t) // the CLI reads the database the server left
	r := rowOf(rows, callID)
	switch {
	case r == nil:
		t.Errorf("no call record for %s: %v", callID, rows)
	case !strings.Contains(strings.ToLower(r["reason"]), "shutdown"):
		t.Errorf("call record reason %q, want shutdown: %v", r["reason"], r)
	}
	if open := openRows(rows); len(open) > 0 {
		t.Errorf("%d call records without an end time after the drain: %v", len(open), open)
	}
}

// TestDrainEndsWhenCallsEnd answers a call, sends SIGTERM with a long grace
// (20 s), and hangs up during it: the BYE is relayed as usual, and the
// switch exits as soon as the call has ended instead of waiting out the
// grace. The record is that of a normal hang-up.
func TestDrainEndsWhenCallsEnd(t *testing.T) {
	v := startVictim(t, "shutdown_grace: 20s")
	bob := v.registered("bob")
	alice := v.registered("alice")
	cl := placeCall(t, alice, bob)
	callID := cl.caller.CallID

	if err := v.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	v.waitDraining(t)
	select {
	case <-v.Done():
		t.Fatalf("switchboard exited at once on SIGTERM with a call up:\n%s", testbed.Tail(v.Log(), 30))
	default:
	}
	cl.hangUp(t)
	ended := time.Now()
	code, err := v.WaitExit(5 * time.Second)
	if err != nil {
		t.Fatalf("the only call ended during the grace, but: %v", err)
	}
	if code != 0 {
		t.Errorf("switchboard exited with status %d, want 0", code)
	}
	t.Logf("exited %s after the call ended", time.Since(ended).Round(time.Millisecond))

	rows := v.CDRs(t)
	r := rowOf(rows, callID)
	switch {
	case r == nil:
		t.Errorf("no call record for %s: %v", callID, rows)
	case r["hangup-by"] != "caller":
		t.Errorf("call record hangup-by %q, want caller (alice hung up during the grace): %v", r["hangup-by"], r)
	}
	if open := openRows(rows); len(open) > 0 {
		t.Errorf("%d call records without an end time: %v", len(open), open)
	}
}

// TestCrashClosesOpenRecords kills the switch with SIGKILL during an
// answered call and starts it again on the same database: the call's
// record, left open, is closed with reason "crash", and no record is left
// without an end time.
func TestCrashClosesOpenRecords(t *testing.T) {
	v := startVictim(t, "")
	bob := v.registered("bob")
	alice := v.registered("alice")
	cl := placeCall(t, alice, bob)
	callID := cl.caller.CallID
	// The record must be in the database (written in batches) before the kill.
	v.waitCDR(callID, "answered", func(r testbed.CDR) bool { return r.Answered() })

	if err := v.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, err := v.WaitExit(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if r := rowOf(v.CDRs(t), callID); r == nil || (r["ended"] != "-" && r["ended"] != "") {
		t.Fatalf("before the restart the killed call's record should be open: %v", r)
	}
	v.Restart(t)

	var rows []testbed.CDR
	ok := testbed.Poll(10*time.Second, 100*time.Millisecond, func() bool {
		rows = v.CDRs(t)
		r := rowOf(rows, callID)
		return r != nil && strings.Contains(strings.ToLower(r["reason"]), "crash")
	})
	if !ok {
		t.Errorf("after the restart the record of the call cut by the crash is not closed with reason crash: %v", rowOf(rows, callID))
	} else {
		t.Logf("after the restart: %v", rowOf(rows, callID))
	}
	if open := openRows(rows); len(open) > 0 {
		t.Errorf("%d call records without an end time after the restart: %v", len(open), open)
	}
}

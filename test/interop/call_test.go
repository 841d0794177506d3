package interop

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/test/internal/testbed"
)

// TestSIPpCallsThroughProxy places 20 calls from a testbed.SIPp UAC (alice, who
// answers the proxy's 407 with digest credentials) through the switch to a
// testbed.SIPp UAS registered as bob: INVITE/100/180/200/ACK, a pause, BYE/200. Then
// `switchboard cdr list` must show the 20 calls, answered.
func TestSIPpCallsThroughProxy(t *testing.T) {
	testbed.RequireTool(t, "sipp")
	const calls = 20
	srv := testbed.StartServer(t, testbed.Binary(t), testbed.ServerConfig{})
	alice := testbed.Cred{User: "alice", Password: "alice-secret"}
	bob := testbed.Cred{User: "bob", Password: "bob-secret"}
	addUsers(t, srv, []testbed.Cred{alice, bob})
	dir := t.TempDir()
	keys := map[string]string{"domain": srv.Domain, "expires": "3600"}
	udp := srv.Addr(t, "udp")

	// A testbed.SIPp UAS cannot register itself: register bob's Contact from the
	// port the UAS will then listen on.
	uasPort := testbed.FreePort(t, 1)
	reg := testbed.RunSIPp(t, testbed.SIPp{
		Scenario: "register.xml", Remote: udp, Port: uasPort, Name: "register-bob",
		Inf:  testbed.WriteInf(t, filepath.Join(dir, "bob.csv"), []testbed.Cred{bob}),
		Keys: keys, Args: []string{"-m", "1"}, Timeout: 20 * time.Second, TraceMessages: true,
	})
	if reg.ExitCode != 0 || reg.Successful != 1 {
		t.Fatalf("registering bob: %v\n%s", reg, testbed.ReadFile(reg.MessageLog))
	}

	uas := testbed.StartSIPp(t, testbed.SIPp{
		Scenario: "uas.xml", Port: uasPort, Name: "uas-bob",
		Args: []string{"-m", fmt.Sprint(calls)}, Timeout: 90 * time.Second, TraceMessages: true,
	})
	uac := testbed.RunSIPp(t, testbed.SIPp{
		Scenario: "uac_invite_auth.xml", Remote: udp, Name: "uac-alice",
		Inf:  testbed.WriteInf(t, filepath.Join(dir, "alice.csv"), []testbed.Cred{alice}),
		Keys: keys,
		Args: []string{"-s", "bob", "-m", fmt.Sprint(calls), "-r", "10", "-l", fmt.Sprint(calls), "-d", "500"},
		// Timeout leaves room for a few UDP retransmissions.
		Timeout: 60 * time.Second, TraceMessages: true,
	})
	if uac.ExitCode != 0 || uac.Successful != calls || uac.Failed != 0 {
		t.Errorf("UAC: want %d successful calls, 0 failed: %v\n%s", calls, uac, testbed.Tail(testbed.ReadFile(uac.MessageLog), 120))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	uasRes := uas.Wait(ctx)
	if uasRes.ExitCode != 0 || uasRes.Successful != calls || uasRes.Failed != 0 {
		t.Errorf("UAS: want %d successful calls, 0 failed: %v\n%s", calls, uasRes, testbed.Tail(testbed.ReadFile(uasRes.MessageLog), 120))
	}
	if t.Failed() {
		return
	}

	// testbed.SIPp's Call-IDs are "N-PID@127.0.0.1"; the proxy keeps them.
	var rows []testbed.CDR
	ok := testbed.Poll(10*time.Second, 100*time.Millisecond, func() bool {
		rows = callsBetween(srv.CDRs(t), "alice", "bob")
		return len(rows) >= calls
	})
	if !ok {
		t.Fatalf("cdr list shows %d alice→bob calls, want %d: %v", len(rows), calls, rows)
	}
	if out, err := srv.CLI(context.Background(), "cdr", "list"); err == nil {
		t.Logf("switchboard cdr list:\n%s", testbed.Head(out, 800))
	}
	want := map[string]bool{}
	for i := 1; i <= calls; i++ {
		want[fmt.Sprintf("%d-%d@127.0.0.1", i, uac.PID)] = true
	}
	for _, r := range rows {
		id := r["call-id"]
		if !want[id] {
			t.Errorf("call-id %q is not one of the UAC's (N-%d@127.0.0.1), or listed twice", id, uac.PID)
		}
		delete(want, id)
		if !r.Answered() || r["status"] != "200" {
			t.Errorf("call %s not shown answered with 200: %v", id, r)
		}
		if hb := r["hangup-by"]; hb != "" && hb != "caller" {
			t.Errorf("call %s: hangup-by %q, want caller (the UAC sent the BYE)", id, hb)
		}
	}
	if len(want) > 0 {
		t.Errorf("calls missing from cdr list: %v", want)
	}
}

// callsBetween returns the CDRs whose caller and callee name the given users.
func callsBetween(cdrs []testbed.CDR, caller, callee string) []testbed.CDR {
	var out []testbed.CDR
	for _, c := range cdrs {
		if userOf(c["caller"]) == caller && userOf(c["callee"]) == callee {
			out = append(out, c)
		}
	}
	return out
}

// userOf returns the user part of "sip:user@host", "user@host" or "user".
func userOf(s string) string {
	s = strings.Trim(strings.TrimSpace(s), "<>")
	s = strings.TrimPrefix(strings.TrimPrefix(s, "sips:"), "sip:")
	if i := strings.IndexByte(s, '@'); i >= 0 {
		s = s[:i]
	}
	return s
}

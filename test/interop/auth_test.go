package interop

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/test/internal/testbed"
)

// TestWrongPassword checks that a wrong password never gets a 200: the
// registrar answers the credentials with 401 again or 403, both to testbed.SIPp and
// to baresip, while the right password still registers afterwards; and that
// a source guessing too often is refused (403) even with the right one.
func TestWrongPassword(t *testing.T) {
	srv := testbed.StartServer(t, testbed.Binary(t), testbed.ServerConfig{})
	addUsers(t, srv, []testbed.Cred{{User: "alice", Password: "right-password"}})
	keys := map[string]string{"domain": srv.Domain, "expires": "3600"}
	dir := t.TempDir()

	t.Run("sipp", func(t *testing.T) {
		testbed.RequireTool(t, "sipp")
		// Five attempts, fewer than security.auth_failures (10), so the
		// source is not banned and the right password must still work.
		bad := testbed.WriteInf(t, filepath.Join(dir, "bad.csv"), []testbed.Cred{{User: "alice", Password: "wrong-password"}})
		res := testbed.RunSIPp(t, testbed.SIPp{
			Scenario: "register_wrongpw.xml", Remote: srv.Addr(t, "udp"), Inf: bad, Keys: keys,
			Args: []string{"-m", "5", "-r", "5"}, Timeout: 30 * time.Second, TraceMessages: true,
		})
		if res.ExitCode != 0 || res.Successful != 5 || res.Failed != 0 {
			t.Fatalf("want 5 refused registrations (401 or 403 after credentials): %v\n%s", res, testbed.Tail(testbed.ReadFile(res.MessageLog), 80))
		}
		if strings.Contains(testbed.ReadFile(res.MessageLog), "SIP/2.0 200") {
			t.Fatalf("a wrong password got a 200:\n%s", testbed.ReadFile(res.MessageLog))
		}

		good := testbed.WriteInf(t, filepath.Join(dir, "good.csv"), []testbed.Cred{{User: "alice", Password: "right-password"}})
		res = testbed.RunSIPp(t, testbed.SIPp{
			Scenario: "register.xml", Remote: srv.Addr(t, "udp"), Inf: good, Keys: keys,
			Args: []string{"-m", "1"}, Timeout: 20 * time.Second, TraceMessages: true,
		})
		if res.ExitCode != 0 || res.Successful != 1 {
			t.Fatalf("right password after wrong ones: %v\n%s", res, testbed.Tail(testbed.ReadFile(res.MessageLog), 80))
		}
	})

	t.Run("ban", func(t *testing.T) {
		testbed.RequireTool(t, "sipp")
		// More wrong passwords than security.auth_failures (10) from one
		// address within auth_window: the switch answers 403 from then on,
		// even to the right password, and never 200.
		srv := testbed.StartServer(t, testbed.Binary(t), testbed.ServerConfig{})
		addUsers(t, srv, []testbed.Cred{{User: "dave", Password: "dave-password"}})
		bad := testbed.WriteInf(t, filepath.Join(dir, "dave-bad.csv"), []testbed.Cred{{User: "dave", Password: "guess"}})
		res := testbed.RunSIPp(t, testbed.SIPp{
			Scenario: "register_wrongpw.xml", Remote: srv.Addr(t, "udp"), Inf: bad, Keys: keys, Name: "guesses",
			Args: []string{"-m", "12", "-r", "10"}, Timeout: 30 * time.Second, TraceMessages: true,
		})
		trace := testbed.ReadFile(res.MessageLog)
		codes := responseCodes(trace)
		if strings.Contains(trace, "SIP/2.0 200") {
			t.Fatalf("a wrong password got a 200:\n%s", trace)
		}
		if len(codes) == 0 || codes[len(codes)-1] != "403" {
			t.Fatalf("after 12 wrong passwords the last answer is not 403 (responses %v): %v\n%s", codes, res, testbed.Tail(trace, 60))
		}
		good := testbed.WriteInf(t, filepath.Join(dir, "dave-good.csv"), []testbed.Cred{{User: "dave", Password: "dave-password"}})
		res = testbed.RunSIPp(t, testbed.SIPp{
			Scenario: "register.xml", Remote: srv.Addr(t, "udp"), Inf: good, Keys: keys, Name: "banned",
			Args: []string{"-m", "1"}, Timeout: 20 * time.Second, TraceMessages: true,
		})
		trace = testbed.ReadFile(res.MessageLog)
		if res.Successful != 0 || strings.Contains(trace, "SIP/2.0 200") {
			t.Fatalf("a banned source registered: %v\n%s", res, trace)
		}
		if codes := responseCodes(trace); len(codes) == 0 || codes[len(codes)-1] != "403" {
			t.Fatalf("a banned source got %v, want 403: %v\n%s", codes, res, trace)
		}
	})

	t.Run("baresip", func(t *testing.T) {
		testbed.RequireTool(t, "baresip")
		testbed.RequireTool(t, "sox")
		srv := testbed.StartServer(t, testbed.Binary(t), testbed.ServerConfig{})
		addUsers(t, srv, []testbed.Cred{{User: "carol", Password: "carol-password"}})
		b := testbed.StartBaresip(t, "carol", testbed.BaresipConfig{
			User: "carol", Password: "not-carols-password", Domain: srv.Domain, Proxy: srv.Addr(t, "udp"),
			AudioFile: testbed.MakeTone(t, filepath.Join(dir, "tone.wav"), 1000, 1),
		})
		var state, line string
		if !testbed.Poll(10*time.Second, 50*time.Millisecond, func() bool {
			var err error
			state, line, err = b.RegState(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if state == "OK" {
				t.Fatalf("baresip registered with a wrong password: %s", line)
			}
			return state == "ERR"
		}) {
			t.Fatalf("baresip registration did not fail within 10s: %s", line)
		}
		// baresip -s traces every message: the switch must have challenged
		// (401) and then refused the credentials (401 again or 403), and
		// answered nothing else.
		codes := responseCodes(b.Log())
		if len(codes) < 2 {
			t.Fatalf("want a challenge and a refusal, saw responses %v:\n%s", codes, testbed.Tail(b.Log(), 60))
		}
		for _, c := range codes {
			if c != "401" && c != "403" {
				t.Fatalf("a wrong password got %s (responses %v):\n%s", c, codes, testbed.Tail(b.Log(), 60))
			}
		}
	})
}

// responseCodes returns the status codes of the SIP responses in a trace, in
// order.
func responseCodes(trace string) []string {
	var codes []string
	for _, l := range strings.Split(trace, "\n") {
		if i := strings.Index(l, "SIP/2.0 "); i >= 0 && len(l) >= i+11 {
			if c := l[i+8 : i+11]; c[0] >= '1' && c[0] <= '6' && strings.Trim(c, "0123456789") == "" {
				codes = append(codes, c)
			}
		}
	}
	return codes
}

package interop

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/switchboard/switchboard/test/internal/testbed"
)

// TestSIPpRegisteredFromAnotherPort is the third-party registration of SIPp
// load setups: a REGISTER-only SIPp sends from port X a Contact on port Y
// (its Via names X, where it sends from), then exits; a SIPp UAS listens on
// Y, and a SIPp UAC calls it through the switch. The switch must trust the
// Contact — nothing shows NAT: a loopback Contact equal to the source
// address, a Via that matches the source — and send the calls to Y, not to
// X where nothing listens any more (nat.detect on the shipped defaults).
func TestSIPpRegisteredFromAnotherPort(t *testing.T) {
	testbed.RequireTool(t, "sipp")
	const calls = 5
	srv := testbed.StartServer(t, testbed.Binary(t), testbed.ServerConfig{})
	alice := testbed.Cred{User: "alice", Password: "alice-secret"}
	bob := testbed.Cred{User: "bob", Password: "bob-secret"}
	addUsers(t, srv, []testbed.Cred{alice, bob})
	dir := t.TempDir()
	udp := srv.Addr(t, "udp")

	regPort := testbed.FreePort(t, 2)
	uasPort := regPort + 1
	reg := testbed.RunSIPp(t, testbed.SIPp{
		Scenario: "register_contact.xml", Remote: udp, Port: regPort, Name: "register-bob",
		Inf:  testbed.WriteInf(t, filepath.Join(dir, "bob.csv"), []testbed.Cred{bob}),
		Keys: map[string]string{"domain": srv.Domain, "expires": "3600", "contact_port": strconv.Itoa(uasPort)},
		Args: []string{"-m", "1"}, Timeout: 20 * time.Second, TraceMessages: true,
	})
	if reg.ExitCode != 0 || reg.Successful != 1 {
		t.Fatalf("registering bob from port %d for a Contact on %d: %v\n%s", regPort, uasPort, reg, testbed.ReadFile(reg.MessageLog))
	}

	uas := testbed.StartSIPp(t, testbed.SIPp{
		Scenario: "uas.xml", Port: uasPort, Name: "uas-bob",
		Args: []string{"-m", fmt.Sprint(calls)}, Timeout: 40 * time.Second, TraceMessages: true,
	})
	uac := testbed.RunSIPp(t, testbed.SIPp{
		Scenario: "uac_invite_auth.xml", Remote: udp, Name: "uac-alice",
		Inf:  testbed.WriteInf(t, filepath.Join(dir, "alice.csv"), []testbed.Cred{alice}),
		Keys: map[string]string{"domain": srv.Domain},
		Args: []string{"-s", "bob", "-m", fmt.Sprint(calls), "-r", "5", "-l", fmt.Sprint(calls), "-d", "200"},
		// Before the rule, each call waited for the INVITE to port X to
		// time out: the timeout here is far shorter than that.
		Timeout: 20 * time.Second, TraceMessages: true,
	})
	if uac.ExitCode != 0 || uac.Successful != calls || uac.Failed != 0 {
		t.Errorf("UAC: want %d successful calls, 0 failed: %v\n%s", calls, uac, testbed.Tail(testbed.ReadFile(uac.MessageLog), 80))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if res := uas.Wait(ctx); res.ExitCode != 0 || res.Successful != calls {
		t.Errorf("UAS on the Contact's port %d: want %d successful calls: %v\n%s", uasPort, calls, res, testbed.Tail(testbed.ReadFile(res.MessageLog), 80))
	}
}

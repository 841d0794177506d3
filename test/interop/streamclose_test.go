package interop

import (
	"crypto/tls"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/test/internal/testbed"
)

// TestStreamConnectionsCloseCleanly runs the switch with TCP and TLS
// listeners: alice registers over TCP, bob over TLS, alice calls bob (tones
// both ways), and the switch is stopped with SIGTERM while both connections
// are open. Its log must not hold sipgo's "ref went negative" (its
// reference count of a connection closed at shutdown going below zero, see
// docs/upstream/sipgo-tcp-ref.md), nor any other warning about connections.
func TestStreamConnectionsCloseCleanly(t *testing.T) {
	testbed.RequireBaresip(t)
	srv := testbed.StartServer(t, testbed.Binary(t), testbed.ServerConfig{
		Listen: []string{"udp://127.0.0.1:0", "tcp://127.0.0.1:0", "tls://127.0.0.1:0"}})
	addUsers(t, srv, []testbed.Cred{{User: "alice", Password: "alice-pw-1"}, {User: "bob", Password: "bob-pw-2"}})
	dir := t.TempDir()

	c, err := tls.Dial("tcp", srv.Addr(t, "tls"), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // fetching the certificate to trust
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, "switch.pem")
	err = os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.ConnectionState().PeerCertificates[0].Raw}), 0o600)
	c.Close()
	if err != nil {
		t.Fatal(err)
	}

	const aliceHz, bobHz = 1000, 600
	bob := testbed.StartBaresip(t, "bob", testbed.BaresipConfig{
		User: "bob", Password: "bob-pw-2", Domain: srv.Domain, Proxy: srv.Addr(t, "tls"), Transport: "tls", CAFile: ca,
		AnswerMode: "auto", AudioFile: testbed.MakeTone(t, filepath.Join(dir, "bob.wav"), bobHz, 20),
	})
	alice := testbed.StartBaresip(t, "alice", testbed.BaresipConfig{
		User: "alice", Password: "alice-pw-1", Domain: srv.Domain, Proxy: srv.Addr(t, "tcp"), Transport: "tcp",
		AudioFile: testbed.MakeTone(t, filepath.Join(dir, "alice.wav"), aliceHz, 20),
	})
	bob.WaitRegistered(t, 10*time.Second)
	alice.WaitRegistered(t, 10*time.Second)
	baresipCall(t, alice, bob, "sip:bob@"+srv.Domain, aliceHz, bobHz)

	if err := srv.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, err := srv.WaitExit(20 * time.Second); err != nil || code != 0 {
		t.Fatalf("switchboard after SIGTERM: exit %d, %v", code, err)
	}
	log := srv.Log()
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "ref went negative") || strings.Contains(line, "connection pool not clean") {
			t.Errorf("switch logged: %s", line)
		}
	}
	if !strings.Contains(log, "msg=stopped") {
		t.Errorf("switch did not log its stop:\n%s", testbed.Tail(log, 30))
	}
}

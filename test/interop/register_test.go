package interop

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/test/internal/testbed"
)

// addUsers creates users with the CLI, a few at a time.
func addUsers(t *testing.T, srv *testbed.Server, users []testbed.Cred) {
	t.Helper()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for _, u := range users {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if _, err := srv.CLI(context.Background(), "user", "add", u.User, "--password", u.Password); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
}

// TestSIPpRegister registers 100 users with digest authentication (REGISTER,
// 401, REGISTER with credentials, 200), over UDP and over TCP.
func TestSIPpRegister(t *testing.T) {
	testbed.RequireTool(t, "sipp")
	srv := testbed.StartServer(t, testbed.Binary(t), testbed.ServerConfig{})
	var users []testbed.Cred
	for i := range 100 {
		users = append(users, testbed.Cred{User: fmt.Sprintf("user%03d", i), Password: fmt.Sprintf("pw-%03d-secret", i)})
	}
	addUsers(t, srv, users)
	inf := testbed.WriteInf(t, filepath.Join(t.TempDir(), "users.csv"), users)

	for _, tc := range []struct{ name, transport, sippT string }{
		{"udp", "udp", "u1"},
		{"tcp", "tcp", "t1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := testbed.RunSIPp(t, testbed.SIPp{
				Scenario:  "register.xml",
				Remote:    srv.Addr(t, tc.transport),
				Transport: tc.sippT,
				Inf:       inf,
				Keys:      map[string]string{"domain": srv.Domain, "expires": "3600"},
				Args:      []string{"-m", "100", "-r", "50", "-l", "100"},
				Timeout:   time.Minute,
			})
			if res.ExitCode != 0 || res.Successful != 100 || res.Failed != 0 {
				t.Fatalf("want 100 registrations with 200 and 0 failed: %v", res)
			}
		})
	}
}

package registrar_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/siptest"
	"github.com/switchboard/switchboard/internal/sqldb"
	"github.com/switchboard/switchboard/registrar"
	"github.com/switchboard/switchboard/sip"
)

// startServer runs a registrar behind the real SIP server on UDP and TCP
// listeners of 127.0.0.1, with user bob.
func startServer(t *testing.T) (*registrar.Registrar, *sip.Server, *siptest.Trace) {
	t.Helper()
	tr := siptest.NewTrace(t)
	ctx := context.Background()
	db, err := sqldb.Open(ctx, filepath.Join(t.TempDir(), "switchboard.db"))
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registrar.New(ctx, registrar.Config{Realm: "switchboard.local", DB: db, Logger: tr.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Users().Add(ctx, "bob", "bob-secret"); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); reg.Serve(runCtx) }()
	srv, err := sip.New(sip.Config{Domain: "switchboard.local",
		Listen:    []sip.Listen{{Transport: "udp", Addr: "127.0.0.1:0"}, {Transport: "tcp", Addr: "127.0.0.1:0"}},
		Registrar: reg, Authenticator: reg.Authenticator(), Logger: tr.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() { defer wg.Done(); srv.Serve(runCtx) }()
	t.Cleanup(func() {
		srv.Close()
		stop()
		wg.Wait()
		db.Close()
	})
	return reg, srv, tr
}

func TestConnectionBoundBindingEndsWithConnection(t *testing.T) {
	reg, srv, tr := startServer(t)
	bob := siptest.NewPhone(t, siptest.Config{Transport: "tcp", Server: srv.Addrs()["tcp"], User: "bob", Password: "bob-secret", Trace: tr})
	res := bob.DoRegister(3600)
	if res.StatusCode != 200 {
		t.Fatalf("REGISTER over TCP: %d %s", res.StatusCode, res.Reason)
	}
	bs := reg.Location().Lookup("bob")
	if len(bs) != 1 || bs[0].Transport != "TCP" || bs[0].Source != bob.Addr() || !bs[0].ConnectionBound() {
		t.Fatalf("bindings %+v, want one TCP binding from %s", bs, bob.Addr())
	}

	// A UDP binding of the same user is not tied to the connection.
	udp := siptest.NewPhone(t, siptest.Config{Server: srv.Addrs()["udp"], User: "bob", Password: "bob-secret", Name: "bob-udp", Trace: tr})
	udp.MustRegister()

	bob.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		bs = reg.Location().Lookup("bob")
		if len(bs) == 1 && bs[0].Transport == "UDP" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("5s after the TCP connection closed the bindings are %+v, want only the UDP one", bs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRegisterThroughServer(t *testing.T) {
	_, srv, tr := startServer(t)
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			bob := siptest.NewPhone(t, siptest.Config{Transport: transport, Server: srv.Addrs()[transport], User: "bob", Password: "bob-secret", Trace: tr})
			m := bob.Register(3600)
			bob.Send(m)
			res := bob.WaitFinal(m)
			if res.StatusCode != 401 || len(res.GetHeaders("WWW-Authenticate")) != 2 {
				t.Fatalf("got %d with %d challenges, want 401 with 2:\n%s", res.StatusCode, len(res.GetHeaders("WWW-Authenticate")), res)
			}
			m = bob.Authenticate(m, res, "SHA-256")
			bob.Send(m)
			res = bob.WaitFinal(m)
			if res.StatusCode != 200 {
				t.Fatalf("got %d %s, want 200", res.StatusCode, res.Reason)
			}
			if c := res.GetHeaders("Contact"); len(c) == 0 {
				t.Fatalf("200 lists no contact")
			}
			// REGISTER for a foreign domain is not ours to answer.
			f := bob.Register(3600)
			f.Start = "REGISTER sip:example.com SIP/2.0"
			bob.Send(f)
			if res := bob.WaitFinal(f); res.StatusCode != 403 {
				t.Errorf("REGISTER for example.com: %d, want 403", res.StatusCode)
			}
		})
	}
}

package registrar

import (
	"context"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/siptest"
	"github.com/switchboard/switchboard/internal/sqldb"
)

// storedBindings counts the rows of the bindings table for aor.
func storedBindings(t *testing.T, h *harness, aor string) int {
	t.Helper()
	var n int
	if err := h.db.QueryRowContext(h.ctx, `SELECT COUNT(*) FROM bindings WHERE aor = ?`, aor).Scan(&n); err != nil {
		t.Fatalf("count bindings: %v", err)
	}
	return n
}

func TestBindingsSurviveRestart(t *testing.T) {
	h := newHarness(t, Config{})
	h.run()
	alice := h.phone("alice")
	m := alice.Register(3600)
	m.Set("Contact", "<"+alice.Contact()+">;q=0.8")
	h.mustRegister(alice, m)
	before := h.r.Location().Lookup("alice")

	// bob registers over TCP: a binding to a connection, which cannot
	// outlive the process.
	bob := h.phone("bob")
	reg := bob.Register(3600)
	reg.Set("Contact", "<sip:bob@127.0.0.1:40000;transport=tcp>")
	res := h.doFrom("127.0.0.1:40000", "TCP", reg)
	wantStatus(t, res, 401)
	reg = bob.Authenticate(reg, res, "MD5")
	wantStatus(t, h.doFrom("127.0.0.1:40000", "TCP", reg), 200)

	// Stop: Run flushes what is queued. Then reopen the same file.
	h.shutdown()
	if err := h.db.Close(); err != nil {
		t.Fatal(err)
	}
	h.open(Config{})
	h.run()

	after := h.r.Location().Lookup("alice")
	if len(after) != 1 {
		t.Fatalf("after restart alice has %d bindings, want 1", len(after))
	}
	a, b := after[0], before[0]
	if a.Contact != b.Contact || a.Q != b.Q || a.CallID != b.CallID || a.CSeq != b.CSeq ||
		a.Source != b.Source || a.Transport != b.Transport || a.NAT != b.NAT || a.UserAgent != b.UserAgent {
		t.Errorf("binding changed across restart:\nbefore %+v\nafter  %+v", b, a)
	}
	if d := a.Expires.Sub(b.Expires); d > time.Second || d < -time.Second {
		t.Errorf("expiry changed across restart: %s -> %s", b.Expires, a.Expires)
	}
	if bs := h.r.Location().Lookup("bob"); len(bs) != 0 {
		t.Errorf("TCP binding survived a restart: %+v", bs)
	}
	if n := h.r.Location().Count(); n != 1 {
		t.Errorf("Count() after restart = %d, want 1", n)
	}
	bs, known, err := h.r.Lookup(h.ctx, "alice")
	if err != nil || !known || len(bs) != 1 {
		t.Errorf("Registrar.Lookup(alice) = %d bindings, known %v, err %v", len(bs), known, err)
	}

	// The restored binding is refreshed in sequence (same Call-ID, higher
	// CSeq) by the new process, whose nonces are its own.
	m = alice.Register(3600)
	res = h.do(alice, m)
	wantStatus(t, res, 401)
	wantStatus(t, h.do(alice, alice.Authenticate(m, res, "MD5")), 200)
}

func TestExpiredBindingsArePurged(t *testing.T) {
	h := newHarness(t, Config{})
	h.run()
	alice := h.phone("alice")
	m := alice.Register(60)
	h.mustRegister(alice, m)
	eventually(t, 5*time.Second, "binding written", func() bool { return storedBindings(t, h, "alice") == 1 })

	loc := h.r.Location()
	later := time.Now().Add(61 * time.Second)
	loc.now = func() time.Time { return later }
	if bs := loc.Lookup("alice"); len(bs) != 0 {
		t.Errorf("Lookup returns expired bindings: %+v", bs)
	}
	bs, known, err := h.r.Lookup(h.ctx, "alice")
	if err != nil || !known || len(bs) != 0 {
		t.Errorf("Registrar.Lookup(alice) after expiry = %d bindings, known %v, err %v; want none, known", len(bs), known, err)
	}
	loc.purgeExpired()
	if n := loc.Count(); n != 0 {
		t.Errorf("Count() after purge = %d, want 0", n)
	}
	eventually(t, 5*time.Second, "expired binding deleted from the database", func() bool { return storedBindings(t, h, "alice") == 0 })
}

func TestExpiredBindingsAreNotLoaded(t *testing.T) {
	h := newHarness(t, Config{})
	now := time.Now()
	for _, b := range []Binding{
		{AOR: "alice", Contact: "sip:alice@192.0.2.1", Q: 1, Expires: now.Add(-time.Second), Source: netip.MustParseAddrPort("192.0.2.1:5060"), Transport: "UDP", Updated: now},
		{AOR: "alice", Contact: "sip:alice@192.0.2.2", Q: 1, Expires: now.Add(time.Hour), Source: netip.MustParseAddrPort("192.0.2.2:5060"), Transport: "UDP", Updated: now},
		{AOR: "bob", Contact: "sip:bob@192.0.2.3;transport=ws", Q: 1, Expires: now.Add(time.Hour), Source: netip.MustParseAddrPort("192.0.2.3:40000"), Transport: "WS", Updated: now},
	} {
		tx, err := h.db.BeginTx(h.ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := putBinding(b)(h.ctx, tx); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	loc, err := NewLocation(h.ctx, h.db, h.tr.Logger())
	if err != nil {
		t.Fatal(err)
	}
	bs := loc.Lookup("alice")
	if len(bs) != 1 || bs[0].Contact != "sip:alice@192.0.2.2" {
		t.Errorf("loaded alice bindings %+v, want only the unexpired one", bs)
	}
	if bs := loc.Lookup("bob"); len(bs) != 0 {
		t.Errorf("loaded a WebSocket binding: %+v", bs)
	}
	if loc.Count() != 1 {
		t.Errorf("Count() = %d, want 1", loc.Count())
	}
	if n := storedBindings(t, h, "alice") + storedBindings(t, h, "bob"); n != 1 {
		t.Errorf("%d rows left in the database, want 1", n)
	}
}

func TestDropFlow(t *testing.T) {
	h := newHarness(t, Config{})
	h.run()
	bob := h.phone("bob")
	src := "127.0.0.1:40001"
	for i, c := range []string{"<sip:bob@127.0.0.1:40001;transport=tcp>", "<sip:bob@192.0.2.7:5060>"} {
		m := bob.Register(3600)
		m.Set("Contact", c)
		tr, from := "TCP", src
		if i == 1 {
			tr, from = "UDP", "192.0.2.7:5060"
		}
		res := h.doFrom(from, tr, m)
		wantStatus(t, res, 401)
		wantStatus(t, h.doFrom(from, tr, bob.Authenticate(m, res, "MD5")), 200)
	}
	if n := len(h.r.Location().Lookup("bob")); n != 2 {
		t.Fatalf("%d bindings, want 2", n)
	}
	// Another connection's close, or the right port over another
	// transport, removes nothing.
	h.r.DropFlow("TCP", netip.MustParseAddrPort("127.0.0.1:40002"))
	h.r.DropFlow("TLS", netip.MustParseAddrPort(src))
	if n := len(h.r.Location().Lookup("bob")); n != 2 {
		t.Fatalf("unrelated DropFlow removed bindings: %d left", n)
	}
	h.r.DropFlow("tcp", netip.MustParseAddrPort(src))
	bs := h.r.Location().Lookup("bob")
	if len(bs) != 1 || bs[0].Transport != "UDP" {
		t.Fatalf("after the TCP flow closed: %+v, want only the UDP binding", bs)
	}
	eventually(t, 5*time.Second, "flow binding deleted from the database", func() bool { return storedBindings(t, h, "bob") == 1 })
}

func TestUserCacheSeesChangesFromAnotherInstance(t *testing.T) {
	h := newHarness(t, Config{})
	ctx, cancel := context.WithCancel(h.ctx)
	defer cancel()
	// The server's store caches; the CLI's store is another Users on its own
	// connection to the same file.
	cliDB, err := sqldb.Open(h.ctx, h.path)
	if err != nil {
		t.Fatal(err)
	}
	defer cliDB.Close()
	cli, err := NewUsers(h.ctx, cliDB, testRealm, h.tr.Logger())
	if err != nil {
		t.Fatal(err)
	}
	server := h.r.Users()
	before, err := server.Lookup(h.ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := server.Lookup(h.ctx, "carol"); err == nil {
		t.Fatal("carol exists before she is added")
	}

	done := make(chan struct{})
	go func() {
		defer close(done)
		server.Watch(ctx, 10*time.Millisecond)
	}()
	defer func() { cancel(); <-done }()
	waitWatching(t, h, server, cli)

	if err := cli.SetPassword(h.ctx, "alice", "new-secret"); err != nil {
		t.Fatal(err)
	}
	if err := cli.Add(h.ctx, "carol", "carol-secret"); err != nil {
		t.Fatal(err)
	}
	wantMD5, _ := ComputeHA1("alice", testRealm, "new-secret")
	deadline := time.Now().Add(5 * time.Second)
	for {
		u, err := server.Lookup(h.ctx, "alice")
		if err == nil && u.HA1MD5 == wantMD5 && u.HA1MD5 != before.HA1MD5 {
			break
		}
		if time.Now().After(deadline) {
			var stored string
			var v int64
			h.db.QueryRowContext(h.ctx, `SELECT ha1_md5 FROM users WHERE name = 'alice'`).Scan(&stored)
			h.db.QueryRowContext(h.ctx, `SELECT v FROM users_version WHERE id = 1`).Scan(&v)
			t.Fatalf("5s after the password change the cache still has the old one (stored is new: %v, users_version %d)", stored == wantMD5, v)
		}
		time.Sleep(10 * time.Millisecond)
	}
	eventually(t, 5*time.Second, "cached miss replaced", func() bool {
		_, err := server.Lookup(h.ctx, "carol")
		return err == nil
	})

	// The authenticator uses the new password.
	alice := h.phone("alice")
	m := alice.Register(3600)
	res := h.do(alice, m)
	wantStatus(t, res, 401)
	m = alice.Retry(m)
	if err := siptest.Authorize(m, res, "MD5", siptest.Credentials{User: "alice", Password: "new-secret"}); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, h.do(alice, m), 200)

	if err := cli.Delete(h.ctx, "carol"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "deleted user forgotten", func() bool {
		_, err := server.Lookup(h.ctx, "carol")
		return err != nil
	})
}

// waitWatching returns once server's Watch has taken its baseline version:
// Watch gives no sign of that, and a change made before it is never seen
// (the baseline already includes it), so bump a probe user until server
// notices.
func waitWatching(t *testing.T, h *harness, server, cli *Users) {
	t.Helper()
	if err := cli.Add(h.ctx, "probe", "p0"); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Lookup(h.ctx, "probe"); err != nil { // now cached
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for i := 1; time.Now().Before(deadline); i++ {
		pw := "p" + strconv.Itoa(i)
		if err := cli.SetPassword(h.ctx, "probe", pw); err != nil {
			t.Fatal(err)
		}
		want, _ := ComputeHA1("probe", testRealm, pw)
		step := time.Now().Add(200 * time.Millisecond)
		for time.Now().Before(step) {
			if u, err := server.Lookup(h.ctx, "probe"); err == nil && u.HA1MD5 == want {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	t.Fatal("user cache watcher never noticed a change")
}

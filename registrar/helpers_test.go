package registrar

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	gosip "github.com/emiago/sipgo/sip"

	"github.com/switchboard/switchboard/internal/siptest"
	"github.com/switchboard/switchboard/internal/sqldb"
)

const testRealm = "switchboard.local"

// testUsers are created in every test registrar.
var testUsers = map[string]string{"alice": "alice-secret", "bob": "bob-secret"}

// harness is a Registrar over a temporary SQLite file, driven directly with
// sipgo requests parsed from text.
type harness struct {
	t    *testing.T
	ctx  context.Context
	path string
	db   *sql.DB
	r    *Registrar
	tr   *siptest.Trace

	stop    context.CancelFunc
	running sync.WaitGroup
}

// newHarness opens a fresh database in t.TempDir, creates the test users
// and builds a Registrar with cfg (Realm is filled in). The registrar's
// background work is not started; see run.
func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	h := &harness{t: t, ctx: context.Background(), path: filepath.Join(t.TempDir(), "switchboard.db"), tr: siptest.NewTrace(t)}
	h.open(cfg)
	for name, pw := range testUsers {
		if err := h.r.Users().Add(h.ctx, name, pw); err != nil {
			t.Fatalf("add user %s: %v", name, err)
		}
	}
	return h
}

// open opens the database at h.path and builds the registrar; the database
// is closed (after the registrar's background work has stopped) at the end
// of the test.
func (h *harness) open(cfg Config) {
	h.t.Helper()
	if cfg.Realm == "" {
		cfg.Realm = testRealm
	}
	db, err := sqldb.Open(h.ctx, h.path)
	if err != nil {
		h.t.Fatalf("open database: %v", err)
	}
	h.db = db
	h.t.Cleanup(func() { db.Close() })
	cfg.DB, cfg.Logger = db, h.tr.Logger()
	r, err := New(h.ctx, cfg)
	if err != nil {
		h.t.Fatalf("registrar.New: %v", err)
	}
	h.r = r
}

// run starts the registrar's persistence; shutdown (or the end of the test)
// stops it and waits for the queued writes to be flushed.
func (h *harness) run() {
	ctx, cancel := context.WithCancel(h.ctx)
	h.stop = cancel
	h.running.Add(1)
	go func() {
		defer h.running.Done()
		h.r.Serve(ctx)
	}()
	h.t.Cleanup(h.shutdown)
}

func (h *harness) shutdown() {
	if h.stop != nil {
		h.stop()
		h.running.Wait()
		h.stop = nil
	}
}

// phone returns a phone for user (no server: its requests are handed to
// the registrar directly, with the phone's address as their source).
func (h *harness) phone(user string) *siptest.Phone {
	h.t.Helper()
	return siptest.NewPhone(h.t, siptest.Config{User: user, Password: testUsers[user], Domain: testRealm, Trace: h.tr})
}

// do hands m to Register as if it came from p over UDP and returns the
// response the proxy would send: the 200, or the response of the error.
func (h *harness) do(p *siptest.Phone, m *siptest.Msg) *gosip.Response {
	h.t.Helper()
	return h.doFrom(p.Addr().String(), "UDP", m)
}

func (h *harness) doFrom(source, transport string, m *siptest.Msg) *gosip.Response {
	h.t.Helper()
	req, err := siptest.ParseRequest(m.String(), transport, source)
	if err != nil {
		h.t.Fatalf("parse %q: %v", m.Start, err)
	}
	h.tr.Printf("REGISTER from %s %s:\n%s", transport, source, m)
	ctx, cancel := context.WithTimeout(h.ctx, 5*time.Second)
	defer cancel()
	res, err := h.r.Register(ctx, req)
	if err != nil {
		res = errorResponse(req, err)
	}
	h.tr.Printf("answer:\n%s", res)
	return res
}

// errorResponse is what the proxy answers for err (as sip.responseFor).
func errorResponse(req *gosip.Request, err error) *gosip.Response {
	var se *StatusError
	if !errors.As(err, &se) {
		return gosip.NewResponseFromRequest(req, 500, "Server Internal Error: "+err.Error(), nil)
	}
	res := gosip.NewResponseFromRequest(req, se.Code, se.Reason, nil)
	for _, hd := range se.Headers {
		res.AppendHeader(hd)
	}
	return res
}

// register sends m, answers its 401 with alg credentials, and returns the
// final response and the request that carried the credentials.
func (h *harness) register(p *siptest.Phone, m *siptest.Msg, alg string) (*gosip.Response, *siptest.Msg) {
	h.t.Helper()
	res := h.do(p, m)
	if res.StatusCode != 401 {
		h.t.Fatalf("REGISTER without credentials: got %d %s, want 401", res.StatusCode, res.Reason)
	}
	m = p.Authenticate(m, res, alg)
	return h.do(p, m), m
}

// mustRegister is register that requires a 200.
func (h *harness) mustRegister(p *siptest.Phone, m *siptest.Msg) *gosip.Response {
	h.t.Helper()
	res, _ := h.register(p, m, "MD5")
	if res.StatusCode != 200 {
		h.t.Fatalf("REGISTER: got %d %s, want 200", res.StatusCode, res.Reason)
	}
	return res
}

// contacts returns the Contact values of a response.
func contacts(res *gosip.Response) []string {
	var out []string
	for _, c := range res.GetHeaders("Contact") {
		out = append(out, c.Value())
	}
	return out
}

func wantStatus(t *testing.T, res *gosip.Response, code int) {
	t.Helper()
	if res.StatusCode != code {
		t.Fatalf("got %d %s, want %d\n%s", res.StatusCode, res.Reason, code, res)
	}
}

// eventually polls cond every 10ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func headerValues(res *gosip.Response, name string) []string {
	var out []string
	for _, h := range res.GetHeaders(name) {
		out = append(out, h.Value())
	}
	return out
}

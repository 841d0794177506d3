package sip

import (
	"context"
	"database/sql"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gosip "github.com/emiago/sipgo/sip"

	"github.com/switchboard/switchboard/cdr"
	"github.com/switchboard/switchboard/internal/siptest"
	"github.com/switchboard/switchboard/internal/sqldb"
	"github.com/switchboard/switchboard/registrar"
)

const testDomain = "switchboard.local"

// passwords of the users every test switch has. dave never registers.
var passwords = map[string]string{
	"alice": "alice-secret",
	"bob":   "bob-secret",
	"carol": "carol-secret",
	"dave":  "dave-secret",
}

// testSwitch is the registrar, CDR store and SIP server wired as the binary
// wires them, on ephemeral ports of 127.0.0.1 and a temporary database.
type testSwitch struct {
	t   testing.TB
	srv *Server
	reg *registrar.Registrar
	db  *sql.DB
	tr  *siptest.Trace
}

// startSwitch starts a switch; edit may change its SIP config. Everything
// is stopped (and the goroutine-leak check of TestMain covers it) when the
// test ends.
func startSwitch(t testing.TB, edit ...func(*Config)) *testSwitch {
	t.Helper()
	tr := siptest.NewTrace(t)
	ctx := context.Background()
	db, err := sqldb.Open(ctx, filepath.Join(t.TempDir(), "switchboard.db"))
	if err != nil {
		t.Fatal(err)
	}
	log := tr.Logger()
	reg, err := registrar.New(ctx, registrar.Config{Realm: testDomain, DB: db, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	for u, pw := range passwords {
		if err := reg.Users().Add(ctx, u, pw); err != nil {
			t.Fatal(err)
		}
	}
	calls, err := cdr.New(ctx, cdr.Config{DB: db, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	bg, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); reg.Serve(bg) }()
	go func() { defer wg.Done(); calls.Serve(bg) }()

	cfg := Config{
		Registrar: reg, Authenticator: reg.Authenticator(), Recorder: calls, Logger: log,
		Domain: testDomain,
		Listen: []Listen{{Transport: "udp", Addr: "127.0.0.1:0"}, {Transport: "tcp", Addr: "127.0.0.1:0"}},
		TimerC: 30 * time.Second,
	}
	for _, e := range edit {
		e(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		stop()
		wg.Wait()
		db.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		stop()
		wg.Wait()
		db.Close()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(bg); err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	return &testSwitch{t: t, srv: srv, reg: reg, db: db, tr: tr}
}

// phone returns a phone of user over transport ("udp", "tcp") named name.
func (s *testSwitch) phone(user, transport, name string) *siptest.Phone {
	s.t.Helper()
	if name == "" {
		name = user
	}
	return siptest.NewPhone(s.t, siptest.Config{
		Transport: transport, Server: s.srv.Addrs()[transport], User: user, Password: passwords[user], Name: name, Trace: s.tr,
	})
}

// registered returns a UDP phone of user that has registered.
func (s *testSwitch) registered(user, name string) *siptest.Phone {
	s.t.Helper()
	p := s.phone(user, "udp", name)
	p.MustRegister()
	return p
}

// serveWS mounts the WebSocket handler on an HTTP server of its own and
// returns the ws:// URL of /sip.
func (s *testSwitch) serveWS() string {
	s.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/sip", s.srv.WebSocketHandler(ln.Addr()))
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); hs.Serve(ln) }()
	s.t.Cleanup(func() {
		hs.Close()
		<-done
	})
	return "ws://" + ln.Addr().String() + "/sip"
}

// records polls the CDR table until cond holds for the records, and returns
// them.
func (s *testSwitch) records(what string, cond func([]cdr.Record) bool) []cdr.Record {
	s.t.Helper()
	var rs []cdr.Record
	deadline := time.Now().Add(5 * time.Second)
	for {
		var err error
		rs, err = cdr.List(context.Background(), s.db, 100)
		if err != nil {
			s.t.Fatal(err)
		}
		if cond(rs) {
			return rs
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("call records: %s not within 5s; records: %+v", what, rs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// record returns the CDR of callID once cond holds for it.
func (s *testSwitch) record(callID, what string, cond func(cdr.Record) bool) cdr.Record {
	s.t.Helper()
	var out cdr.Record
	s.records(what, func(rs []cdr.Record) bool {
		for _, r := range rs {
			if r.CallID == callID && cond(r) {
				out = r
				return true
			}
		}
		return false
	})
	return out
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

// callURI is the Request-URI that calls user.
func callURI(user string) string { return "sip:" + user + "@" + testDomain }

// invite sends an INVITE from caller to callee with credentials (after the
// 407) and returns it as sent the second time.
func invite(t *testing.T, caller *siptest.Phone, callee string) *siptest.Msg {
	t.Helper()
	return caller.SendAuthenticated(sdpInvite(caller, callee))
}

// sdpInvite is an initial INVITE from caller to callee with an SDP offer,
// not sent yet.
func sdpInvite(caller *siptest.Phone, callee string) *siptest.Msg {
	m := caller.Request("INVITE", callURI(callee))
	m.Set("Content-Type", "application/sdp")
	m.Body = sdpOffer(caller)
	return m
}

func sdpOffer(p *siptest.Phone) string {
	ip := p.Addr().Addr().String()
	return "v=0\r\no=- 1 1 IN IP4 " + ip + "\r\ns=-\r\nc=IN IP4 " + ip + "\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
}

// answer makes callee answer the INVITE req with 180 then 200 and returns
// the callee's dialog.
func answer(t *testing.T, callee *siptest.Phone, req *gosip.Request) *siptest.Dialog {
	t.Helper()
	callee.Reply(req, 180, "Ringing")
	callee.Reply(req, 200, "OK")
	return callee.UASDialog(req)
}

// headerValues returns every value of a header of msg.
func headerValues(msg gosip.Message, name string) []string {
	var out []string
	for _, h := range msg.GetHeaders(name) {
		out = append(out, h.Value())
	}
	return out
}

func wantStatus(t *testing.T, res *gosip.Response, codes ...int) {
	t.Helper()
	for _, c := range codes {
		if res.StatusCode == c {
			return
		}
	}
	t.Fatalf("got %d %s, want %v:\n%s", res.StatusCode, res.Reason, codes, res)
}

func contains(vs []string, sub string) bool {
	for _, v := range vs {
		if strings.Contains(v, sub) {
			return true
		}
	}
	return false
}

package trunk

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gosip "github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/switchboard/switchboard/internal/sqldb"
)

// fakeTx is a client transaction that delivers at most one response.
type fakeTx struct {
	res  chan *gosip.Response
	done chan struct{}
	once sync.Once
}

func (t *fakeTx) Terminate()                               { t.once.Do(func() { close(t.done) }) }
func (t *fakeTx) OnTerminate(gosip.FnTxTerminate) bool     { return true }
func (t *fakeTx) Done() <-chan struct{}                    { return t.done }
func (t *fakeTx) Err() error                               { return nil }
func (t *fakeTx) Responses() <-chan *gosip.Response        { return t.res }
func (t *fakeTx) OnRetransmission(gosip.FnTxResponse) bool { return true }
func (t *fakeTx) String() string                           { return "fakeTx" }

// registrarStandIn is a carrier's registrar behind the Transport
// interface: it challenges with digest, checks the credentials and grants
// a short expiry; down makes it answer nothing.
type registrarStandIn struct {
	t       *testing.T
	user    string
	pass    string
	expires int

	mu       sync.Mutex
	down     bool
	requests []*gosip.Request
	granted  int // 200s sent for a registration (expires > 0)
	removed  int // 200s sent for Expires: 0
}

func (r *registrarStandIn) ContactURI(transport, dest string) (gosip.Uri, bool) {
	return gosip.Uri{Scheme: "sip", Host: "192.0.2.1", Port: 5060, UriParams: gosip.NewParams()}, true
}

func (r *registrarStandIn) Originate(_ context.Context, req *gosip.Request, transport, dest string) (gosip.ClientTransaction, error) {
	tx := &fakeTx{res: make(chan *gosip.Response, 1), done: make(chan struct{})}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests = append(r.requests, req)
	if r.down {
		return tx, nil
	}
	if transport != "UDP" || dest != "192.0.2.10:5060" {
		r.t.Errorf("REGISTER sent over %s to %s", transport, dest)
	}
	// As the client would get it off the wire.
	res, err := gosip.ParseMessage([]byte(r.answer(req).String()))
	if err != nil {
		r.t.Errorf("answer: %v", err)
		return tx, nil
	}
	tx.res <- res.(*gosip.Response)
	return tx, nil
}

const testRealm = "carrier.example"

func (r *registrarStandIn) answer(req *gosip.Request) *gosip.Response {
	h := req.GetHeader("Authorization")
	if h == nil {
		res := gosip.NewResponseFromRequest(req, 401, "Unauthorized", nil)
		res.AppendHeader(gosip.NewHeader("WWW-Authenticate", fmt.Sprintf(`Digest realm="%s", nonce="n%d", qop="auth", algorithm=MD5`, testRealm, len(r.requests))))
		return res
	}
	cred, err := digest.ParseCredentials(h.Value())
	if err != nil {
		r.t.Errorf("Authorization %q: %v", h.Value(), err)
		return gosip.NewResponseFromRequest(req, 400, "Bad Request", nil)
	}
	want, _ := digest.Digest(&digest.Challenge{Realm: testRealm, Nonce: cred.Nonce, QOP: []string{"auth"}, Algorithm: "MD5"},
		digest.Options{Method: "REGISTER", URI: cred.URI, Username: r.user, Password: r.pass, Cnonce: cred.Cnonce, Count: cred.Nc})
	if cred.Response != want.Response || cred.URI != req.Recipient.String() || cred.Username != r.user {
		return gosip.NewResponseFromRequest(req, 403, "Forbidden", nil)
	}
	res := gosip.NewResponseFromRequest(req, 200, "OK", nil)
	exp := r.expires
	if e := req.GetHeader("Expires"); e != nil && e.Value() == "0" {
		exp = 0
		r.removed++
	} else {
		r.granted++
	}
	c := req.Contact()
	res.AppendHeader(gosip.NewHeader("Contact", fmt.Sprintf("<sip:other@203.0.113.9>;expires=3600, <%s>;expires=%d", c.Address.String(), exp)))
	return res
}

func (r *registrarStandIn) setDown(down bool) {
	r.mu.Lock()
	r.down = down
	r.mu.Unlock()
}

func (r *registrarStandIn) counts() (requests, granted, removed int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.requests), r.granted, r.removed
}

// eventually waits for cond, failing the test after timeout.
func eventually(t *testing.T, timeout time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRegistration: the client registers answering the challenge, keeps
// one Call-ID with rising CSeqs, refreshes before the granted expiry,
// records failures while the carrier is down and registers again when it
// is back, takes the registration back at shutdown, and keeps its state in
// the database for `switchboard trunk list`.
func TestRegistration(t *testing.T) {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, filepath.Join(t.TempDir(), "sb.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	carrier := &registrarStandIn{t: t, user: "u1", pass: "secret", expires: 1}
	cfg := Config{
		Trunks: []Trunk{{Name: "carrier1", Address: "sip:192.0.2.10", Username: "u1", Password: "secret", Register: true,
			Timeout: 150 * time.Millisecond}},
		Transport: carrier, DB: db,
	}
	tr := newTrunks(t, cfg)
	if st, _ := States(ctx, db); st["carrier1"].State != StateRegistering {
		t.Errorf("state before Serve: %+v", st)
	}
	serveCtx, stop := context.WithCancel(ctx)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- tr.Serve(serveCtx) }()

	flow := netip.MustParseAddrPort("192.0.2.10:5060")
	eventually(t, 3*time.Second, func() bool { return tr.States()[0].State == StateRegistered }, "registered")
	if got := tr.Carrier(flow, "UDP"); got != "carrier1" {
		t.Errorf("the registration's flow is not the trunk's: %q", got)
	}
	if got := tr.Carrier(flow, "TCP"); got != "" {
		t.Errorf("another transport from the registrar's address: %q", got)
	}
	st := tr.States()[0]
	if d := time.Until(st.Expires); d <= 0 || d > 1100*time.Millisecond {
		t.Errorf("expires in %s, want the 1s granted", d)
	}
	// Refreshed before it runs out (a quarter before: every 750 ms).
	eventually(t, 3*time.Second, func() bool { _, g, _ := carrier.counts(); return g >= 3 }, "two refreshes")
	if s := tr.States()[0]; s.State != StateRegistered || !s.Registered() {
		t.Errorf("after refreshes: %+v", s)
	}

	// The carrier goes away: the refresh fails, the state says why.
	carrier.setDown(true)
	eventually(t, 3*time.Second, func() bool { return tr.States()[0].State == StateFailed }, "failure noticed")
	st = tr.States()[0]
	if !strings.Contains(st.LastError, "no response") {
		t.Errorf("last error %q", st.LastError)
	}
	eventually(t, 3*time.Second, func() bool { return tr.Carrier(flow, "UDP") == "" }, "flow forgotten once expired")
	stored, err := States(ctx, db)
	if err != nil || stored["carrier1"].State != StateFailed || stored["carrier1"].LastError == "" {
		t.Errorf("stored state %+v, %v", stored, err)
	}
	// Back: registered again within the backoff (1 s, then 2 s).
	carrier.setDown(false)
	eventually(t, 5*time.Second, func() bool { return tr.States()[0].State == StateRegistered }, "registered again")

	// The REGISTERs: one Call-ID, CSeq rising by one each, credentials
	// only after a challenge.
	carrier.mu.Lock()
	reqs := append([]*gosip.Request(nil), carrier.requests...)
	carrier.mu.Unlock()
	for i, r := range reqs {
		if r.CallID().Value() != reqs[0].CallID().Value() {
			t.Errorf("REGISTER %d: Call-ID %s, first %s", i, r.CallID().Value(), reqs[0].CallID().Value())
		}
		if i > 0 && r.CSeq().SeqNo != reqs[i-1].CSeq().SeqNo+1 {
			t.Errorf("REGISTER %d: CSeq %d after %d", i, r.CSeq().SeqNo, reqs[i-1].CSeq().SeqNo)
		}
		if got := r.From().Address.String() + " " + r.Contact().Address.String(); got != "sip:u1@192.0.2.10 sip:u1@192.0.2.1:5060" {
			t.Errorf("REGISTER %d: AOR and Contact %s", i, got)
		}
	}
	if reqs[0].GetHeader("Authorization") != nil || reqs[1].GetHeader("Authorization") == nil {
		t.Error("credentials not only in answer to the challenge")
	}

	// Shutdown takes the registration back.
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := tr.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if _, _, removed := carrier.counts(); removed != 1 {
		t.Errorf("%d REGISTERs with Expires: 0 answered, want 1", removed)
	}
	if s := tr.States()[0]; s.State != StateStopped {
		t.Errorf("after shutdown: %+v", s)
	}
	if stored, _ := States(ctx, db); stored["carrier1"].State != StateStopped {
		t.Errorf("stored after shutdown: %+v", stored)
	}
}

// TestRegistrationRefused: wrong credentials are a failure (not a loop of
// challenges), retried with backoff.
func TestRegistrationRefused(t *testing.T) {
	carrier := &registrarStandIn{t: t, user: "u1", pass: "right", expires: 60}
	tr := newTrunks(t, Config{
		Trunks: []Trunk{{Name: "c", Address: "sip:192.0.2.10:5060", Username: "u1", Password: "wrong", Register: true,
			Timeout: time.Second}},
		Transport: carrier,
	})
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- tr.Serve(ctx) }()
	eventually(t, 3*time.Second, func() bool { return tr.States()[0].State == StateFailed }, "refusal")
	if got := tr.States()[0].LastError; got != "403 Forbidden" {
		t.Errorf("last error %q", got)
	}
	n, _, _ := carrier.counts()
	if n != 2 {
		t.Errorf("%d REGISTERs for one attempt, want 2 (challenge, refusal)", n)
	}
	stop()
	if err := <-served; err != nil {
		t.Error(err)
	}
}

func TestGrantedExpiry(t *testing.T) {
	ours := gosip.Uri{Scheme: "sip", User: "u1", Host: "192.0.2.1", Port: 5060}
	for _, c := range []struct {
		headers string
		want    time.Duration
	}{
		{"Contact: <sip:x@203.0.113.9>;expires=3600, <sip:u1@192.0.2.1:5060>;expires=120\r\n", 120 * time.Second},
		{"Contact: <sip:u1@192.0.2.1:5060>\r\nExpires: 300\r\n", 300 * time.Second},
		{"Contact: <sip:x@203.0.113.9>;expires=90\r\n", 90 * time.Second},
		{"", 3600 * time.Second},
	} {
		msg, err := gosip.ParseMessage([]byte("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\r\nFrom: <sip:u1@c>;tag=1\r\n" +
			"To: <sip:u1@c>;tag=2\r\nCall-ID: x\r\nCSeq: 2 REGISTER\r\n" + c.headers + "Content-Length: 0\r\n\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		if got := grantedExpiry(msg.(*gosip.Response), ours, 3600); got != c.want {
			t.Errorf("%q: %s, want %s", c.headers, got, c.want)
		}
	}
}

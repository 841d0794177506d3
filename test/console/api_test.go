package console

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/turn/v5"

	"github.com/switchboard/switchboard/test/internal/testbed"
)

func TestMain(m *testing.M) { os.Exit(testbed.Main(m)) }

// client is an HTTP client of the switch's admin API.
type client struct {
	t      *testing.T
	base   string
	http   *http.Client
	token  string
	csrf   string
	origin string
}

func newClient(t *testing.T, base string, local net.IP) *client {
	jar, _ := cookiejar.New(nil)
	tr := &http.Transport{}
	if local != nil {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: local}}
		tr.DialContext = d.DialContext
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &client{t: t, base: base, http: &http.Client{Jar: jar, Transport: tr, Timeout: 30 * time.Second}}
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) code() string {
	var e struct{ Error, Code string }
	_ = json.Unmarshal(a.body, &e)
	return e.Code
}

func (a answer) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(a.body, v); err != nil {
		t.Fatalf("decode %s: %v", a.body, err)
	}
}

func (c *client) do(method, path string, body any, hdr ...string) answer {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.csrf != "" {
		req.Header.Set("X-CSRF-Token", c.csrf)
	}
	if c.origin != "" {
		req.Header.Set("Origin", c.origin)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return answer{status: res.StatusCode, header: res.Header, body: b}
}

// want checks an answer's status (and error code, when not "").
func want(t *testing.T, a answer, status int, code string) {
	t.Helper()
	if a.status != status || (code != "" && a.code() != code) {
		t.Fatalf("got %d %s, want %d %s", a.status, a.body, status, code)
	}
	if status >= 400 && !strings.HasPrefix(a.header.Get("Content-Type"), "application/json") {
		t.Fatalf("error answer is not JSON: %s %q", a.header.Get("Content-Type"), a.body)
	}
}

// startSwitch starts the binary with the console (on by default) and an
// admin account, and returns it with an API token of that admin.
func startSwitch(t *testing.T, cfg testbed.ServerConfig) (*testbed.Server, string) {
	t.Helper()
	sw := testbed.StartServer(t, testbed.Binary(t), cfg)
	ctx := context.Background()
	if _, err := sw.CLI(ctx, "admin", "add", "ops", "--password", "ops-secret"); err != nil {
		t.Fatal(err)
	}
	out, err := sw.CLI(ctx, "admin", "token", "ops")
	if err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimSpace(out)
	if !strings.HasPrefix(tok, "sbt_") {
		t.Fatalf("admin token printed %q", out)
	}
	return sw, tok
}

func TestAPI(t *testing.T) {
	sw, tok := startSwitch(t, testbed.ServerConfig{
		Security: "auth_failures: 5",
		TURN:     true, TURNOptions: "allow_peers: [127.0.0.0/8]",
	})
	base := "http://" + sw.Addrs["http"]
	ctx := context.Background()

	t.Run("health needs no credentials", func(t *testing.T) {
		c := newClient(t, base, nil)
		a := c.do("GET", "/api/v1/health", nil)
		want(t, a, 200, "")
		if !strings.Contains(string(a.body), "serving") {
			t.Fatalf("health: %s", a.body)
		}
	})

	t.Run("401 without or with bad credentials", func(t *testing.T) {
		c := newClient(t, base, nil)
		for _, p := range []string{"/api/v1/registrations", "/api/v1/calls", "/api/v1/cdr", "/api/v1/users",
			"/api/v1/bans", "/api/v1/turn/allocations", "/api/v1/stats", "/api/v1/calls/x/trace"} {
			want(t, c.do("GET", p, nil), 401, "unauthorized")
		}
		want(t, c.do("DELETE", "/api/v1/calls/x", nil), 401, "unauthorized")
		want(t, c.do("GET", "/api/v1/calls", nil, "Authorization", "Bearer sbt_wrong"), 401, "invalid_token")
		want(t, c.do("GET", "/api/v1/calls", nil, "Authorization", "Basic b3BzOm9wcy1zZWNyZXQ="), 401, "unauthorized")
		want(t, c.do("GET", "/admin/session", nil), 401, "unauthorized")
	})

	t.Run("token", func(t *testing.T) {
		c := newClient(t, base, nil)
		c.token = tok
		want(t, c.do("GET", "/api/v1/registrations", nil), 200, "")
		want(t, c.do("GET", "/api/v1/calls", nil), 200, "")
		want(t, c.do("GET", "/api/v1/nothing", nil), 404, "not_found")
		want(t, c.do("PUT", "/api/v1/calls", nil), 405, "method_not_allowed")
		// A token needs no CSRF header: a page of another site cannot set
		// Authorization.
		want(t, c.do("POST", "/api/v1/users", map[string]string{"name": "tok1", "password": "pw"}), 201, "")
		var st struct {
			Interval float64 `json:"interval_s"`
			Points   []struct {
				Calls, Registrations int
			} `json:"points"`
		}
		a := c.do("GET", "/api/v1/stats", nil)
		want(t, a, 200, "")
		a.decode(t, &st)
		if st.Interval != 10 || len(st.Points) < 1 {
			t.Fatalf("stats: %s", a.body)
		}
		// Deleting the admin revokes its tokens.
		if _, err := sw.CLI(ctx, "admin", "add", "temp", "--password", "x"); err != nil {
			t.Fatal(err)
		}
		out, err := sw.CLI(ctx, "admin", "token", "temp")
		if err != nil {
			t.Fatal(err)
		}
		c2 := newClient(t, base, nil)
		c2.token = strings.TrimSpace(out)
		want(t, c2.do("GET", "/api/v1/users", nil), 200, "")
		list, err := sw.CLI(ctx, "admin", "list")
		if err != nil || !strings.Contains(list, "temp") || !strings.Contains(list, "ops") {
			t.Fatalf("admin list: %v\n%s", err, list)
		}
		if _, err := sw.CLI(ctx, "admin", "del", "temp"); err != nil {
			t.Fatal(err)
		}
		want(t, c2.do("GET", "/api/v1/users", nil), 401, "invalid_token")
	})

	t.Run("session, cookie and CSRF", func(t *testing.T) {
		c := newClient(t, base, nil)
		want(t, c.do("POST", "/admin/session", map[string]string{"name": "ops", "password": "wrong"}), 401, "wrong_credentials")
		want(t, c.do("POST", "/admin/session", "not an object"), 400, "bad_request")
		a := c.do("POST", "/admin/session", map[string]string{"name": "ops", "password": "ops-secret"})
		want(t, a, 200, "")
		ck := a.header.Get("Set-Cookie")
		for _, attr := range []string{"HttpOnly", "SameSite=Strict", "Path=/"} {
			if !strings.Contains(ck, attr) {
				t.Errorf("session cookie %q lacks %s", ck, attr)
			}
		}
		if strings.Contains(ck, "Secure") {
			t.Errorf("session cookie over plain HTTP is Secure: %q", ck)
		}
		var info struct{ Name, CSRF string }
		a.decode(t, &info)
		if info.Name != "ops" || info.CSRF == "" {
			t.Fatalf("sign-in answer %s", a.body)
		}
		want(t, c.do("GET", "/api/v1/users", nil), 200, "")
		want(t, c.do("GET", "/admin/session", nil), 200, "")
		// A state change with the cookie alone is refused.
		want(t, c.do("POST", "/api/v1/users", map[string]string{"name": "csrf1", "password": "pw"}), 403, "csrf")
		want(t, c.do("DELETE", "/api/v1/users/tok1", nil), 403, "csrf")
		c.csrf = info.CSRF
		c.origin = "http://evil.example"
		want(t, c.do("POST", "/api/v1/users", map[string]string{"name": "csrf1", "password": "pw"}), 403, "cross_origin")
		c.origin = base
		want(t, c.do("POST", "/api/v1/users", map[string]string{"name": "csrf1", "password": "pw"}), 201, "")
		// Signed out, the cookie is worth nothing.
		want(t, c.do("DELETE", "/admin/session", nil), 204, "")
		want(t, c.do("GET", "/api/v1/users", nil), 401, "")
	})

	t.Run("users", func(t *testing.T) {
		c := newClient(t, base, nil)
		c.token = tok
		want(t, c.do("POST", "/api/v1/users", map[string]string{"name": "bad name", "password": "pw"}), 400, "invalid_name")
		want(t, c.do("POST", "/api/v1/users", map[string]string{"name": "nopw"}), 400, "no_password")
		want(t, c.do("POST", "/api/v1/users", map[string]any{"name": 3}), 400, "bad_request")
		want(t, c.do("POST", "/api/v1/users", map[string]string{"name": "carol", "password": "carol-pw"}), 201, "")
		want(t, c.do("POST", "/api/v1/users", map[string]string{"name": "carol", "password": "x"}), 409, "exists")
		var users []struct{ Name string }
		a := c.do("GET", "/api/v1/users", nil)
		want(t, a, 200, "")
		a.decode(t, &users)
		found := false
		for _, u := range users {
			found = found || u.Name == "carol"
		}
		if !found {
			t.Fatalf("carol not listed: %s", a.body)
		}
		want(t, c.do("PUT", "/api/v1/users/carol", map[string]string{"password": "new-pw"}), 204, "")
		want(t, c.do("PUT", "/api/v1/users/carol", map[string]string{}), 400, "no_password")
		want(t, c.do("PUT", "/api/v1/users/nobody", map[string]string{"password": "x"}), 404, "no_user")
		// The CLI sees what the API did.
		if out, err := sw.CLI(ctx, "user", "list"); err != nil || !strings.Contains(out, "carol") {
			t.Fatalf("user list: %v %s", err, out)
		}
		want(t, c.do("DELETE", "/api/v1/users/carol", nil), 204, "")
		want(t, c.do("DELETE", "/api/v1/users/carol", nil), 404, "no_user")
	})

	t.Run("cdr filters", func(t *testing.T) {
		c := newClient(t, base, nil)
		c.token = tok
		want(t, c.do("GET", "/api/v1/cdr", nil), 200, "")
		want(t, c.do("GET", "/api/v1/cdr?status=answered&user=alice&since=2024-01-01&until="+url.QueryEscape(time.Now().Add(time.Hour).Format(time.RFC3339))+"&limit=5", nil), 200, "")
		want(t, c.do("GET", "/api/v1/cdr?status=maybe", nil), 400, "bad_filter")
		want(t, c.do("GET", "/api/v1/cdr?limit=0", nil), 400, "bad_filter")
		want(t, c.do("GET", "/api/v1/cdr?limit=5000", nil), 400, "bad_filter")
		want(t, c.do("GET", "/api/v1/cdr?since=yesterday", nil), 400, "bad_filter")
		want(t, c.do("GET", "/api/v1/cdr?cursor=nonsense", nil), 400, "bad_filter")
	})

	t.Run("calls and traces of unknown calls", func(t *testing.T) {
		c := newClient(t, base, nil)
		c.token = tok
		want(t, c.do("DELETE", "/api/v1/calls/"+url.PathEscape("no-such@call"), nil), 404, "no_call")
		want(t, c.do("GET", "/api/v1/calls/"+url.PathEscape("no-such@call")+"/trace", nil), 404, "no_trace")
	})

	t.Run("TURN allocations", func(t *testing.T) {
		c := newClient(t, base, nil)
		c.token = tok
		a := c.do("GET", "/api/v1/turn/allocations", nil)
		want(t, a, 200, "")
		sw.AddUser(t, "turnuser", "turn-pw")
		turnAddr := sw.Addrs["turn/udp"]
		if turnAddr == "" {
			t.Fatalf("no turn/udp listener in %v", sw.Addrs)
		}
		conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		tc, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: turnAddr, TURNServerAddr: turnAddr, Conn: conn,
			Username: "turnuser", Password: "turn-pw", Realm: sw.Domain})
		if err != nil {
			t.Fatal(err)
		}
		defer tc.Close()
		if err := tc.Listen(); err != nil {
			t.Fatal(err)
		}
		relay, err := tc.Allocate()
		if err != nil {
			t.Fatal(err)
		}
		defer relay.Close()
		var allocs []struct{ User, Client, Relay string }
		if !testbed.Poll(5*time.Second, 50*time.Millisecond, func() bool {
			a = c.do("GET", "/api/v1/turn/allocations", nil)
			allocs = nil
			_ = json.Unmarshal(a.body, &allocs)
			return len(allocs) == 1
		}) {
			t.Fatalf("allocations: %s", a.body)
		}
		if allocs[0].User != "turnuser" || allocs[0].Client != conn.LocalAddr().String() || allocs[0].Relay != relay.LocalAddr().String() {
			t.Fatalf("allocation %+v, client %s relay %s", allocs[0], conn.LocalAddr(), relay.LocalAddr())
		}
	})

	t.Run("sign-in failures ban, and the ban is lifted", func(t *testing.T) {
		// From 127.0.0.2: the ban of that source does not lock the
		// token's client (127.0.0.1) out.
		bad := newClient(t, base, net.ParseIP("127.0.0.2"))
		for range 5 {
			want(t, bad.do("POST", "/admin/session", map[string]string{"name": "ops", "password": "guess"}), 401, "wrong_credentials")
		}
		a := bad.do("POST", "/admin/session", map[string]string{"name": "ops", "password": "ops-secret"})
		want(t, a, 429, "banned")
		if a.header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
		want(t, bad.do("GET", "/api/v1/calls", nil, "Authorization", "Bearer "+tok), 429, "banned")
		c := newClient(t, base, nil)
		c.token = tok
		var bans []struct{ Kind, Key string }
		a = c.do("GET", "/api/v1/bans", nil)
		want(t, a, 200, "")
		a.decode(t, &bans)
		found := false
		for _, b := range bans {
			found = found || b.Kind == "source" && b.Key == "127.0.0.2"
		}
		if !found {
			t.Fatalf("bans: %s", a.body)
		}
		want(t, c.do("DELETE", "/api/v1/bans/not%20valid", nil), 400, "bad_address")
		want(t, c.do("DELETE", "/api/v1/bans/127.0.0.2", nil), 204, "")
		want(t, c.do("DELETE", "/api/v1/bans/127.0.0.2", nil), 404, "no_ban")
		want(t, bad.do("POST", "/admin/session", map[string]string{"name": "ops", "password": "ops-secret"}), 200, "")
	})

	t.Run("console page", func(t *testing.T) {
		c := newClient(t, base, nil)
		a := c.do("GET", "/admin/", nil)
		want(t, a, 200, "")
		if !strings.Contains(string(a.body), "app.js") || !strings.Contains(a.header.Get("Content-Security-Policy"), "default-src 'self'") {
			t.Fatalf("console page: %s %v", a.body, a.header)
		}
		for _, f := range []string{"/admin/app.js", "/admin/style.css"} {
			want(t, c.do("GET", f, nil), 200, "")
		}
	})
}

// TestCall drives a call between two baresip phones through the API and
// the CLI: the live list with media, the trace and its ladder, hanging up
// from the API (both phones get a BYE), the record, and health while
// draining.
func TestCall(t *testing.T) {
	testbed.RequireTool(t, "baresip")
	testbed.RequireTool(t, "sox")
	sw, tok := startSwitch(t, testbed.ServerConfig{})
	base := "http://" + sw.Addrs["http"]
	ctx := context.Background()
	sw.AddUser(t, "alice", "alice-pw")
	sw.AddUser(t, "bob", "bob-pw")
	dir := t.TempDir()
	proxy := sw.Addr(t, "udp")
	bob := testbed.StartBaresip(t, "bob", testbed.BaresipConfig{User: "bob", Password: "bob-pw", Domain: sw.Domain,
		Proxy: proxy, AnswerMode: "auto", AudioFile: testbed.MakeTone(t, filepath.Join(dir, "bob.wav"), 600, 30)})
	alice := testbed.StartBaresip(t, "alice", testbed.BaresipConfig{User: "alice", Password: "alice-pw", Domain: sw.Domain,
		Proxy: proxy, AudioFile: testbed.MakeTone(t, filepath.Join(dir, "alice.wav"), 1000, 30)})
	bob.WaitRegistered(t, 10*time.Second)
	alice.WaitRegistered(t, 10*time.Second)
	c := newClient(t, base, nil)
	c.token = tok

	// Registrations, from the API and the CLI.
	var regs []struct{ User, Transport, UserAgent string }
	a := c.do("GET", "/api/v1/registrations", nil)
	want(t, a, 200, "")
	a.decode(t, &regs)
	if len(regs) != 2 || regs[0].User != "alice" || regs[1].User != "bob" || regs[0].Transport != "UDP" {
		t.Fatalf("registrations: %s", a.body)
	}
	if out, err := sw.CLI(ctx, "reg", "list"); err != nil || !strings.Contains(out, "alice") || !strings.Contains(out, "bob") {
		t.Fatalf("reg list: %v\n%s", err, out)
	}

	type leg struct {
		Party, Codec string
		Packets      uint64
		MOS          float64
	}
	type call struct {
		ID, Caller, Callee, State string
		Legs                      []leg
	}
	dial := func() call {
		t.Helper()
		alice.ClearEvents()
		bob.ClearEvents()
		if _, err := alice.Command(ctx, "dial", "sip:bob@"+sw.Domain); err != nil {
			t.Fatal(err)
		}
		alice.WaitEventType(t, "CALL_ESTABLISHED", 15*time.Second)
		bob.WaitEventType(t, "CALL_ESTABLISHED", 5*time.Second)
		var calls []call
		var first uint64
		if !testbed.Poll(15*time.Second, 200*time.Millisecond, func() bool {
			calls = nil
			_ = json.Unmarshal(c.do("GET", "/api/v1/calls", nil).body, &calls)
			if len(calls) != 1 || calls[0].State != "answered" || len(calls[0].Legs) != 2 {
				return false
			}
			p := min(calls[0].Legs[0].Packets, calls[0].Legs[1].Packets)
			if first == 0 {
				first = p
			}
			return first > 0 && p > first+20 && calls[0].Legs[0].MOS > 3
		}) {
			t.Fatalf("GET calls: want one answered call with media growing, got %+v", calls)
		}
		return calls[0]
	}
	cl := dial()
	if !strings.HasPrefix(cl.Caller, "alice@") || !strings.HasPrefix(cl.Callee, "bob@") || cl.Legs[0].Codec == "" {
		t.Fatalf("call %+v", cl)
	}
	if out, err := sw.CLI(ctx, "calls", "list"); err != nil || !strings.Contains(out, cl.ID) || !strings.Contains(out, "mos=") {
		t.Fatalf("calls list: %v\n%s", err, out)
	}

	// The trace: every message in order with its direction and addresses.
	var tr struct {
		Messages []struct {
			Direction, From, To, Method, Raw string
			Status                           int
			Time                             time.Time
		}
		From, To []int
	}
	a = c.do("GET", "/api/v1/calls/"+url.PathEscape(cl.ID)+"/trace", nil)
	want(t, a, 200, "")
	a.decode(t, &tr)
	var labels []string
	for _, m := range tr.Messages {
		l := m.Method
		if m.Status != 0 {
			l = strings.Fields(m.Raw)[1]
		}
		labels = append(labels, m.Direction+":"+l)
		t.Logf("%s %s %s -> %s", m.Time.Format("15:04:05.000000"), m.Direction+":"+l, m.From, m.To)
	}
	seq := strings.Join(labels, " ")
	for _, w := range []string{"in:INVITE", "out:407", "in:ACK", "out:100", "out:INVITE", "in:180", "out:180", "in:200", "out:200"} {
		if !strings.Contains(seq, w) {
			t.Errorf("trace lacks %s: %s", w, seq)
		}
	}
	if !inOrder(labels, "in:INVITE", "out:407", "in:INVITE", "out:100", "out:180", "out:200", "in:ACK") {
		t.Errorf("trace out of order: %s", seq)
	}
	out, err := sw.CLI(ctx, "trace", cl.ID)
	if err != nil || !strings.Contains(out, "-INVITE-") || !strings.Contains(out, "<-407 Proxy") ||
		!strings.Contains(out, "caller") || !strings.Contains(out, "->|") {
		t.Fatalf("trace: %v\n%s", err, out)
	}
	t.Logf("switchboard trace %s:\n%s", cl.ID, out)

	// Hang up from the API: both phones get a BYE.
	want(t, c.do("DELETE", "/api/v1/calls/"+url.PathEscape(cl.ID), nil), 204, "")
	alice.WaitEventType(t, "CALL_CLOSED", 10*time.Second)
	bob.WaitEventType(t, "CALL_CLOSED", 10*time.Second)
	want(t, c.do("DELETE", "/api/v1/calls/"+url.PathEscape(cl.ID), nil), 404, "no_call")
	// The trace outlives the call, with the BYEs.
	a = c.do("GET", "/api/v1/calls/"+url.PathEscape(cl.ID)+"/trace", nil)
	want(t, a, 200, "")
	if n := strings.Count(string(a.body), `"method":"BYE"`); n < 4 {
		t.Errorf("trace after the hang-up has %d BYE messages, want 2 sent and their 2 answers", n)
	}

	// The record, through the API's filters and the CLI.
	var page struct {
		Records []struct {
			CallID   string `json:"call_id"`
			HangupBy string `json:"hangup_by"`
			Status   int    `json:"status"`
		}
	}
	if !testbed.Poll(10*time.Second, 100*time.Millisecond, func() bool {
		page.Records = nil
		_ = json.Unmarshal(c.do("GET", "/api/v1/cdr?user=alice&status=answered", nil).body, &page)
		return len(page.Records) == 1 && page.Records[0].HangupBy != ""
	}) {
		t.Fatalf("cdr?user=alice: %+v", page)
	}
	if r := page.Records[0]; r.CallID != cl.ID || r.HangupBy != "switch" || r.Status != 200 {
		t.Fatalf("record %+v", r)
	}
	a = c.do("GET", "/api/v1/cdr?user=nobody", nil)
	if !strings.Contains(string(a.body), `"records":[]`) {
		t.Fatalf("cdr?user=nobody: %s", a.body)
	}
	for _, args := range [][]string{{"cdr", "list", "--user", "alice"}, {"cdr", "list", "--server", base, "--token", tok, "--status", "answered"}} {
		if out, err := sw.CLI(ctx, args...); err != nil || !strings.Contains(out, cl.ID) {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	if out, err := sw.CLI(ctx, "cdr", "list", "--json", "--user", "bob"); err != nil || !strings.Contains(out, `"call_id": "`+cl.ID) {
		t.Fatalf("cdr list --json: %v\n%s", err, out)
	}

	// Draining: health says 503 while a call holds the switch up; hanging
	// it up from the CLI lets it stop.
	cl = dial()
	if err := sw.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if !testbed.Poll(10*time.Second, 50*time.Millisecond, func() bool {
		return c.do("GET", "/api/v1/health", nil).status == 503
	}) {
		t.Fatal("health is not 503 while draining")
	}
	if out, err := sw.CLI(ctx, "calls", "hangup", cl.ID); err != nil {
		t.Fatalf("calls hangup: %v\n%s", err, out)
	}
	alice.WaitEventType(t, "CALL_CLOSED", 10*time.Second)
	bob.WaitEventType(t, "CALL_CLOSED", 10*time.Second)
	if code, err := sw.WaitExit(20 * time.Second); err != nil || code != 0 {
		t.Fatalf("switch after the drain: exit %d, %v", code, err)
	}
	// Stopped: reg list reads the database.
	if out, err := sw.CLI(ctx, "reg", "list"); err != nil || !strings.Contains(out, "alice") {
		t.Fatalf("reg list with the switch stopped: %v\n%s", err, out)
	}
	if _, err := sw.CLI(ctx, "calls", "list"); err == nil {
		t.Fatal("calls list with the switch stopped did not fail")
	}
}

// inOrder reports whether want appear in got in that order.
func inOrder(got []string, want ...string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

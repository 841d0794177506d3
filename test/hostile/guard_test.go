package hostile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/logging"
	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"

	"github.com/switchboard/switchboard/internal/siptest"
	"github.com/switchboard/switchboard/test/internal/testbed"
)

// The password tests (issue 8 item 5) run the switch as StartServer
// configures it: security.auth_failures 10 per source IP within 1m, ban 5m,
// and the shipped security.auth_failures_per_user 30. Each guessing source
// is a loopback address of its own, so that 127.0.0.1 (the legitimate
// clients, and the gateway's SIP socket) is never the one banned.
const (
	guardPerSource = 10
	guardPerUser   = 30
	guardDomain    = "switchboard.local"
)

var guardUsers = map[string]string{"alice": "alice-pw-1", "bob": "bob-pw-2"}

// guardSwitch is a running switch with TURN, the web phone and guardUsers.
type guardSwitch struct {
	*testbed.Server
	t    *testing.T
	tr   *siptest.Trace
	udp  string // SIP over UDP
	http string // HTTP listener
	turn string // TURN over UDP
}

func startGuardSwitch(t *testing.T) *guardSwitch {
	t.Helper()
	srv := testbed.StartServer(t, testbed.Binary(t), testbed.ServerConfig{TURN: true})
	for u, pw := range guardUsers {
		srv.AddUser(t, u, pw)
	}
	return &guardSwitch{Server: srv, t: t, tr: siptest.NewTrace(t),
		udp: srv.Addr(t, "udp"), http: srv.Addr(t, "http"), turn: srv.Addr(t, "turn/udp")}
}

// sipRegister registers user with password from ip over UDP and returns the
// final status (401 for a wrong password, 403 when refused).
func (g *guardSwitch) sipRegister(ip, user, password string) int {
	g.t.Helper()
	p := siptest.NewPhone(g.t, siptest.Config{Server: g.udp, Local: net.JoinHostPort(ip, "0"),
		User: user, Password: password, Name: user + "@" + ip, Trace: g.tr})
	defer p.Close()
	return p.DoRegister(60).StatusCode
}

// httpFrom is an HTTP client whose connections come from ip.
func httpFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

// apiTURN asks GET /api/turn from ip with HTTP Basic credentials and returns
// the status and Retry-After.
func (g *guardSwitch) apiTURN(ip, user, password string) (int, string) {
	g.t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+g.http+"/api/turn", nil)
	if err != nil {
		g.t.Fatal(err)
	}
	req.SetBasicAuth(user, password)
	res, err := httpFrom(ip).Do(req)
	if err != nil {
		g.t.Fatalf("GET /api/turn from %s: %v", ip, err)
	}
	res.Body.Close()
	return res.StatusCode, res.Header.Get("Retry-After")
}

// turnAllocate allocates with pion's TURN client from ip and returns 0 on
// success or the STUN error code of the refusal.
func (g *guardSwitch) turnAllocate(ip, user, password string) int {
	g.t.Helper()
	conn, err := net.ListenPacket("udp4", net.JoinHostPort(ip, "0"))
	if err != nil {
		g.t.Fatal(err)
	}
	defer conn.Close()
	quiet := logging.NewDefaultLoggerFactory()
	quiet.DefaultLogLevel = logging.LogLevelDisabled
	c, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: g.turn, TURNServerAddr: g.turn, Conn: conn,
		Username: user, Password: password, Realm: guardDomain,
		RTO: 200 * time.Millisecond, LoggerFactory: quiet,
	})
	if err != nil {
		g.t.Fatal(err)
	}
	defer c.Close()
	if err := c.Listen(); err != nil {
		g.t.Fatal(err)
	}
	relay, err := c.Allocate()
	if err == nil {
		relay.Close()
		return 0
	}
	var te stun.TurnError
	if errors.As(err, &te) {
		return int(te.ErrorCodeAttr.Code)
	}
	var tp *stun.TurnError
	if errors.As(err, &tp) {
		return int(tp.ErrorCodeAttr.Code)
	}
	g.t.Fatalf("TURN allocate from %s as %s: %v (no STUN error code)", ip, user, err)
	return -1
}

// webLogin signs in to the web phone over /ws from ip and returns the
// answer: "logged_in" or the error code.
func (g *guardSwitch) webLogin(ip, user, password string) string {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+g.http+"/ws", &websocket.DialOptions{HTTPClient: httpFrom(ip)})
	if err != nil {
		g.t.Fatalf("dial /ws from %s: %v", ip, err)
	}
	defer ws.Close(websocket.StatusNormalClosure, "")
	login, _ := json.Marshal(map[string]string{"type": "login", "id": "1", "user": user, "password": password})
	if err := ws.Write(ctx, websocket.MessageText, login); err != nil {
		g.t.Fatal(err)
	}
	for {
		_, data, err := ws.Read(ctx)
		if err != nil {
			g.t.Fatalf("web phone from %s: no answer to login: %v", ip, err)
		}
		var m struct{ Type, Code, Message string }
		if err := json.Unmarshal(data, &m); err != nil {
			g.t.Fatalf("web phone sent %q: %v", data, err)
		}
		switch m.Type {
		case "logged_in":
			return m.Type
		case "error":
			return m.Code
		}
	}
}

// bans counts the switch's log lines announcing a ban of source.
func (g *guardSwitch) bans(source string) int {
	n := 0
	for _, line := range strings.Split(g.Log(), "\n") {
		if kv := testbed.ParseLogfmt(line); kv["msg"] == "source refused after repeated authentication failures" && kv["source"] == source {
			n++
		}
	}
	return n
}

// TestGuardTURNGuessing: wrong TURN passwords from one source get it banned
// within the budget; then even the right password gets 401 from there,
// while a client elsewhere still allocates.
func TestGuardTURNGuessing(t *testing.T) {
	g := startGuardSwitch(t)
	const attacker = "127.0.0.21"
	if code := g.turnAllocate("127.0.0.1", "alice", guardUsers["alice"]); code != 0 {
		t.Fatalf("alice's TURN allocation refused before any guessing: %d", code)
	}
	for i := 1; i <= guardPerSource; i++ {
		if code := g.turnAllocate(attacker, "alice", "WRONG-"+strconv.Itoa(i)); code != 401 {
			t.Fatalf("guess %d: error %d, want 401", i, code)
		}
	}
	if code := g.turnAllocate(attacker, "alice", guardUsers["alice"]); code != 401 {
		t.Fatalf("banned source with the right password: error %d, want 401", code)
	}
	if code := g.turnAllocate(attacker, "bob", guardUsers["bob"]); code != 401 {
		t.Fatalf("banned source, another user: error %d, want 401", code)
	}
	if code := g.turnAllocate("127.0.0.1", "alice", guardUsers["alice"]); code != 0 {
		t.Fatalf("another source refused: error %d", code)
	}
	// The ban holds for the other protocols too.
	if got := g.sipRegister(attacker, "alice", guardUsers["alice"]); got != 403 {
		t.Errorf("SIP REGISTER from the source banned over TURN: %d, want 403", got)
	}
	if n := g.bans(attacker); n != 1 {
		t.Errorf("ban of %s logged %d times, want once", attacker, n)
	}
}

// TestGuardBasicAuthGuessing: wrong passwords on GET /api/turn get the source
// 429 with Retry-After within the budget, even with the right password.
func TestGuardBasicAuthGuessing(t *testing.T) {
	g := startGuardSwitch(t)
	const attacker = "127.0.0.22"
	if code, _ := g.apiTURN("127.0.0.1", "bob", guardUsers["bob"]); code != 200 {
		t.Fatalf("bob's GET /api/turn: %d, want 200", code)
	}
	for i := 1; i <= guardPerSource; i++ {
		if code, _ := g.apiTURN(attacker, "bob", "WRONG-"+strconv.Itoa(i)); code != 401 {
			t.Fatalf("guess %d: %d, want 401", i, code)
		}
	}
	code, retry := g.apiTURN(attacker, "bob", guardUsers["bob"])
	if code != http.StatusTooManyRequests {
		t.Fatalf("banned source with the right password: %d, want 429", code)
	}
	if s, err := strconv.Atoi(retry); err != nil || s < 250 || s > 300 {
		t.Errorf("Retry-After %q, want the ban's remaining seconds (about 300)", retry)
	}
	if code, _ := g.apiTURN("127.0.0.1", "bob", guardUsers["bob"]); code != 200 {
		t.Errorf("another source: %d, want 200", code)
	}
}

// TestGuardSharedBudget: five SIP digest failures and five HTTP Basic
// failures from one source spend one budget of ten: the source is then
// refused by SIP (403), HTTP (429), TURN (401) and the web phone.
func TestGuardSharedBudget(t *testing.T) {
	g := startGuardSwitch(t)
	const attacker = "127.0.0.23"
	for i := 1; i <= guardPerSource/2; i++ {
		if got := g.sipRegister(attacker, "alice", "WRONG-"+strconv.Itoa(i)); got != 401 {
			t.Fatalf("SIP guess %d: %d, want 401", i, got)
		}
	}
	for i := 1; i <= guardPerSource/2; i++ {
		if code, _ := g.apiTURN(attacker, "alice", "WRONG-"+strconv.Itoa(i)); code != 401 {
			t.Fatalf("HTTP guess %d (after %d SIP ones): %d, want 401", i, guardPerSource/2, code)
		}
	}
	if got := g.sipRegister(attacker, "alice", guardUsers["alice"]); got != 403 {
		t.Errorf("SIP, right password: %d, want 403", got)
	}
	if code, _ := g.apiTURN(attacker, "alice", guardUsers["alice"]); code != http.StatusTooManyRequests {
		t.Errorf("HTTP, right password: %d, want 429", code)
	}
	if code := g.turnAllocate(attacker, "alice", guardUsers["alice"]); code != 401 {
		t.Errorf("TURN, right password: error %d, want 401", code)
	}
	if got := g.webLogin(attacker, "alice", guardUsers["alice"]); got != "rate_limited" {
		t.Errorf("web phone, right password: %q, want rate_limited", got)
	}
	// Other sources are unaffected.
	if got := g.sipRegister("127.0.0.1", "alice", guardUsers["alice"]); got != 200 {
		t.Errorf("SIP from another source: %d, want 200", got)
	}
	if n := g.bans(attacker); n != 1 {
		t.Errorf("ban of %s logged %d times, want once", attacker, n)
	}
}

// TestGuardWebPhone: the web phone's sign-in is refused while the browser's
// address is banned, and its own wrong passwords count in the shared budget
// (the gateway's SIP socket, from which every browser signs in, is not the
// one banned).
func TestGuardWebPhone(t *testing.T) {
	g := startGuardSwitch(t)
	const banned, guesser = "127.0.0.24", "127.0.0.25"
	for i := 1; i <= guardPerSource; i++ {
		if got := g.sipRegister(banned, "bob", "WRONG-"+strconv.Itoa(i)); got != 401 {
			t.Fatalf("SIP guess %d: %d, want 401", i, got)
		}
	}
	if got := g.webLogin(banned, "bob", guardUsers["bob"]); got != "rate_limited" {
		t.Fatalf("web phone from a source banned over SIP: %q, want rate_limited", got)
	}
	for i := 1; i <= guardPerSource; i++ {
		if got := g.webLogin(guesser, "alice", "WRONG-"+strconv.Itoa(i)); got != "auth_failed" {
			t.Fatalf("web phone guess %d: %q, want auth_failed", i, got)
		}
	}
	if got := g.webLogin(guesser, "alice", guardUsers["alice"]); got != "rate_limited" {
		t.Errorf("web phone after %d wrong passwords: %q, want rate_limited", guardPerSource, got)
	}
	if got := g.sipRegister(guesser, "alice", guardUsers["alice"]); got != 403 {
		t.Errorf("SIP from the browser banned by its sign-ins: %d, want 403", got)
	}
	// Browsers elsewhere still sign in through the gateway.
	if got := g.webLogin("127.0.0.1", "alice", guardUsers["alice"]); got != "logged_in" {
		t.Errorf("web phone from another address: %q, want logged_in", got)
	}
}

// TestGuardPerUser: one guess each from many sources spends bob's per-user
// budget: bob is then refused from new sources on every protocol, while
// the phone that registered as bob before keeps working.
func TestGuardPerUser(t *testing.T) {
	g := startGuardSwitch(t)
	if got := g.sipRegister("127.0.0.1", "bob", guardUsers["bob"]); got != 200 {
		t.Fatalf("bob's phone: %d, want 200", got)
	}
	for i := 0; i < guardPerUser; i++ {
		ip := fmt.Sprintf("127.0.1.%d", 10+i)
		if got := g.sipRegister(ip, "bob", "WRONG"); got != 401 {
			t.Fatalf("guess %d from %s: %d, want 401", i+1, ip, got)
		}
	}
	const newcomer = "127.0.2.1"
	if got := g.sipRegister(newcomer, "bob", guardUsers["bob"]); got != 403 {
		t.Errorf("bob from a new source: %d, want 403", got)
	}
	if code, _ := g.apiTURN(newcomer, "bob", guardUsers["bob"]); code != http.StatusTooManyRequests {
		t.Errorf("bob over HTTP from a new source: %d, want 429", code)
	}
	if code := g.turnAllocate(newcomer, "bob", guardUsers["bob"]); code != 401 {
		t.Errorf("bob over TURN from a new source: error %d, want 401", code)
	}
	if got := g.sipRegister(newcomer, "alice", guardUsers["alice"]); got != 200 {
		t.Errorf("alice from that source: %d, want 200", got)
	}
	// bob's own phone, known for 24 hours, is not locked out.
	if got := g.sipRegister("127.0.0.1", "bob", guardUsers["bob"]); got != 200 {
		t.Errorf("bob's known phone: %d, want 200", got)
	}
	if code := g.turnAllocate("127.0.0.1", "bob", guardUsers["bob"]); code != 0 {
		t.Errorf("bob over TURN from his known address: error %d", code)
	}
	if !strings.Contains(g.Log(), "user refused from unknown sources after repeated authentication failures") {
		t.Error("the user ban was not logged")
	}
}

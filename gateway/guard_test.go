package gateway_test

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard/switchboard/gateway"
	"github.com/switchboard/switchboard/registrar"
)

// TestLoginSharedGuard checks the gateway asks the switch's shared Guard and
// reports to it, under the browser's address and the user name: failures
// counted by another protocol refuse the sign-in, the gateway's own
// failures are seen by the others, and a success makes the browser's
// address known to the user.
func TestLoginSharedGuard(t *testing.T) {
	guard := registrar.NewGuard(registrar.GuardConfig{PerSource: 3, PerUser: 2, Window: time.Minute, Ban: time.Minute}, nil)
	e := newEnv(t, func(c *gateway.Config) { c.Guard = guard })
	browserIP := netip.MustParseAddrPort("127.0.0.1:0")

	b := e.browser("tab")
	b.mustLogin("alice")
	b.send(map[string]string{"type": "logout", "id": "o"})
	b.wait("logged_out", "")

	// Two failures for bob from elsewhere (say SIP and TURN): bob is banned
	// for sources that never signed in as bob, so this browser is refused.
	guard.Fail(netip.MustParseAddrPort("192.0.2.1:5060"), "bob")
	guard.Fail(netip.MustParseAddrPort("192.0.2.2:3478"), "bob")
	if m := b.login("bob", "bobpw"); m.Code != "rate_limited" {
		t.Fatalf("bob banned elsewhere: %+v, want rate_limited", m)
	}
	// The browser signed in as alice: the gateway reported it, so a ban of
	// alice spares it.
	guard.Fail(netip.MustParseAddrPort("192.0.2.1:5060"), "alice")
	guard.Fail(netip.MustParseAddrPort("192.0.2.2:3478"), "alice")
	if m := b.login("alice", "alicepw"); m.Type != "logged_in" {
		t.Fatalf("alice from a known browser: %+v, want logged_in", m)
	}
	b.send(map[string]string{"type": "logout", "id": "o2"})
	b.wait("logged_out", "")

	// Wrong passwords from the browser spend its address's budget in the
	// shared guard: the third failure bans 127.0.0.1 for every protocol.
	for _, user := range []string{"carol", "dave", "erin"} {
		if m := b.login(user, "bad"); m.Code != "auth_failed" {
			t.Fatalf("wrong password for %s: %+v, want auth_failed", user, m)
		}
	}
	if !guard.Banned(browserIP, "") {
		t.Fatal("the gateway did not report the browser's failures to the guard")
	}
	if m := b.login("carol", "carolpw"); m.Code != "rate_limited" {
		t.Fatalf("banned browser: %+v, want rate_limited", m)
	}
}

// TestWebSocketOrigin checks /ws refuses pages of foreign origins unless
// they are listed in OriginPatterns, and accepts clients that send no
// Origin.
func TestWebSocketOrigin(t *testing.T) {
	e := newEnv(t, func(c *gateway.Config) { c.OriginPatterns = []string{"phone.example.com", "https://*.example.org"} })
	dial := func(origin string) int {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h := http.Header{}
		if origin != "" {
			h.Set("Origin", origin)
		}
		ws, res, err := websocket.Dial(ctx, e.ws, &websocket.DialOptions{HTTPHeader: h})
		if err == nil {
			ws.Close(websocket.StatusNormalClosure, "")
			return http.StatusSwitchingProtocols
		}
		if res == nil {
			t.Fatalf("dial with Origin %q: %v", origin, err)
		}
		var ce websocket.CloseError
		if errors.As(err, &ce) {
			t.Fatalf("dial with Origin %q: %v", origin, err)
		}
		return res.StatusCode
	}
	for _, tc := range []struct {
		origin string
		want   int
	}{
		{"", http.StatusSwitchingProtocols},
		{e.http.URL, http.StatusSwitchingProtocols},
		{"http://evil.example", http.StatusForbidden},
		{"https://phone.example.com", http.StatusSwitchingProtocols},
		{"https://a.example.org", http.StatusSwitchingProtocols},
		{"http://a.example.org", http.StatusForbidden},
		{"null", http.StatusForbidden},
	} {
		if got := dial(tc.origin); got != tc.want {
			t.Errorf("Origin %q: status %d, want %d", tc.origin, got, tc.want)
		}
	}
}

package hostile

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard/switchboard/test/internal/testbed"
)

// TestGuardWebSocketOrigin (issue 8 item 7): a page of another site must not
// drive SIP (/sip) or the web phone (/ws) through its visitors' browsers. A
// WebSocket with a foreign Origin is refused with 403 before the upgrade;
// the switch's own origin and a client sending no Origin (baresip, SIPp)
// are accepted. (http.allowed_origins is the shipped empty list: StartServer
// writes the http section itself; the list's matching is unit-tested in
// cmd/switchboard and gateway.)
func TestGuardWebSocketOrigin(t *testing.T) {
	srv := testbed.StartServer(t, testbed.Binary(t), testbed.ServerConfig{})
	httpAddr := srv.Addr(t, "http")
	dial := func(path, origin string) int {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h := http.Header{}
		if origin != "" {
			h.Set("Origin", origin)
		}
		opts := &websocket.DialOptions{HTTPHeader: h, HTTPClient: httpFrom("127.0.0.1")}
		if path == "/sip" {
			opts.Subprotocols = []string{"sip"}
		}
		ws, res, err := websocket.Dial(ctx, "ws://"+httpAddr+path, opts)
		if err == nil {
			ws.Close(websocket.StatusNormalClosure, "")
			return res.StatusCode
		}
		if res == nil {
			t.Fatalf("dial %s with Origin %q: %v", path, origin, err)
		}
		return res.StatusCode
	}
	for _, path := range []string{"/sip", "/ws"} {
		for _, tc := range []struct {
			origin string
			want   int
		}{
			{"http://evil.example", http.StatusForbidden},
			{"null", http.StatusForbidden},
			{"http://" + httpAddr, http.StatusSwitchingProtocols},
			{"https://phone.example.com", http.StatusForbidden},
			{"", http.StatusSwitchingProtocols},
		} {
			if got := dial(path, tc.origin); got != tc.want {
				t.Errorf("%s with Origin %q: %d, want %d", path, tc.origin, got, tc.want)
			}
		}
	}
}

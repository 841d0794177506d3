package turn

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

// basicAuth is what the cmd package passes: HTTP Basic against a user list.
func basicAuth(r *http.Request) (string, bool) {
	u, p, ok := r.BasicAuth()
	if !ok || u != "alice" || p != "alicepw" {
		return "", false
	}

	return u, true
}

func TestICEServersHandler(t *testing.T) {
	cert, _ := selfSigned(t)
	s := startServer(t, func(c *Config) {
		allowLoopback(c)
		c.Listen = []string{"udp://127.0.0.1:0", "tcp://127.0.0.1:0", "tls://localhost:0"}
		c.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		c.CredentialTTL = time.Hour
	})
	hs := httptest.NewServer(s.ICEServersHandler(basicAuth))
	defer hs.Close()

	get := func(t *testing.T, method string, auth bool) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, hs.URL+"/api/turn", nil)
		if err != nil {
			t.Fatal(err)
		}
		if auth {
			req.SetBasicAuth("alice", "alicepw")
		}
		res, err := hs.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = res.Body.Close() })

		return res
	}

	t.Run("unauthenticated", func(t *testing.T) {
		res := get(t, http.MethodGet, false)
		if res.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status %d", res.StatusCode)
		}
		if got, want := res.Header.Get("WWW-Authenticate"), `Basic realm="switchboard.test", charset="UTF-8"`; got != want {
			t.Errorf("WWW-Authenticate = %q, want %q", got, want)
		}
	})
	t.Run("method", func(t *testing.T) {
		res := get(t, http.MethodPost, true)
		if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != "GET, HEAD" {
			t.Fatalf("status %d Allow %q", res.StatusCode, res.Header.Get("Allow"))
		}
	})
	t.Run("ice servers", func(t *testing.T) {
		res := get(t, http.MethodGet, true)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("status %d", res.StatusCode)
		}
		if ct, cc := res.Header.Get("Content-Type"), res.Header.Get("Cache-Control"); ct != "application/json" || cc != "no-store" {
			t.Errorf("Content-Type %q Cache-Control %q", ct, cc)
		}
		var body ICEConfig
		if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		if body.TTL != 3600 || len(body.ICEServers) != 1 {
			t.Fatalf("body %+v", body)
		}
		port := func(tr Transport) int { return portOf(s.addr(t, tr)) }
		want := []string{
			fmt.Sprintf("stun:127.0.0.1:%d", port(TransportUDP)),
			fmt.Sprintf("turn:127.0.0.1:%d?transport=udp", port(TransportUDP)),
			fmt.Sprintf("turn:127.0.0.1:%d?transport=tcp", port(TransportTCP)),
			fmt.Sprintf("turns:localhost:%d?transport=tcp", port(TransportTLS)),
		}
		ice := body.ICEServers[0]
		if strings.Join(ice.URLs, " ") != strings.Join(want, " ") {
			t.Errorf("urls = %v, want %v", ice.URLs, want)
		}
		exp, user, ok := parseRESTUsername(ice.Username)
		if !ok || user != "alice" || exp < time.Now().Add(59*time.Minute).Unix() || exp > time.Now().Add(61*time.Minute).Unix() {
			t.Errorf("username %q", ice.Username)
		}
		// The credentials work on the TURN server.
		c := newUDPClient(t, s.addr(t, TransportUDP), ice.Username, ice.Credential)
		relay, err := c.Allocate()
		if err != nil {
			t.Fatalf("Allocate with handed-out credentials: %v", err)
		}
		_ = relay.Close()
	})
	t.Run("raw json shape", func(t *testing.T) {
		res := get(t, http.MethodGet, true)
		var raw map[string]any
		if err := json.NewDecoder(res.Body).Decode(&raw); err != nil {
			t.Fatal(err)
		}
		servers, _ := raw["iceServers"].([]any)
		if len(servers) != 1 {
			t.Fatalf("iceServers %v", raw["iceServers"])
		}
		entry, _ := servers[0].(map[string]any)
		for _, k := range []string{"urls", "username", "credential"} {
			if _, ok := entry[k]; !ok {
				t.Errorf("missing %q in %v", k, entry)
			}
		}
		if ttl, _ := raw["ttl"].(float64); strconv.Itoa(int(ttl)) != "3600" {
			t.Errorf("ttl %v", raw["ttl"])
		}
	})
}

func TestICEServersHandlerWithoutSecret(t *testing.T) {
	s := startServer(t, func(c *Config) {
		c.Secret = nil
		c.PublicIP = netip.MustParseAddr("192.0.2.10")
	})
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/api/turn", nil)
	req.SetBasicAuth("alice", "alicepw")
	s.ICEServersHandler(basicAuth).ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d", rec.Code)
	}
	// URLs use PublicIP, not the bind address.
	for _, u := range s.URLs() {
		if !strings.Contains(u, "192.0.2.10:") {
			t.Errorf("url %q does not use PublicIP", u)
		}
	}
}

package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/sqldb"
	"github.com/switchboard/switchboard/registrar"
)

func TestCheckOrigin(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	allowed := []string{"https://phone.example.com", "*.example.org", "HTTPS://*.Example.net:8443"}
	h := checkOrigin(allowed, ok)
	for _, tc := range []struct {
		name, host, origin string
		want               int
	}{
		{"no origin (baresip, SIPp)", "sw.example:8080", "", http.StatusTeapot},
		{"same origin", "sw.example:8080", "http://sw.example:8080", http.StatusTeapot},
		{"same origin, https, case", "SW.example:8080", "https://sw.EXAMPLE:8080", http.StatusTeapot},
		{"same host, other port", "sw.example:8080", "http://sw.example:9090", http.StatusForbidden},
		{"foreign", "sw.example:8080", "http://evil.example", http.StatusForbidden},
		{"listed origin", "sw.example:8080", "https://phone.example.com", http.StatusTeapot},
		{"listed origin, wrong scheme", "sw.example:8080", "http://phone.example.com", http.StatusForbidden},
		{"listed origin, other port", "sw.example:8080", "https://phone.example.com:8443", http.StatusForbidden},
		{"host pattern", "sw.example:8080", "http://a.example.org", http.StatusTeapot},
		{"host pattern, any scheme", "sw.example:8080", "https://b.example.org", http.StatusTeapot},
		{"host pattern, not the apex", "sw.example:8080", "https://example.org", http.StatusForbidden},
		{"host pattern, suffix trick", "sw.example:8080", "https://a.example.org.evil.example", http.StatusForbidden},
		{"scheme pattern with port", "sw.example:8080", "https://x.example.net:8443", http.StatusTeapot},
		{"opaque origin", "sw.example:8080", "null", http.StatusForbidden},
		{"garbage", "sw.example:8080", "://", http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "http://"+tc.host+"/sip", nil)
			r.Host = tc.host
			if tc.origin != "" {
				r.Header.Set("Origin", tc.origin)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.want {
				t.Errorf("Origin %q for Host %q: %d, want %d", tc.origin, tc.host, w.Code, tc.want)
			}
		})
	}
}

func TestOriginPatternCheck(t *testing.T) {
	for _, p := range []string{"https://phone.example.com", "http://10.0.0.5:8080", "phone.example.com", "*.example.com", "https://*.example.com"} {
		if err := checkOriginPattern(p); err != nil {
			t.Errorf("%q refused: %v", p, err)
		}
	}
	for _, p := range []string{"", "ftp://x.example", "https://", "https://x.example/path", "[bad", "user@x.example"} {
		if err := checkOriginPattern(p); err == nil {
			t.Errorf("%q accepted", p)
		}
	}
	if _, err := loadConfig(writeConfig(t, "http: {allowed_origins: [\"https://x.example/path\"]}\n")); err == nil ||
		!strings.Contains(err.Error(), "http.allowed_origins[0]") {
		t.Errorf("bad allowed_origins: %v", err)
	}
}

func TestMetricsAccess(t *testing.T) {
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("switchboard_sip_requests_total 1\n")) })
	for _, tc := range []struct {
		mode, remote string
		want         int
	}{
		{"loopback", "127.0.0.1:40000", 200},
		{"loopback", "127.8.9.10:40000", 200},
		{"loopback", "[::1]:40000", 200},
		{"loopback", "[::ffff:127.0.0.1]:40000", 200},
		{"loopback", "192.0.2.7:40000", 403},
		{"loopback", "[2001:db8::1]:40000", 403},
		{"loopback", "garbage", 403},
		{"open", "192.0.2.7:40000", 200},
		{"off", "127.0.0.1:40000", 404},
		{"off", "192.0.2.7:40000", 404},
	} {
		r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		r.RemoteAddr = tc.remote
		w := httptest.NewRecorder()
		metricsAccess(tc.mode, metrics).ServeHTTP(w, r)
		if w.Code != tc.want {
			t.Errorf("http.metrics %s, client %s: %d, want %d", tc.mode, tc.remote, w.Code, tc.want)
		}
		if w.Code == 200 && !strings.Contains(w.Body.String(), "switchboard_") {
			t.Errorf("http.metrics %s, client %s: body %q", tc.mode, tc.remote, w.Body.String())
		}
	}
	c, err := loadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTP.Metrics != metricsLoopback {
		t.Errorf("default http.metrics = %q, want loopback", c.HTTP.Metrics)
	}
	if _, err := loadConfig(writeConfig(t, "http: {metrics: public}\n")); err == nil || !strings.Contains(err.Error(), "http.metrics") {
		t.Errorf("http.metrics: public: %v", err)
	}
}

// TestBasicAuthGuard checks /api/turn's HTTP Basic check spends the shared
// guard's budget and that a banned source, or a banned user from an unknown
// source, gets 429 with Retry-After before its password is looked at.
func TestBasicAuthGuard(t *testing.T) {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, filepath.Join(t.TempDir(), "switchboard.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	users, err := registrar.NewUsers(ctx, db, "switchboard.local", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := users.Add(ctx, "alice", "alicepw"); err != nil {
		t.Fatal(err)
	}
	guard := registrar.NewGuard(registrar.GuardConfig{PerSource: 3, PerUser: 5, Window: time.Minute, Ban: 90 * time.Second}, nil)
	auth := basicAuth(users, guard)
	h := refuseBanned(guard, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := auth(r); !ok {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	get := func(remote, user, pw string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, "/api/turn", nil)
		r.RemoteAddr = remote
		if user != "" {
			r.SetBasicAuth(user, pw)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	if w := get("192.0.2.1:1000", "alice", "alicepw"); w.Code != 200 {
		t.Fatalf("right password: %d", w.Code)
	}
	for i := 0; i < 5; i++ { // no credentials: a challenge, not a guess
		if w := get("192.0.2.9:1000", "", ""); w.Code != 401 {
			t.Fatalf("no credentials: %d, want 401", w.Code)
		}
	}
	for i := 1; i <= 3; i++ {
		if w := get("192.0.2.9:"+strconv.Itoa(1000+i), "alice", "guess"+strconv.Itoa(i)); w.Code != 401 {
			t.Fatalf("guess %d: %d, want 401", i, w.Code)
		}
	}
	w := get("192.0.2.9:2000", "alice", "alicepw")
	if w.Code != http.StatusTooManyRequests {
		t.Fatalf("banned source, right password: %d, want 429", w.Code)
	}
	if ra, err := strconv.Atoi(w.Header().Get("Retry-After")); err != nil || ra < 89 || ra > 90 {
		t.Errorf("Retry-After %q, want about 90", w.Header().Get("Retry-After"))
	}
	if !guard.Banned(netip.MustParseAddrPort("192.0.2.9:5060"), "") {
		t.Error("the HTTP failures did not ban the source for the other protocols")
	}
	// Two more guesses from elsewhere spend alice's budget (5): strangers are
	// refused, the client that signed in before is not.
	get("198.51.100.1:1000", "alice", "x")
	get("198.51.100.2:1000", "alice", "x")
	if w := get("198.51.100.3:1000", "alice", "alicepw"); w.Code != http.StatusTooManyRequests {
		t.Errorf("banned user from a new source: %d, want 429", w.Code)
	}
	if w := get("192.0.2.1:1001", "alice", "alicepw"); w.Code != 200 {
		t.Errorf("banned user from its known source: %d, want 200", w.Code)
	}
}

func TestAuthFailuresPerUserConfig(t *testing.T) {
	c, err := loadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	if rc := c.registrarConfig(); rc.AuthFailuresPerUser != 30 {
		t.Errorf("default auth_failures_per_user: registrar gets %d, want 30", rc.AuthFailuresPerUser)
	}
	c, err = loadConfig(writeConfig(t, "security: {auth_failures_per_user: 0}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if rc := c.registrarConfig(); rc.AuthFailuresPerUser >= 0 {
		t.Errorf("auth_failures_per_user: 0 must disable the per-user ban, got %d", rc.AuthFailuresPerUser)
	}
}

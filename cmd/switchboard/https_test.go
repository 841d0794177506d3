package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestRedirectToHTTPS(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	h := redirectToHTTPS(ok, 8443)
	tests := []struct {
		name, remote, host, target string
		status                     int
		location                   string
	}{
		{"loopback served", "127.0.0.1:5000", "127.0.0.1:8080", "/", http.StatusTeapot, ""},
		{"loopback v6 served", "[::1]:5000", "[::1]:8080", "/", http.StatusTeapot, ""},
		{"remote redirected", "198.51.100.10:5000", "198.51.100.1:8080", "/phone?x=1", http.StatusPermanentRedirect, "https://198.51.100.1:8443/phone?x=1"},
		{"remote by name", "198.51.100.10:5000", "switch.example.org:8080", "/sip", http.StatusPermanentRedirect, "https://switch.example.org:8443/sip"},
		{"remote v6 without port", "[2001:db8::9]:5000", "[2001:db8::1]", "/", http.StatusPermanentRedirect, "https://[2001:db8::1]:8443/"},
		{"mapped loopback served", "[::ffff:127.0.0.1]:5000", "x", "/", http.StatusTeapot, ""},
		{"remote SIP over WebSocket served", "198.51.100.10:5000", "198.51.100.1:8080", "/sip", http.StatusTeapot, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, tc.target, nil)
			r.RemoteAddr, r.Host = tc.remote, tc.host
			if strings.HasPrefix(tc.name, "remote SIP over WebSocket") {
				r.Header.Set("Upgrade", "websocket")
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.status || w.Header().Get("Location") != tc.location {
				t.Fatalf("status %d, Location %q; want %d, %q", w.Code, w.Header().Get("Location"), tc.status, tc.location)
			}
		})
	}
}

func TestStrictTransport(t *testing.T) {
	w := httptest.NewRecorder()
	strictTransport(http.NotFoundHandler()).ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
	if w.Header().Get("Strict-Transport-Security") == "" {
		t.Fatal("no HSTS header")
	}
}

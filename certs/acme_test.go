package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/pebbletest"
)

// TestACMEObtainServeRenew obtains a certificate from pebble for a test
// name, serves it over a real HTTPS server (chain verified with pebble's
// root), and renews it when it nears its (short) expiry while every
// handshake keeps succeeding.
func TestACMEObtainServeRenew(t *testing.T) {
	const name = "switch.example.org"
	p := pebbletest.Start(t, 12*time.Second)
	dir := t.TempDir()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	var tlsPort int
	fmt.Sscan(port, &tlsPort)
	var logs pebbletest.SyncBuffer
	src, err := New(context.Background(), Config{
		DB:     openDB(t, dir),
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
		ACME: ACMEConfig{
			Domains: []string{name}, Email: "ops@example.org", Directory: p.Directory, CARoot: p.CAFile,
			StorageDir: filepath.Join(dir, "certmagic"), ListenHost: "127.0.0.1", TLSPort: tlsPort,
			RenewCheckInterval: 500 * time.Millisecond, RenewalWindowRatio: 0.75,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !src.Trusted() {
		t.Error("an ACME source is not trusted")
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }),
		TLSConfig: src.HTTPSConfig(), ReadHeaderTimeout: 5 * time.Second,
		ErrorLog: log.New(io.Discard, "", 0)} // the self-signed handshakes refused until issuance
	served := make(chan error, 1)
	go func() { served <- hs.ServeTLS(ln, "", "") }()
	ctx, cancel := context.WithCancel(context.Background())
	serving := make(chan error, 1)
	go func() { serving <- src.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		_ = src.Shutdown(context.Background())
		<-serving
		_ = hs.Close()
		<-served
		if t.Failed() {
			t.Logf("certs log:\n%s", logs.String())
		}
	})

	roots := p.Roots(t)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: name}, DisableKeepAlives: true}}
	get := func() (*x509.Certificate, error) {
		r, err := client.Get("https://" + ln.Addr().String() + "/")
		if err != nil {
			return nil, err
		}
		defer r.Body.Close()
		return r.TLS.PeerCertificates[0], nil
	}
	// Until the certificate is issued, the self-signed one serves (the
	// verified GET fails); then pebble's, verified against its root.
	var first *x509.Certificate
	deadline := time.Now().Add(20 * time.Second)
	for first == nil {
		if c, err := get(); err == nil {
			first = c
			break
		}
		if time.Now().After(deadline) {
			_, err := get()
			t.Fatalf("no certificate from pebble within 20 s: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
	if len(first.DNSNames) != 1 || first.DNSNames[0] != name {
		t.Fatalf("served certificate for %v, want %s", first.DNSNames, name)
	}
	// Renewal: a new serial, with every request in between served.
	deadline = time.Now().Add(30 * time.Second)
	for {
		c, err := get()
		if err != nil {
			t.Fatalf("HTTPS failed while the certificate was being renewed: %v", err)
		}
		if c.SerialNumber.Cmp(first.SerialNumber) != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("certificate (expires %s) not renewed within 30 s", first.NotAfter)
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
	if !strings.Contains(logs.String(), "certificate obtained") {
		t.Errorf("no \"certificate obtained\" log line:\n%s", logs.String())
	}
}

// TestRenewCheckEnv: SWITCHBOARD_ACME_RENEW_CHECK sets certmagic's renewal
// check interval when the config leaves it zero, and a value that is not a
// positive duration makes New fail, naming the variable.
func TestRenewCheckEnv(t *testing.T) {
	dir := t.TempDir()
	newSrc := func() (*Source, error) {
		return New(context.Background(), Config{DB: openDB(t, dir), Logger: slog.New(slog.DiscardHandler),
			ACME: ACMEConfig{Domains: []string{"switch.example.org"}, StorageDir: filepath.Join(dir, "certmagic")}})
	}
	for _, bad := range []string{"soon", "0s", "-1s"} {
		t.Setenv(renewCheckEnv, bad)
		if _, err := newSrc(); err == nil || !strings.Contains(err.Error(), renewCheckEnv) {
			t.Errorf("%s=%q: New returned %v, want an error naming the variable", renewCheckEnv, bad, err)
		}
	}
	for env, want := range map[string]time.Duration{"750ms": 750 * time.Millisecond, "": 0} {
		t.Setenv(renewCheckEnv, env)
		got, err := renewCheckFromEnv()
		if err != nil || got != want {
			t.Errorf("%s=%q: %v, %v; want %v", renewCheckEnv, env, got, err, want)
		}
	}
	t.Setenv(renewCheckEnv, "750ms")
	src, err := newSrc()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = src.Shutdown(context.Background()) }()
	if got := src.acme.renewCheck; got != 750*time.Millisecond {
		t.Errorf("renewal check interval %v, want 750ms", got)
	}
}

package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// requirePebble returns pebble's path; a missing pebble skips the test,
// or fails it when CI=true (test/install.sh installs it).
func requirePebble(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("pebble")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("pebble not installed (apt-get install pebble; test/install.sh does)")
		}
		t.Skip("pebble not installed")
	}
	return p
}

// freeAddr returns a loopback address no one listens on at the moment.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// pebble is a running pebble ACME server.
type pebble struct {
	dir, mgmt string
	caFile    string // the root of pebble's own HTTPS certificate
	client    *http.Client
}

// startPebble runs pebble with certificates valid for validity, accepting
// every challenge (PEBBLE_VA_ALWAYS_VALID), until the test ends.
func startPebble(t *testing.T, validity time.Duration) *pebble {
	t.Helper()
	bin := requirePebble(t)
	dir := t.TempDir()
	p := &pebble{dir: dir, caFile: filepath.Join(dir, "ca.pem")}
	// pebble's HTTPS certificate: one of our own for 127.0.0.1.
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	certPEM, keyPEM := selfSignedFor127(t)
	for f, b := range map[string]string{cert: certPEM, key: keyPEM, p.caFile: certPEM} {
		if err := os.WriteFile(f, []byte(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM([]byte(certPEM))
	p.client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	t.Cleanup(p.client.CloseIdleConnections)

	for attempt := 0; ; attempt++ {
		listen := freeAddr(t)
		p.mgmt = freeAddr(t)
		conf := map[string]any{"pebble": map[string]any{
			"listenAddress": listen, "managementListenAddress": p.mgmt,
			"certificate": cert, "privateKey": key, "httpPort": 5002, "tlsPort": 5001,
			"certificateValidityPeriod": int(validity / time.Second),
		}}
		b, _ := json.Marshal(conf)
		cfgFile := filepath.Join(dir, "pebble.json")
		if err := os.WriteFile(cfgFile, b, 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "-config", cfgFile)
		cmd.Env = append(os.Environ(), "PEBBLE_VA_ALWAYS_VALID=1", "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0")
		out := &syncBuf{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(5 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
			}
			if t.Failed() {
				t.Logf("pebble log:\n%s", out.String())
			}
		})
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case <-exited:
				deadline = time.Time{}
				continue
			default:
			}
			if r, err := p.client.Get("https://" + listen + "/dir"); err == nil {
				r.Body.Close()
				p.dir = "https://" + listen + "/dir"
				return p
			}
			time.Sleep(20 * time.Millisecond) // poll interval
		}
		if attempt == 2 {
			t.Fatalf("pebble did not come up:\n%s", out.String())
		}
	}
}

// root returns the root of the certificates pebble issues.
func (p *pebble) root(t *testing.T) *x509.CertPool {
	t.Helper()
	r, err := p.client.Get("https://" + p.mgmt + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("pebble root: %q", b)
	}
	return pool
}

// selfSignedFor127 is a certificate for 127.0.0.1 and localhost, in PEM.
func selfSignedFor127(t *testing.T) (string, string) {
	t.Helper()
	c, k, err := generate([]string{"localhost"}, []netip.Addr{netip.MustParseAddr("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	return c, k
}

type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestACMEObtainServeRenew obtains a certificate from pebble for a test
// name, serves it over a real HTTPS server (chain verified with pebble's
// root), and renews it when it nears its (short) expiry while every
// handshake keeps succeeding.
func TestACMEObtainServeRenew(t *testing.T) {
	const name = "switch.example.org"
	p := startPebble(t, 12*time.Second)
	dir := t.TempDir()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	var tlsPort int
	fmt.Sscan(port, &tlsPort)
	var logs syncBuf
	src, err := New(context.Background(), Config{
		DB:     openDB(t, dir),
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
		ACME: ACMEConfig{
			Domains: []string{name}, Email: "ops@example.org", Directory: p.dir, CARoot: p.caFile,
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

	roots := p.root(t)
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

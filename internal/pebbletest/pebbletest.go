// Package pebbletest runs pebble, Let's Encrypt's miniature ACME server
// (RFC 8555), for tests: the certs package's own tests and the interop
// tests that drive the switch binary against it.
//
// It is imported by tests only. It must not import the switch's own
// packages, so that every package's tests can use it.
package pebbletest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Pebble is a running pebble server, stopped when the test ends.
type Pebble struct {
	// Directory is the ACME directory URL (https://127.0.0.1:port/dir).
	Directory string
	// Mgmt is the host:port of pebble's management interface (/roots/0).
	Mgmt string
	// CAFile is a PEM file holding the root of pebble's own HTTPS
	// certificate: what an ACME client must trust to talk to Directory.
	CAFile string
	// Client is an HTTP client that trusts CAFile.
	Client *http.Client

	out *SyncBuffer
}

// Require returns pebble's path; a missing pebble skips the test, or fails
// it when CI=true (test/install.sh installs it).
func Require(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("pebble")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("pebble is not installed (CI=true): run test/install.sh (apt-get install pebble)")
		}
		t.Skip("pebble is not installed: run test/install.sh")
	}
	return p
}

// Start runs pebble on ephemeral ports of 127.0.0.1, issuing certificates
// valid for validity (whole seconds) and accepting every challenge without
// validating it (PEBBLE_VA_ALWAYS_VALID), until the test ends. Its log is
// printed if the test fails.
func Start(t testing.TB, validity time.Duration) *Pebble {
	t.Helper()
	bin := Require(t)
	dir := t.TempDir()
	p := &Pebble{CAFile: filepath.Join(dir, "ca.pem"), out: &SyncBuffer{}}
	// pebble's HTTPS certificate: one of our own for 127.0.0.1, which is
	// also its root.
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	certPEM, keyPEM := selfSignedFor127(t)
	for f, b := range map[string][]byte{cert: certPEM, key: keyPEM, p.CAFile: certPEM} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	p.Client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	t.Cleanup(p.Client.CloseIdleConnections)

	// pebble takes its addresses from its config and cannot report a
	// port 0 back: free ports are picked, and the start retried should
	// another process take one in between.
	for attempt := 0; ; attempt++ {
		listen := freeAddr(t)
		p.Mgmt = freeAddr(t)
		conf := map[string]any{"pebble": map[string]any{
			"listenAddress": listen, "managementListenAddress": p.Mgmt,
			"certificate": cert, "privateKey": key, "httpPort": 5002, "tlsPort": 5001,
			"certificateValidityPeriod": int(validity / time.Second),
		}}
		b, err := json.Marshal(conf)
		if err != nil {
			t.Fatal(err)
		}
		cfgFile := filepath.Join(dir, "pebble.json")
		if err := os.WriteFile(cfgFile, b, 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "-config", cfgFile)
		cmd.Env = append(os.Environ(), "PEBBLE_VA_ALWAYS_VALID=1", "PEBBLE_VA_NOSLEEP=1",
			"PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0")
		cmd.Stdout, cmd.Stderr = p.out, p.out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }() // ends when pebble does
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(5 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
			}
			if t.Failed() {
				t.Logf("pebble log:\n%s", p.out.String())
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
			if r, err := p.Client.Get("https://" + listen + "/dir"); err == nil {
				r.Body.Close()
				p.Directory = "https://" + listen + "/dir"
				return p
			}
			time.Sleep(20 * time.Millisecond) // poll interval
		}
		if attempt == 2 {
			t.Fatalf("pebble did not come up:\n%s", p.out.String())
		}
	}
}

// Log returns what pebble has written so far.
func (p *Pebble) Log() string { return p.out.String() }

// RootPEM returns the root of the certificates pebble issues (management
// interface /roots/0), in PEM; pebble makes a new one at every start.
func (p *Pebble) RootPEM(t testing.TB) []byte {
	t.Helper()
	r, err := p.Client.Get("https://" + p.Mgmt + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil || r.StatusCode != http.StatusOK {
		t.Fatalf("pebble root: %d %q %v", r.StatusCode, b, err)
	}
	return b
}

// Roots returns RootPEM as a pool.
func (p *Pebble) Roots(t testing.TB) *x509.CertPool {
	t.Helper()
	b := p.RootPEM(t)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("pebble root: no PEM certificate in %q", b)
	}
	return pool
}

// freeAddr returns a loopback address no one listens on at the moment.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// selfSignedFor127 is a self-signed certificate for 127.0.0.1 and
// localhost and its key, in PEM.
func selfSignedFor127(t testing.TB) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "pebbletest"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(fmt.Errorf("pebbletest: key: %w", err))
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// SyncBuffer collects text from several writers at once (pebble's stdout
// and stderr, a logger's goroutines).
type SyncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

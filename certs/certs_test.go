package certs

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/sqldb"
)

func openDB(t *testing.T, dir string) *sql.DB {
	t.Helper()
	db, err := sqldb.Open(context.Background(), filepath.Join(dir, "test.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// serveTLS accepts TLS connections with cfg on loopback until the test
// ends, completing each handshake; it returns the address.
func serveTLS(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// served returns the leaf certificate a handshake with addr gets.
func served(t *testing.T, addr, name string, roots *x509.CertPool) (*x509.Certificate, error) {
	t.Helper()
	cfg := &tls.Config{ServerName: name, RootCAs: roots, InsecureSkipVerify: roots == nil} //nolint:gosec // the test checks what is served
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0], nil
}

func TestSelfSignedGeneratedOnceAndReused(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir)
	ips := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("192.0.2.7")}
	cfg := Config{DB: db, Names: []string{"localhost", "switch.test"}, IPs: ips}
	a, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if a.Trusted() {
		t.Error("a self-signed source says it is trusted (HSTS would be sent)")
	}
	leaf := a.self.Leaf
	if _, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || !covers(leaf, cfg.Names, ips) {
		t.Fatalf("self-signed certificate: key %T, names %v, ips %v", leaf.PublicKey, leaf.DNSNames, leaf.IPAddresses)
	}
	b, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if Fingerprint(b.self.Leaf) != Fingerprint(leaf) {
		t.Error("second start generated a new certificate instead of reusing the stored one")
	}
	// The handshake serves it, for any SNI name.
	addr := serveTLS(t, b.TLSConfig())
	got, err := served(t, addr, "unknown.example", nil)
	if err != nil || got.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Fatalf("handshake: %v, serial %v, want %v", err, got, leaf.SerialNumber)
	}
	// A new address of the host: a new certificate, stored for next time.
	cfg.IPs = append(ips, netip.MustParseAddr("198.51.100.10"))
	c, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if Fingerprint(c.self.Leaf) == Fingerprint(leaf) || !covers(c.self.Leaf, cfg.Names, cfg.IPs) {
		t.Error("certificate not regenerated for a new address")
	}
	d, _ := New(context.Background(), cfg)
	if Fingerprint(d.self.Leaf) != Fingerprint(c.self.Leaf) {
		t.Error("regenerated certificate not stored")
	}
}

// writePair writes a certificate for localhost signed by its own key.
func writePair(t *testing.T, certPath, keyPath string, serial int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestFileCertificateReloadedWhenFilesChange(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writePair(t, cert, key, 1001)
	s, err := New(context.Background(), Config{DB: openDB(t, dir), CertFile: cert, KeyFile: key, ReloadInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Trusted() {
		t.Error("a given certificate is not treated as trusted (no HSTS)")
	}
	addr := serveTLS(t, s.TLSConfig())
	if got, err := served(t, addr, "localhost", nil); err != nil || got.SerialNumber.Int64() != 1001 {
		t.Fatalf("first handshake: %v %v", got, err)
	}
	// A half-written pair (new certificate, old key) keeps the old one.
	old, _ := os.ReadFile(key)
	writePair(t, cert, key, 1002)
	mismatched, _ := os.ReadFile(key)
	if err := os.WriteFile(key, old, 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // past ReloadInterval: the next handshake looks at the files
	if got, err := served(t, addr, "localhost", nil); err != nil || got.SerialNumber.Int64() != 1001 {
		t.Fatalf("with a mismatched pair on disk: %v %v, want the previous certificate", got, err)
	}
	if err := os.WriteFile(key, mismatched, 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := served(t, addr, "localhost", nil)
		if err != nil {
			t.Fatal(err)
		}
		if got.SerialNumber.Int64() == 1002 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still serving serial %v 5 s after the files changed", got.SerialNumber)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestBadFilesFailStartUp(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir)
	a1, k1 := filepath.Join(dir, "a.pem"), filepath.Join(dir, "a.key")
	a2, k2 := filepath.Join(dir, "b.pem"), filepath.Join(dir, "b.key")
	writePair(t, a1, k1, 1)
	writePair(t, a2, k2, 2)
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, cert, key, want string
	}{
		{"missing file", filepath.Join(dir, "none.pem"), k1, "none.pem"},
		{"mismatched key", a1, k2, "private key does not match"},
		{"not PEM", garbage, k1, "garbage.pem"},
		{"cert without key", a1, "", "KeyFile"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(context.Background(), Config{DB: db, CertFile: tc.cert, KeyFile: tc.key})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

// TestExpiredFileCertificateWarns: an expired certificate given in files
// loads (it is what the operator gave) with a clear warning.
func TestExpiredFileCertificateWarns(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writePair(t, cert, key, 7)
	var buf bytes.Buffer
	f, err := loadFileCert(cert, key, time.Second, slog.New(slog.NewTextHandler(&buf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "expired") {
		t.Fatalf("a valid certificate was called expired: %s", buf.String())
	}
	f.warnValidity(time.Now().Add(2 * time.Hour))
	if !strings.Contains(buf.String(), "certificate has expired") || !strings.Contains(buf.String(), cert) {
		t.Fatalf("no clear warning for an expired certificate: %q", buf.String())
	}
	buf.Reset()
	f.warnValidity(time.Now().Add(-2 * time.Hour))
	if !strings.Contains(buf.String(), "not valid yet") {
		t.Fatalf("no warning for a certificate not valid yet: %q", buf.String())
	}
}

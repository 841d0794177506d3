package interop

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard/switchboard/test/internal/testbed"
)

// httpsClient trusts nothing but roots (nil: accepts any certificate and
// checks what is served itself).
func httpsClient(roots *x509.CertPool) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots, InsecureSkipVerify: roots == nil}, //nolint:gosec // self-signed on purpose
		DisableKeepAlives: true}}
}

// TestHTTPSSelfSignedWebPhoneAndWSS starts the switch with neither a
// certificate nor ACME: HTTPS serves the web phone with a generated
// self-signed certificate (fingerprint logged, no HSTS), and SIP over
// secure WebSocket at /sip answers a REGISTER with a 401 challenge.
func TestHTTPSSelfSignedWebPhoneAndWSS(t *testing.T) {
	srv := testbed.StartServer(t, testbed.Binary(t), testbed.ServerConfig{})
	addr := srv.Addr(t, "https")
	r, err := httpsClient(nil).Get("https://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if r.StatusCode != http.StatusOK || !strings.Contains(strings.ToLower(string(body)), "<html") {
		t.Fatalf("GET https://%s/: %d %.200q", addr, r.StatusCode, body)
	}
	if h := r.Header.Get("Strict-Transport-Security"); h != "" {
		t.Errorf("HSTS %q sent with a self-signed certificate", h)
	}
	leaf := r.TLS.PeerCertificates[0]
	if !strings.Contains(srv.Log(), "generated a self-signed certificate") || !strings.Contains(leaf.Subject.String(), "self-signed") {
		t.Errorf("certificate %s; log has no generated self-signed certificate line", leaf.Subject)
	}
	if err := leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Errorf("self-signed certificate not for the host's addresses: %v", err)
	}

	// SIP over WSS (RFC 7118): REGISTER without credentials gets 401.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "wss://"+addr+"/sip", &websocket.DialOptions{
		Subprotocols: []string{"sip"}, HTTPClient: httpsClient(nil)})
	if err != nil {
		t.Fatalf("wss://%s/sip: %v", addr, err)
	}
	defer c.CloseNow()
	if c.Subprotocol() != "sip" {
		t.Fatalf("subprotocol %q", c.Subprotocol())
	}
	reg := fmt.Sprintf("REGISTER sip:%[1]s SIP/2.0\r\nVia: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKwss1;rport\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:alice@%[1]s>;tag=wss1\r\nTo: <sip:alice@%[1]s>\r\nCall-ID: wss-call-1\r\n"+
		"CSeq: 1 REGISTER\r\nContact: <sip:alice@df7jal23ls0d.invalid;transport=ws>\r\nExpires: 300\r\nContent-Length: 0\r\n\r\n", srv.Domain)
	if err := c.Write(ctx, websocket.MessageText, []byte(reg)); err != nil {
		t.Fatal(err)
	}
	_, msg, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(msg), "SIP/2.0 401") || !strings.Contains(string(msg), "WWW-Authenticate") {
		t.Fatalf("REGISTER over WSS answered:\n%s", msg)
	}
	if srv.Addrs["wss"] == "" {
		t.Errorf("no wss listener logged (have %v)", srv.Addrs)
	}
}

// writeCertFiles writes a certificate for 127.0.0.1 and localhost, signed
// by a CA of the test's own, and returns the paths and that CA's pool.
func writeCertFiles(t *testing.T, dir string) (cert, key string, roots *x509.CertPool, serial *big.Int) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial = big.NewInt(time.Now().UnixNano())
	leaf := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key2.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key2)
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	roots = x509.NewCertPool()
	roots.AddCert(caCert)
	return cert, key, roots, serial
}

// TestHTTPSGivenCertificateSendsHSTS serves a given certificate: it
// verifies against its CA, and responses carry HSTS.
func TestHTTPSGivenCertificateSendsHSTS(t *testing.T) {
	cert, key, roots, serial := writeCertFiles(t, t.TempDir())
	srv := testbed.StartServer(t, testbed.Binary(t), testbed.ServerConfig{HTTPS: fmt.Sprintf("cert: %s, key: %s", cert, key)})
	r, err := httpsClient(roots).Get("https://" + srv.Addr(t, "https") + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if got := r.TLS.PeerCertificates[0].SerialNumber; got.Cmp(serial) != 0 {
		t.Errorf("served serial %v, want the file's %v", got, serial)
	}
	if !strings.HasPrefix(r.Header.Get("Strict-Transport-Security"), "max-age=") {
		t.Errorf("no HSTS with a given certificate: %v", r.Header)
	}
	// Loopback clients of plain HTTP are served, not redirected.
	r, err = http.Get("http://" + srv.Addr(t, "http") + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusOK {
		t.Errorf("plain HTTP from loopback: %d", r.StatusCode)
	}
}

// TestBaresipRegistersOverTLSWithSharedCertificate has baresip register
// over a sip tls:// listener that names no certificate of its own: the
// switch's shared (self-signed) certificate serves it, the one HTTPS and
// TURN over TLS serve.
func TestBaresipRegistersOverTLSWithSharedCertificate(t *testing.T) {
	testbed.RequireTool(t, "baresip")
	srv := testbed.StartServer(t, testbed.Binary(t), testbed.ServerConfig{
		Listen: []string{"udp://127.0.0.1:0", "tls://127.0.0.1:0"},
		TURN:   true, TURNOptions: "listen: [udp://127.0.0.1:0, tls://127.0.0.1:0]"})
	addUsers(t, srv, []testbed.Cred{{User: "alice", Password: "alice-pw-1"}})
	served := func(addr string) *x509.Certificate {
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // inspecting what is served
		if err != nil {
			t.Fatalf("TLS to %s: %v", addr, err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0]
	}
	sipCert, httpsCert := served(srv.Addr(t, "tls")), served(srv.Addr(t, "https"))
	if !sipCert.Equal(httpsCert) {
		t.Fatalf("sip tls serves %s, HTTPS %s: not one certificate", sipCert.Subject, httpsCert.Subject)
	}
	// TURN over TLS names no certificate either: the same one.
	if turnCert := served(srv.Addr(t, "turn/tls")); !turnCert.Equal(httpsCert) {
		t.Fatalf("TURN over TLS serves %s, HTTPS %s: not one certificate", turnCert.Subject, httpsCert.Subject)
	}
	ca := filepath.Join(t.TempDir(), "switch.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: sipCert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	alice := testbed.StartBaresip(t, "alice", testbed.BaresipConfig{
		User: "alice", Password: "alice-pw-1", Domain: srv.Domain, Proxy: srv.Addr(t, "tls"), Transport: "tls", CAFile: ca})
	alice.WaitRegistered(t, 10*time.Second)
}

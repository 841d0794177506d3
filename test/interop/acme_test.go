package interop

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/pebbletest"
	"github.com/switchboard/switchboard/test/internal/testbed"
)

// acmeName is the name the switch obtains its certificate for.
const acmeName = "switch.test"

// TestACMEObtainServeRenewThroughBinary runs `switchboard serve` with
// http.https.acme against pebble (12-second certificates, challenges
// accepted unvalidated): the switch logs that it obtained a certificate for
// switch.test, serves it on its HTTPS port (chain verified against pebble's
// issuing root, valid for switch.test), renews it before it expires (a new
// serial), and answers every GET / polled every 200 ms meanwhile.
func TestACMEObtainServeRenewThroughBinary(t *testing.T) {
	p := pebbletest.Start(t, 12*time.Second)
	srv := testbed.StartServer(t, testbed.Binary(t), testbed.ServerConfig{
		HTTPS: fmt.Sprintf("acme: {domains: [%s], directory: %q, ca_root: %q, email: ops@switch.test}",
			acmeName, p.Directory, p.CAFile),
		// certmagic's 10-minute renewal check would outlive the
		// certificate: look every half second.
		Env: []string{"SWITCHBOARD_ACME_RENEW_CHECK=500ms"},
	})
	addr := srv.Addr(t, "https")
	obtained := func() int { return strings.Count(srv.Log(), "ACME: certificate obtained") }
	if !testbed.Eventually(t, 20*time.Second, func() bool { return obtained() >= 1 }, "switch logs \"ACME: certificate obtained\"") {
		t.FailNow()
	}

	roots := p.Roots(t)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: acmeName}, DisableKeepAlives: true}}
	t.Cleanup(client.CloseIdleConnections)
	// get does GET / over a new connection with SNI switch.test, verifying
	// the chain against pebble's root, and returns the served chain.
	get := func() ([]*x509.Certificate, error) {
		r, err := client.Get("https://" + addr + "/")
		if err != nil {
			return nil, err
		}
		defer r.Body.Close()
		if r.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET /: %s", r.Status)
		}
		return r.TLS.PeerCertificates, nil
	}
	// The certificate is put into service just after the log line.
	var chain []*x509.Certificate
	var lastErr error
	if !testbed.Eventually(t, 5*time.Second, func() bool { chain, lastErr = get(); return lastErr == nil },
		"HTTPS serves a certificate that verifies against pebble's root") {
		t.Fatalf("last error: %v", lastErr)
	}
	verify := func(chain []*x509.Certificate) {
		t.Helper()
		inter := x509.NewCertPool()
		for _, c := range chain[1:] {
			inter.AddCert(c)
		}
		if _, err := chain[0].Verify(x509.VerifyOptions{DNSName: acmeName, Roots: roots, Intermediates: inter}); err != nil {
			t.Errorf("served certificate (%v, issuer %s) does not verify for %s against pebble's root: %v",
				chain[0].DNSNames, chain[0].Issuer, acmeName, err)
		}
	}
	verify(chain)
	first := chain[0]
	t.Logf("first certificate: serial %x, valid %s to %s", first.SerialNumber, first.NotBefore.Format(time.TimeOnly), first.NotAfter.Format(time.TimeOnly))

	// Renewal: poll every 200 ms until a new serial is served, and some
	// more (until the renewal's log line and 1 s after the switch), every
	// request verified and answered.
	var polls, failures int
	var renewed *x509.Certificate
	var renewedAt time.Time
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		polls++
		c, err := get()
		switch {
		case err != nil:
			failures++
			t.Errorf("GET / over HTTPS during renewal (poll %d): %v", polls, err)
		case renewed == nil && c[0].SerialNumber.Cmp(first.SerialNumber) != 0:
			renewed, renewedAt = c[0], time.Now()
			verify(c)
		}
		if renewed != nil && obtained() >= 2 && time.Since(renewedAt) > time.Second {
			break
		}
		time.Sleep(200 * time.Millisecond) // the poll interval under test
	}
	if renewed == nil {
		t.Fatalf("certificate (serial %x, expires %s) not renewed within 30 s (%d polls)", first.SerialNumber, first.NotAfter, polls)
	}
	t.Logf("renewed: serial %x, valid %s to %s; %d GETs, %d failed", renewed.SerialNumber,
		renewed.NotBefore.Format(time.TimeOnly), renewed.NotAfter.Format(time.TimeOnly), polls, failures)
	if failures != 0 {
		t.Errorf("%d of %d GETs failed during renewal, want 0", failures, polls)
	}
	if !renewed.NotAfter.After(first.NotAfter) {
		t.Errorf("renewed certificate expires %s, not after the first's %s", renewed.NotAfter, first.NotAfter)
	}
	if !strings.Contains(srv.Log(), "renewal=true") {
		t.Errorf("no \"certificate obtained\" log line with renewal=true")
	}
}

// TestACMEUnreachableDirectoryStillServes points http.https.acme at a
// closed port: the switch starts, serves its self-signed certificate over
// HTTPS, and logs the failed issuance once (certmagic retries after a
// minute, not in a loop).
func TestACMEUnreachableDirectoryStillServes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	srv := testbed.StartServer(t, testbed.Binary(t), testbed.ServerConfig{
		HTTPS: fmt.Sprintf("acme: {domains: [%s], directory: %q, email: ops@switch.test}", acmeName, "https://"+closed+"/dir"),
	})
	failed := func() int { return strings.Count(srv.Log(), "ACME: certificate not obtained") }
	if !testbed.Eventually(t, 20*time.Second, func() bool { return failed() >= 1 }, "switch logs \"ACME: certificate not obtained\"") {
		t.FailNow()
	}
	// For 3 s after the failure, HTTPS answers with the self-signed
	// certificate and the failure is not logged again.
	client := httpsClient(nil)
	client.Transport.(*http.Transport).TLSClientConfig.ServerName = acmeName
	var gets int
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); gets++ {
		r, err := client.Get("https://" + srv.Addr(t, "https") + "/healthz")
		if err != nil {
			t.Fatalf("HTTPS with ACME unreachable: %v", err)
		}
		r.Body.Close()
		if leaf := r.TLS.PeerCertificates[0]; r.StatusCode != http.StatusOK || !strings.Contains(leaf.Subject.String(), "self-signed") {
			t.Fatalf("HTTPS with ACME unreachable: %d, certificate %s", r.StatusCode, leaf.Subject)
		}
		time.Sleep(200 * time.Millisecond) // observation window's poll interval
	}
	if n := failed(); n != 1 {
		t.Errorf("failure logged %d times in 3 s, want once", n)
	}
	var noisy []string
	for _, l := range strings.Split(srv.Log(), "\n") {
		if kv := testbed.ParseLogfmt(l); kv["component"] == "certs" && (kv["level"] == "WARN" || kv["level"] == "ERROR") {
			noisy = append(noisy, l)
		}
	}
	// The failure, and certmagic's "will retry" that says when.
	if len(noisy) > 2 {
		t.Errorf("%d warning/error lines from certs for one failed attempt, want at most 2:\n%s", len(noisy), strings.Join(noisy, "\n"))
	}
	if strings.Contains(srv.Log(), "ACME: certificate obtained") {
		t.Errorf("a certificate obtained from a closed port")
	}
	t.Logf("%d HTTPS GETs served with the self-signed certificate; certs warnings/errors:\n%s", gets, strings.Join(noisy, "\n"))
}

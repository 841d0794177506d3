//go:build linux

package browser

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/test/internal/testbed"
)

// The "remote" network of TestWebPhoneOverHTTPS: a veth pair between the
// test's namespace (the switch and the browser, on non-loopback addresses:
// a page from one is not a secure context by address) and a second one
// (baresip, a phone on another machine), while no packet leaves them.
const (
	remoteSwitchIP = "198.51.100.10" // v0: the switch
	remotePageIP   = "198.51.100.12" // v0 too: the JsSIP test page's server, another origin
	remoteClientIP = "198.51.100.11" // v1, in the phone's namespace: baresip
)

// TestWebPhoneOverHTTPS is the web phone as a user on another machine sees
// it: over https://198.51.100.10 with a certificate from a CA the browser
// trusts it is a secure context, signs in and calls baresip with tones both
// ways; JsSIP in that browser registers over wss://…/sip; and the page over
// plain HTTP, from a switch without HTTPS, says in words why it cannot
// call.
func TestWebPhoneOverHTTPS(t *testing.T) {
	node, dir := requirements(t)
	for _, pkg := range []string{"jssip", "esbuild"} {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", pkg, "package.json")); err != nil {
			if testbed.InCI() {
				t.Fatalf("%s is not installed in %s (CI=true): run test/install.sh", pkg, dir)
			}
			t.Skipf("%s is not installed in %s: run test/install.sh", pkg, dir)
		}
	}
	artifacts := filepath.Join(filepath.Dir(filepath.Dir(dir)), "test", "artifacts")
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	tones := t.TempDir()
	aliceTone := testbed.MakeTone(t, filepath.Join(tones, "alice-440.wav"), 440, 60)
	bobTone := testbed.MakeTone(t, filepath.Join(tones, "bob-1000.wav"), 1000, 60)

	ns := testbed.NewNetns(t, "https")
	// The phone is in a namespace of its own: on the switch's host its
	// media would leave from the switch's address (a wildcard-bound socket
	// sending to a local address), which the relay rightly refuses before
	// latching (it comes from neither the phone's SIP source nor its SDP).
	phoneNS := testbed.NewNetns(t, "phone")
	testbed.IP(t, "-n", ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1", "netns", phoneNS)
	testbed.IP(t, "-n", ns, "addr", "add", remoteSwitchIP+"/24", "dev", "v0")
	testbed.IP(t, "-n", ns, "addr", "add", remotePageIP+"/24", "dev", "v0")
	testbed.IP(t, "-n", phoneNS, "addr", "add", remoteClientIP+"/24", "dev", "v1")
	testbed.IP(t, "-n", phoneNS, "link", "set", "lo", "up")
	// No IPv6 link-local addresses: their arrival a second after "up"
	// (duplicate address detection) makes Chromium abort navigations in
	// progress with ERR_NETWORK_CHANGED.
	testbed.IP(t, "-n", ns, "link", "set", "v0", "addrgenmode", "none")
	testbed.IP(t, "-n", phoneNS, "link", "set", "v1", "addrgenmode", "none")
	testbed.IP(t, "-n", ns, "link", "set", "v0", "up")
	testbed.IP(t, "-n", phoneNS, "link", "set", "v1", "up")

	certFile, keyFile, spki := testCertificate(t, t.TempDir(), remoteSwitchIP, remotePageIP)
	d := driver{testbed.StartChromium(t, ns, node, dir, "driver.mjs")}
	var jssipOrigin string
	if err := json.Unmarshal(d.Must("serveJsSIP", map[string]any{"host": remotePageIP, "port": 0, "cert": certFile, "key": keyFile}), &jssipOrigin); err != nil {
		t.Fatal(err)
	}

	sipHost := remoteSwitchIP + ":5060"
	sw := testbed.StartServer(t, testbed.Binary(t), testbed.ServerConfig{
		Domain:      domain,
		Netns:       ns,
		LogLevel:    os.Getenv("SWITCHBOARD_LOG_LEVEL"),
		Listen:      []string{"udp://" + sipHost, "tcp://" + sipHost},
		HTTP:        remoteSwitchIP + ":8080",
		HTTPS:       "listen: " + remoteSwitchIP + ":8443, cert: " + certFile + ", key: " + keyFile,
		HTTPOptions: "allowed_origins: [" + jssipOrigin + "]",
		MediaIP:     remoteSwitchIP,
		Security:    "auth_failures: 0",
		Extra:       "webrtc: {ice_ips: [" + remoteSwitchIP + "]}",
	})
	sw.AddUser(t, "alice", "alicepw")
	sw.AddUser(t, "bob", "bobpw")
	httpsURL := "https://" + sw.Addr(t, "https") + "/"
	bob := testbed.StartBaresip(t, "bob", testbed.BaresipConfig{
		User: "bob", Password: "bobpw", Domain: domain, Proxy: sipHost,
		AnswerMode: "auto", AudioFile: bobTone, IP: remoteClientIP, Netns: phoneNS,
	})
	bob.WaitRegistered(t, 15*time.Second)

	// The SPKI of the test certificate and of its CA: Chromium accepts
	// the chain as if a trusted root had signed it.
	trust := "--ignore-certificate-errors-spki-list=" + strings.Join(spki, ",")
	d.Must("launch", map[string]any{"name": "alice", "tone": aliceTone, "args": []string{trust}})

	t.Run("plain HTTP is redirected to HTTPS", func(t *testing.T) {
		d.T = t
		d.Must("goto", map[string]any{"name": "alice", "url": "http://" + sw.Addr(t, "http") + "/"})
		if got := evalString(d, "alice", "location.href"); got != httpsURL {
			t.Fatalf("the page over plain HTTP ends at %s, want %s", got, httpsURL)
		}
	})

	t.Run("secure context calls baresip", func(t *testing.T) {
		d.T = t
		bob.ClearEvents()
		d.Must("goto", map[string]any{"name": "alice", "url": httpsURL})
		if got := evalString(d, "alice", "String(window.isSecureContext && !!navigator.mediaDevices)"); got != "true" {
			t.Fatalf("%s is not a secure context with a microphone (isSecureContext && mediaDevices = %s)", httpsURL, got)
		}
		if got := evalString(d, "alice", "String(document.getElementById('insecure').hidden)"); got != "true" {
			t.Fatalf("the insecure-context message shows on %s", httpsURL)
		}
		d.Must("signin", map[string]any{"name": "alice", "user": "alice", "password": "alicepw"})
		d.Must("fill", map[string]any{"name": "alice", "label": "Call to", "value": "bob"})
		d.Must("click", map[string]any{"name": "alice", "button": "Call"})
		d.Must("waitState", map[string]any{"name": "alice", "text": "In call"})
		waitEvent(t, bob, "CALL_ESTABLISHED", "", 15*time.Second)
		s := d.audioFlowing("alice")
		t.Logf("alice receives %s over %s: %d packets, level %.3f", s.AudioCodec, httpsURL, s.AudioIn.PacketsReceived, s.AudioIn.AudioLevel)
		d.shot("alice", filepath.Join(artifacts, "webphone-https-in-call.png"))
		d.Must("click", map[string]any{"name": "alice", "button": "Hang up"})
		waitEvent(t, bob, "CALL_CLOSED", "", 10*time.Second)
		d.Must("waitState", map[string]any{"name": "alice", "text": "Call ended"})
		hasTone(t, bob, 440)
	})

	t.Run("JsSIP registers over wss", func(t *testing.T) {
		d.T = t
		d.Must("goto", map[string]any{"name": "alice", "url": jssipOrigin + "/"})
		wss := "wss://" + sw.Addr(t, "https") + "/sip"
		var r struct {
			OK     bool   `json:"ok"`
			Detail string `json:"detail"`
		}
		if err := json.Unmarshal(d.Must("jssipRegister", map[string]any{"name": "alice", "url": wss, "user": "alice", "password": "alicepw", "domain": domain}), &r); err != nil {
			t.Fatal(err)
		}
		if !r.OK {
			t.Fatalf("JsSIP on %s did not register over %s: %s", jssipOrigin, wss, r.Detail)
		}
		t.Logf("JsSIP on %s over %s: %s", jssipOrigin, wss, r.Detail)
	})

	t.Run("plain HTTP page says it is not secure", func(t *testing.T) {
		d.T = t
		// A second switch without HTTPS, so that plain HTTP is not
		// redirected: what a remote user sees of it.
		plain := testbed.StartServer(t, testbed.Binary(t), testbed.ServerConfig{
			Domain:   domain,
			Netns:    ns,
			LogLevel: os.Getenv("SWITCHBOARD_LOG_LEVEL"),
			Listen:   []string{"udp://" + remoteSwitchIP + ":5062"},
			HTTP:     remoteSwitchIP + ":8081",
			HTTPS:    `listen: ""`,
			MediaIP:  remoteSwitchIP,
		})
		d.Must("goto", map[string]any{"name": "alice", "url": "http://" + plain.Addr(t, "http") + "/"})
		if got := evalString(d, "alice", "String(window.isSecureContext)"); got != "false" {
			t.Fatalf("plain HTTP from %s: isSecureContext = %s", remoteSwitchIP, got)
		}
		d.Must("waitText", map[string]any{"name": "alice", "text": "This connection is not secure"})
		d.Must("waitText", map[string]any{"name": "alice", "text": "does not let the page use your microphone"})
		d.Must("waitText", map[string]any{"name": "alice", "text": "This switch does not serve HTTPS"})
		d.shot("alice", filepath.Join(artifacts, "webphone-insecure-context.png"))
	})
}

func evalString(d driver, name, expr string) string {
	d.T.Helper()
	var s string
	if err := json.Unmarshal(d.Must("eval", map[string]any{"name": name, "expr": expr}), &s); err != nil {
		d.T.Fatal(err)
	}
	return s
}

// testCertificate writes a test CA and a server certificate it signed for
// ips (cert.pem holds the server certificate then the CA) into dir, and
// returns the files and the base64 SHA-256 of both certificates'
// SubjectPublicKeyInfo, for Chromium's --ignore-certificate-errors-spki-list.
func testCertificate(t *testing.T, dir string, ips ...string) (certFile, keyFile string, spki []string) {
	t.Helper()
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "switchboard test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: ips[0]},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})...)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*x509.Certificate{leaf, ca} {
		sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
		spki = append(spki, base64.StdEncoding.EncodeToString(sum[:]))
	}
	return certFile, keyFile, spki
}

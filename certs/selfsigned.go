package certs

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/switchboard/switchboard/internal/sqldb"
)

// selfSignedName is the row of the self-signed certificate.
const selfSignedName = "self-signed"

// selfSignedLifetime is how long a generated certificate is valid; it is
// regenerated a month before it ends.
const selfSignedLifetime = 365 * 24 * time.Hour

var schema = []string{
	`CREATE TABLE certificates (name TEXT PRIMARY KEY, cert_pem TEXT NOT NULL, key_pem TEXT NOT NULL)`,
}

// selfSigned returns the self-signed certificate kept in db, generating
// (and storing) a new one when there is none, it is about to expire, or it
// does not cover every one of names and ips.
func selfSigned(ctx context.Context, db *sql.DB, names []string, ips []netip.Addr, log *slog.Logger) (*tls.Certificate, error) {
	if err := sqldb.Migrate(ctx, db, "certs", schema); err != nil {
		return nil, err
	}
	if names == nil {
		names = []string{"localhost"}
		if h, err := os.Hostname(); err == nil && h != "" && h != "localhost" {
			names = append(names, h)
		}
	}
	if ips == nil {
		ips = interfaceIPs()
	}
	var certPEM, keyPEM string
	err := db.QueryRowContext(ctx, `SELECT cert_pem, key_pem FROM certificates WHERE name = ?`, selfSignedName).Scan(&certPEM, &keyPEM)
	switch {
	case err == nil:
		c, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
		if err == nil && covers(c.Leaf, names, ips) && time.Until(c.Leaf.NotAfter) > 30*24*time.Hour {
			log.Info("self-signed certificate", "sha256", Fingerprint(c.Leaf), "expires", c.Leaf.NotAfter)
			return &c, nil
		}
		log.Info("self-signed certificate expiring, unusable or not for this host's names and addresses: generating a new one")
	case !errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("read self-signed certificate: %w", err)
	}
	certPEM, keyPEM, err = generate(names, ips)
	if err != nil {
		return nil, err
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO certificates (name, cert_pem, key_pem) VALUES (?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET cert_pem = excluded.cert_pem, key_pem = excluded.key_pem`,
		selfSignedName, certPEM, keyPEM); err != nil {
		return nil, fmt.Errorf("store self-signed certificate: %w", err)
	}
	c, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		return nil, fmt.Errorf("generated certificate: %w", err)
	}
	log.Info("generated a self-signed certificate: browsers will ask to accept it; compare this fingerprint",
		"sha256", Fingerprint(c.Leaf), "names", names, "ips", ips, "expires", c.Leaf.NotAfter)
	return &c, nil
}

// covers reports whether cert names every one of names and ips.
func covers(cert *x509.Certificate, names []string, ips []netip.Addr) bool {
	if cert == nil {
		return false
	}
	for _, n := range names {
		if !slices.Contains(cert.DNSNames, n) {
			return false
		}
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(cert.IPAddresses, func(c net.IP) bool { return c.Equal(ip.AsSlice()) }) {
			return false
		}
	}
	return true
}

// generate makes an ECDSA P-256 certificate for names and ips, signed by
// its own key, in PEM.
func generate(names []string, ips []netip.Addr) (certPEM, keyPEM string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return "", "", fmt.Errorf("generate serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: names[0], Organization: []string{"switchboard (self-signed)"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(selfSignedLifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              names,
	}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip.AsSlice())
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", fmt.Errorf("create certificate: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", fmt.Errorf("marshal key: %w", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})), nil
}

// interfaceIPs returns every address of the host's interfaces (link-local
// IPv6 ones excepted: they need a zone, which a certificate cannot name).
func interfaceIPs() []netip.Addr {
	var out []netip.Addr
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipn.IP)
		if !ok || ip.Unmap().IsLinkLocalUnicast() {
			continue
		}
		out = append(out, ip.Unmap())
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

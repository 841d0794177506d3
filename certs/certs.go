package certs

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/switchboard/switchboard/internal/fielderr"
	"github.com/switchboard/switchboard/internal/lifecycle"
)

// Config configures a Source. With CertFile and KeyFile the Source serves
// that pair; with ACME.Domains it obtains certificates over ACME; with
// neither it serves a self-signed certificate kept in DB.
type Config struct {
	// CertFile and KeyFile are a PEM certificate chain and its private
	// key. They are reloaded when either file changes (checked on a TLS
	// handshake at most every ReloadInterval).
	CertFile, KeyFile string
	// ReloadInterval bounds how often handshakes look at the files. Zero
	// means 2 s.
	ReloadInterval time.Duration

	// ACME obtains and renews certificates for its Domains.
	ACME ACMEConfig

	// DB keeps the self-signed certificate (required).
	DB *sql.DB
	// Names and IPs are what the self-signed certificate is for. Nil
	// Names means the host name and "localhost"; nil IPs means every
	// address of the host's interfaces.
	Names []string
	IPs   []netip.Addr

	// Logger receives what the Source does. Nil means slog.Default().
	Logger *slog.Logger
}

// ACMEConfig is the ACME part of a Config.
type ACMEConfig struct {
	// Domains are the names to obtain a certificate for; none: no ACME.
	Domains []string
	// Email is the ACME account's contact (optional).
	Email string
	// Directory is the ACME directory URL. Empty means Let's Encrypt.
	Directory string
	// CARoot is a PEM file of roots to trust when talking to Directory (a
	// private ACME CA such as pebble). Empty means the system's roots.
	CARoot string
	// StorageDir holds certmagic's account, keys and certificates
	// (required with Domains).
	StorageDir string
	// ListenHost, HTTPPort and TLSPort are where the switch answers the
	// HTTP-01 (plain HTTP listener) and TLS-ALPN-01 (HTTPS listener)
	// challenges. A zero port disables that challenge.
	ListenHost        string
	HTTPPort, TLSPort int
	// RenewCheckInterval is how often certmagic checks for renewal. Zero
	// means the environment's SWITCHBOARD_ACME_RENEW_CHECK (a Go duration;
	// see the package documentation), else certmagic's default (10
	// minutes).
	RenewCheckInterval time.Duration
	// RenewalWindowRatio is the part of a certificate's lifetime left at
	// which it is renewed. Zero means certmagic's default (1/3).
	RenewalWindowRatio float64
}

// Validate checks c, naming a bad field.
func (c Config) Validate() error {
	if (c.CertFile == "") != (c.KeyFile == "") {
		if c.CertFile == "" {
			return fielderr.New("CertFile", "needed with a key file")
		}
		return fielderr.New("KeyFile", "needed with a certificate file")
	}
	if c.DB == nil {
		return fielderr.New("DB", "required")
	}
	if c.ReloadInterval < 0 {
		return fielderr.New("ReloadInterval", "must not be negative")
	}
	if len(c.ACME.Domains) > 0 && c.ACME.StorageDir == "" {
		return fielderr.New("ACME.StorageDir", "required with ACME domains")
	}
	for _, d := range c.ACME.Domains {
		if d == "" || strings.ContainsAny(d, " /:@") {
			return fielderr.New("ACME.Domains", "%q is not a host name", d)
		}
	}
	if r := c.ACME.RenewalWindowRatio; r < 0 || r >= 1 {
		return fielderr.New("ACME.RenewalWindowRatio", "must be within [0, 1)")
	}
	return nil
}

// Source hands out the switch's certificate on every TLS handshake.
type Source struct {
	cfg  Config
	log  *slog.Logger
	self *tls.Certificate // self-signed fallback
	file *fileCert        // nil without files
	acme *acmeManager     // nil without ACME domains

	done     chan struct{} // closed by Shutdown
	stopOnce sync.Once
}

// New loads or creates the certificates cfg asks for: a configured file
// pair that cannot be used is an error; ACME starts in Serve.
func New(ctx context.Context, cfg Config) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	if cfg.ReloadInterval == 0 {
		cfg.ReloadInterval = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Source{cfg: cfg, log: cfg.Logger.With("component", "certs"), done: make(chan struct{})}
	if cfg.CertFile != "" {
		f, err := loadFileCert(cfg.CertFile, cfg.KeyFile, cfg.ReloadInterval, s.log)
		if err != nil {
			return nil, err
		}
		s.file = f
		s.log.Info("certificate from files", "cert", cfg.CertFile, "sha256", Fingerprint(f.current().Leaf))
	} else {
		self, err := selfSigned(ctx, cfg.DB, cfg.Names, cfg.IPs, s.log)
		if err != nil {
			return nil, err
		}
		s.self = self
	}
	if len(cfg.ACME.Domains) > 0 {
		m, err := newACME(cfg.ACME, s.log)
		if err != nil {
			return nil, err
		}
		s.acme = m
	}
	return s, nil
}

// Serve obtains and renews the ACME certificates (in the background,
// retried with backoff: a failure is logged, never fatal) until ctx ends
// or Shutdown; without ACME it only waits.
func (s *Source) Serve(ctx context.Context) error {
	if s.acme != nil {
		if err := s.acme.start(ctx); err != nil {
			return err
		}
	}
	return lifecycle.Wait(ctx, s.done)
}

// Shutdown stops ACME maintenance and ends Serve. Calling it twice is
// harmless.
func (s *Source) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() {
		close(s.done)
		if s.acme != nil {
			s.acme.stop()
		}
	})
	return nil
}

// Trusted reports whether the certificate served is meant to be publicly
// trusted (ACME, or files the operator gave), so that HSTS may be sent.
func (s *Source) Trusted() bool { return s.acme != nil || s.file != nil }

// TLSConfig returns a server TLS configuration (for SIP over TLS, TURN over
// TLS) whose handshakes get the Source's current certificate.
func (s *Source) TLSConfig() *tls.Config {
	return &tls.Config{GetCertificate: s.GetCertificate, MinVersion: tls.VersionTLS12}
}

// HTTPSConfig is TLSConfig for the HTTPS listener: with ACME it also
// answers TLS-ALPN-01 challenges (RFC 8737), so it offers "acme-tls/1".
func (s *Source) HTTPSConfig() *tls.Config {
	c := s.TLSConfig()
	c.NextProtos = []string{"http/1.1"}
	if s.acme != nil {
		c.NextProtos = append(c.NextProtos, "acme-tls/1")
	}
	return c
}

// HTTPChallengeHandler answers ACME HTTP-01 challenges (RFC 8555 §8.3) on
// the plain HTTP listener and passes every other request to next.
func (s *Source) HTTPChallengeHandler(next http.Handler) http.Handler {
	if s.acme == nil {
		return next
	}
	return s.acme.issuer.HTTPChallengeHandler(next)
}

// GetCertificate is tls.Config.GetCertificate: the ACME certificate once
// it exists (for any SNI name: certmagic's default name covers unknown
// ones), else the file's, else the self-signed one.
func (s *Source) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if s.acme != nil {
		c, err := s.acme.magic.GetCertificate(hello)
		if err == nil {
			return c, nil
		}
		if isALPNChallenge(hello) {
			return nil, err
		}
	}
	if s.file != nil {
		return s.file.get(), nil
	}
	if s.self != nil {
		return s.self, nil
	}
	return nil, errors.New("certs: no certificate yet")
}

func isALPNChallenge(hello *tls.ClientHelloInfo) bool {
	for _, p := range hello.SupportedProtos {
		if p == "acme-tls/1" {
			return true
		}
	}
	return false
}

// Fingerprint is the SHA-256 of a certificate's DER, in hex with colons as
// browsers show it.
func Fingerprint(c *x509.Certificate) string {
	if c == nil {
		return ""
	}
	sum := sha256.Sum256(c.Raw)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

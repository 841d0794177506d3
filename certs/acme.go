package certs

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// acmeManager obtains and renews certificates over ACME (RFC 8555)
// through certmagic, which retries a failed issuance with backoff and
// renews in the background from its cache's maintenance goroutine.
type acmeManager struct {
	domains []string
	log     *slog.Logger
	cache   *certmagic.Cache
	magic   *certmagic.Config
	issuer  *certmagic.ACMEIssuer
	// renewCheck is the renewal check interval given to certmagic (zero:
	// its default).
	renewCheck time.Duration

	mu     sync.Mutex
	cancel context.CancelFunc // ends ManageAsync's retries
}

// renewCheckEnv names the environment variable that sets
// ACMEConfig.RenewCheckInterval when the config leaves it zero (see the
// package documentation).
const renewCheckEnv = "SWITCHBOARD_ACME_RENEW_CHECK"

// renewCheckFromEnv returns the interval renewCheckEnv gives, or zero when
// it is unset or empty.
func renewCheckFromEnv() (time.Duration, error) {
	v := os.Getenv(renewCheckEnv)
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("certs: %s=%q: %w", renewCheckEnv, v, err)
	}
	if d <= 0 {
		return 0, fmt.Errorf("certs: %s=%q: must be positive", renewCheckEnv, v)
	}
	return d, nil
}

// newACME prepares certmagic for cfg; nothing is requested before start.
func newACME(cfg ACMEConfig, log *slog.Logger) (*acmeManager, error) {
	m := &acmeManager{domains: cfg.Domains, log: log}
	if cfg.RenewCheckInterval == 0 {
		d, err := renewCheckFromEnv()
		if err != nil {
			return nil, err
		}
		if d > 0 {
			log.Info("ACME: renewal check interval from the environment (a test and operations knob)", "env", renewCheckEnv, "interval", d)
		}
		cfg.RenewCheckInterval = d
	}
	m.renewCheck = cfg.RenewCheckInterval
	zl := zap.New(&zapToSlog{h: log.Handler()})
	var roots *x509.CertPool
	if cfg.CARoot != "" {
		pem, err := os.ReadFile(cfg.CARoot)
		if err != nil {
			return nil, fmt.Errorf("certs: ACME CA root: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("certs: ACME CA root %s: no PEM certificate in it", cfg.CARoot)
		}
	}
	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   func(certmagic.Certificate) (*certmagic.Config, error) { return m.magic, nil },
		RenewCheckInterval: cfg.RenewCheckInterval,
		Logger:             zl,
	})
	m.magic = certmagic.New(m.cache, certmagic.Config{
		Storage:            &certmagic.FileStorage{Path: cfg.StorageDir},
		RenewalWindowRatio: cfg.RenewalWindowRatio,
		DefaultServerName:  cfg.Domains[0], // clients that send no SNI (IP URLs)
		FallbackServerName: cfg.Domains[0], // and unknown names
		Logger:             zl,
		OnEvent:            m.onEvent,
	})
	ca := cfg.Directory
	if ca == "" {
		ca = certmagic.LetsEncryptProductionCA
	}
	m.issuer = certmagic.NewACMEIssuer(m.magic, certmagic.ACMEIssuer{
		CA:                      ca,
		Email:                   cfg.Email,
		Agreed:                  true,
		TrustedRoots:            roots,
		ListenHost:              cfg.ListenHost,
		AltHTTPPort:             cfg.HTTPPort,
		AltTLSALPNPort:          cfg.TLSPort,
		DisableHTTPChallenge:    cfg.HTTPPort == 0,
		DisableTLSALPNChallenge: cfg.TLSPort == 0,
		Logger:                  zl,
	})
	m.magic.Issuers = []certmagic.Issuer{m.issuer}
	return m, nil
}

// start begins managing the domains in the background until stop or ctx
// ends: a certificate in storage is loaded at once, a missing or expiring
// one obtained, with retries.
func (m *acmeManager) start(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	ctx, m.cancel = context.WithCancel(ctx)
	if err := m.magic.ManageAsync(ctx, m.domains); err != nil {
		return fmt.Errorf("certs: ACME for %v: %w", m.domains, err)
	}
	m.log.Info("ACME: managing certificates", "domains", m.domains, "directory", m.issuer.CA)
	return nil
}

// stop ends retries and the cache's maintenance goroutine.
func (m *acmeManager) stop() {
	m.mu.Lock()
	if m.cancel != nil {
		m.cancel()
	}
	m.mu.Unlock()
	m.cache.Stop()
}

// onEvent logs the outcome of each issuance and renewal once, in plain
// words (certmagic's own logs go to debug).
func (m *acmeManager) onEvent(_ context.Context, event string, data map[string]any) error {
	switch event {
	case "cert_obtained":
		m.log.Info("ACME: certificate obtained", "identifier", data["identifier"], "renewal", data["renewal"], "issuer", data["issuer"])
	case "cert_failed":
		m.log.Error("ACME: certificate not obtained; retrying in the background (the current certificate keeps serving)",
			"identifier", data["identifier"], "renewal", data["renewal"], "error", data["error"])
	}
	return nil
}

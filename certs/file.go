package certs

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// fileCert is a certificate and key kept in PEM files, reloaded when
// either file's modification time or size changes. The check runs on a
// handshake, at most every interval, so a replaced pair is served from the
// next handshake after that without a restart.
type fileCert struct {
	certPath, keyPath string
	interval          time.Duration
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   [2]fileStamp
	checked time.Time
}

// fileStamp is what tells that a file changed.
type fileStamp struct {
	mod  time.Time
	size int64
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{fi.ModTime(), fi.Size()}, nil
}

// loadFileCert loads the pair; an unusable pair is an error naming the
// files.
func loadFileCert(certPath, keyPath string, interval time.Duration, log *slog.Logger) (*fileCert, error) {
	f := &fileCert{certPath: certPath, keyPath: keyPath, interval: interval, log: log}
	if err := f.load(); err != nil {
		return nil, err
	}
	return f, nil
}

// load reads both files and parses them; f.cert is kept on failure.
func (f *fileCert) load() error {
	s1, err1 := stampOf(f.certPath)
	s2, err2 := stampOf(f.keyPath)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("certificate %s, key %s: %w", f.certPath, f.keyPath, firstErr(err1, err2))
	}
	c, err := tls.LoadX509KeyPair(f.certPath, f.keyPath)
	if err != nil {
		return fmt.Errorf("certificate %s, key %s: %w", f.certPath, f.keyPath, err)
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return fmt.Errorf("certificate %s: %w", f.certPath, err)
		}
	}
	f.cert, f.stamp = &c, [2]fileStamp{s1, s2}
	f.warnValidity(time.Now())
	return nil
}

// warnValidity says, once per load, when the loaded certificate is outside
// its validity period: browsers and phones will refuse it, but it is what
// the operator gave, so it is served until the files change.
func (f *fileCert) warnValidity(now time.Time) {
	leaf := f.cert.Leaf
	switch {
	case now.After(leaf.NotAfter):
		f.log.Warn("certificate has expired: clients will refuse it; replace the files (they are reloaded)",
			"cert", f.certPath, "expired", leaf.NotAfter)
	case now.Before(leaf.NotBefore):
		f.log.Warn("certificate is not valid yet (is the clock right?)", "cert", f.certPath, "valid_from", leaf.NotBefore)
	}
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func (f *fileCert) current() *tls.Certificate {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cert
}

// get returns the pair to serve, reloading it first when the files
// changed since the last look (at most every interval). A pair that no
// longer loads is logged and the previous one kept.
func (f *fileCert) get() *tls.Certificate {
	f.mu.Lock()
	defer f.mu.Unlock()
	if time.Since(f.checked) < f.interval {
		return f.cert
	}
	f.checked = time.Now()
	s1, err1 := stampOf(f.certPath)
	s2, err2 := stampOf(f.keyPath)
	if err1 == nil && err2 == nil && [2]fileStamp{s1, s2} == f.stamp {
		return f.cert
	}
	if err := f.load(); err != nil {
		// Not again until the files change once more (a pair being
		// written one file at a time loads once both are in place).
		f.stamp = [2]fileStamp{s1, s2}
		f.log.Error("certificate files changed but cannot be used: keeping the previous certificate", "error", err)
		return f.cert
	}
	f.log.Info("certificate reloaded", "cert", f.certPath, "sha256", Fingerprint(f.cert.Leaf), "expires", f.cert.Leaf.NotAfter)
	return f.cert
}

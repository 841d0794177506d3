package main

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/switchboard/switchboard/configs"
	"github.com/switchboard/switchboard/registrar"
	"github.com/switchboard/switchboard/sip"
)

// fileConfig is the schema of configs/switchboard.yaml. This is the only
// place that knows it; each package gets its own Config from it.
type fileConfig struct {
	Domain   string `yaml:"domain"`
	Database string `yaml:"database"`
	Log      struct {
		Level  string `yaml:"level"`
		Format string `yaml:"format"`
	} `yaml:"log"`
	SIP struct {
		Listen    []string `yaml:"listen"`
		Advertise string   `yaml:"advertise"`
		TLS       struct {
			Cert string `yaml:"cert"`
			Key  string `yaml:"key"`
		} `yaml:"tls"`
		MaxMessageSize int           `yaml:"max_message_size"`
		TimerC         time.Duration `yaml:"timer_c"`
	} `yaml:"sip"`
	HTTP struct {
		Listen string `yaml:"listen"`
	} `yaml:"http"`
	Registrar struct {
		DefaultExpires int `yaml:"default_expires"`
		MinExpires     int `yaml:"min_expires"`
		MaxExpires     int `yaml:"max_expires"`
		MaxContacts    int `yaml:"max_contacts"`
	} `yaml:"registrar"`
	Security struct {
		AuthFailures int           `yaml:"auth_failures"`
		AuthWindow   time.Duration `yaml:"auth_window"`
		Ban          time.Duration `yaml:"ban"`
		NonceTTL     time.Duration `yaml:"nonce_ttl"`
		Algorithms   []string      `yaml:"digest_algorithms"`
	} `yaml:"security"`
}

// loadConfig decodes the embedded defaults, then path (if any) strictly over
// them: an unknown key or a value of the wrong type is an error naming it.
func loadConfig(path string) (*fileConfig, error) {
	var c fileConfig
	if err := decodeStrict(configs.Default, &c); err != nil {
		return nil, fmt.Errorf("embedded default config: %w", err)
	}
	if path == "" {
		return &c, c.check()
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	if err := decodeStrict(data, &c); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return &c, c.check()
}

func decodeStrict(data []byte, into any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(into); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // an empty file changes nothing
		}
		return err
	}
	return nil
}

// check validates what the packages' own validation cannot name well.
func (c *fileConfig) check() error {
	if c.Domain == "" {
		return errors.New("domain: must not be empty")
	}
	if strings.ContainsAny(c.Domain, " :;@<>") {
		return fmt.Errorf("domain: %q is not a host name", c.Domain)
	}
	if c.Database == "" {
		return errors.New("database: must not be empty")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log.level: %q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return fmt.Errorf("log.format: %q is not text or json", c.Log.Format)
	}
	if len(c.SIP.Listen) == 0 && c.HTTP.Listen == "" {
		return errors.New("sip.listen: no SIP listener and no http.listen for WebSocket")
	}
	for i, l := range c.SIP.Listen {
		if _, err := sip.ParseListen(l); err != nil {
			return fmt.Errorf("sip.listen[%d]: %w", i, err)
		}
		if strings.HasPrefix(l, "tls://") && (c.SIP.TLS.Cert == "" || c.SIP.TLS.Key == "") {
			return fmt.Errorf("sip.listen[%d]: %s needs sip.tls.cert and sip.tls.key", i, l)
		}
	}
	if c.SIP.TimerC < time.Second {
		return fmt.Errorf("sip.timer_c: %s is too short", c.SIP.TimerC)
	}
	if c.Registrar.MinExpires <= 0 || c.Registrar.MaxExpires < c.Registrar.MinExpires ||
		c.Registrar.DefaultExpires < c.Registrar.MinExpires || c.Registrar.DefaultExpires > c.Registrar.MaxExpires {
		return fmt.Errorf("registrar: need 0 < min_expires (%d) <= default_expires (%d) <= max_expires (%d)",
			c.Registrar.MinExpires, c.Registrar.DefaultExpires, c.Registrar.MaxExpires)
	}
	if c.Registrar.MaxContacts < 1 {
		return errors.New("registrar.max_contacts: must be at least 1")
	}
	if len(c.Security.Algorithms) == 0 {
		return errors.New("security.digest_algorithms: offer at least one of MD5, SHA-256")
	}
	for i, a := range c.Security.Algorithms {
		if a != registrar.AlgMD5 && a != registrar.AlgSHA256 {
			return fmt.Errorf("security.digest_algorithms[%d]: %q is not MD5 or SHA-256", i, a)
		}
	}
	if c.Security.AuthWindow <= 0 || c.Security.Ban <= 0 || c.Security.NonceTTL <= 0 {
		return errors.New("security: auth_window, ban and nonce_ttl must be positive durations")
	}
	return nil
}

func (c *fileConfig) registrarConfig() registrar.Config {
	failures := c.Security.AuthFailures
	if failures == 0 {
		failures = -1 // 0 in the file means "never ban"
	}
	return registrar.Config{
		Realm:          c.Domain,
		DefaultExpires: time.Duration(c.Registrar.DefaultExpires) * time.Second,
		MinExpires:     time.Duration(c.Registrar.MinExpires) * time.Second,
		MaxExpires:     time.Duration(c.Registrar.MaxExpires) * time.Second,
		MaxContacts:    c.Registrar.MaxContacts,
		NonceTTL:       c.Security.NonceTTL,
		AuthFailures:   failures,
		AuthWindow:     c.Security.AuthWindow,
		Ban:            c.Security.Ban,
		Algorithms:     c.Security.Algorithms,
	}
}

func (c *fileConfig) sipConfig() (sip.Config, error) {
	sc := sip.Config{
		Domain:         c.Domain,
		Advertise:      c.SIP.Advertise,
		MaxMessageSize: c.SIP.MaxMessageSize,
		TimerC:         c.SIP.TimerC,
	}
	for _, l := range c.SIP.Listen {
		pl, _ := sip.ParseListen(l)
		sc.Listen = append(sc.Listen, pl)
	}
	if c.SIP.TLS.Cert != "" || c.SIP.TLS.Key != "" {
		cert, err := tls.LoadX509KeyPair(c.SIP.TLS.Cert, c.SIP.TLS.Key)
		if err != nil {
			return sc, fmt.Errorf("sip.tls: %w", err)
		}
		sc.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	return sc, nil
}

package main

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard/switchboard/internal/fielderr"
	"github.com/switchboard/switchboard/internal/natdetect"

	"gopkg.in/yaml.v3"

	"github.com/pion/webrtc/v4"

	"github.com/switchboard/switchboard/certs"
	"github.com/switchboard/switchboard/configs"
	"github.com/switchboard/switchboard/gateway"
	"github.com/switchboard/switchboard/media"
	"github.com/switchboard/switchboard/media/turn"
	"github.com/switchboard/switchboard/registrar"
	"github.com/switchboard/switchboard/sip"
)

// fileConfig is the schema of configs/switchboard.yaml. This is the only
// place that knows it; each package gets its own Config from it.
type fileConfig struct {
	Domain        string        `yaml:"domain"`
	Database      string        `yaml:"database"`
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
	Runtime       runtimeConfig `yaml:"runtime"`
	Log           struct {
		Level  string `yaml:"level"`
		Format string `yaml:"format"`
	} `yaml:"log"`
	SIP struct {
		Listen    []string `yaml:"listen"`
		Advertise string   `yaml:"advertise"`
		// Advertise6 is Advertise for IPv6 peers of listeners bound to ::.
		Advertise6 string `yaml:"advertise6"`
		TLS        struct {
			Cert string `yaml:"cert"`
			Key  string `yaml:"key"`
		} `yaml:"tls"`
		MaxMessageSize  int           `yaml:"max_message_size"`
		TimerC          time.Duration `yaml:"timer_c"`
		MaxTransactions int           `yaml:"max_transactions"`
		Connections     struct {
			IdleTimeout  time.Duration `yaml:"idle_timeout"`
			MaxPerSource int           `yaml:"max_per_source"`
			Max          int           `yaml:"max"`
		} `yaml:"connections"`
	} `yaml:"sip"`
	HTTP struct {
		Listen         string   `yaml:"listen"`
		AllowedOrigins []string `yaml:"allowed_origins"`
		Metrics        string   `yaml:"metrics"`
		HTTPS          struct {
			Listen string `yaml:"listen"`
			Cert   string `yaml:"cert"`
			Key    string `yaml:"key"`
			ACME   struct {
				Domains   []string `yaml:"domains"`
				Email     string   `yaml:"email"`
				Directory string   `yaml:"directory"`
				CARoot    string   `yaml:"ca_root"`
			} `yaml:"acme"`
		} `yaml:"https"`
	} `yaml:"http"`
	Media struct {
		PublicIP string `yaml:"public_ip"`
		BindIP   string `yaml:"bind_ip"`
		RTPPorts string `yaml:"rtp_ports"`
		// PublicIP6 is the relay's address for IPv6 parties.
		PublicIP6 string        `yaml:"public_ip6"`
		Relay     string        `yaml:"relay"`
		Timeout   time.Duration `yaml:"timeout"`
		// ICETimeout bounds a WebRTC leg's ICE check and DTLS handshake.
		ICETimeout time.Duration `yaml:"ice_timeout"`
	} `yaml:"media"`
	TURN struct {
		Enabled    bool     `yaml:"enabled"`
		Listen     []string `yaml:"listen"`
		PublicIP   string   `yaml:"public_ip"`
		RelayPorts string   `yaml:"relay_ports"`
		// PublicIP6, when set, offers IPv6 relays (RFC 6156) at it.
		PublicIP6             string   `yaml:"public_ip6"`
		Secret                string   `yaml:"secret"`
		AllowPeers            []string `yaml:"allow_peers"`
		MaxAllocationsPerUser int      `yaml:"max_allocations_per_user"`
		// AllocateRate: authenticated Allocate requests per second per
		// source IP (burst twice that); negative: no limit.
		AllocateRate int `yaml:"allocate_rate"`
	} `yaml:"turn"`
	WebRTC struct {
		Enabled       bool          `yaml:"enabled"`
		SIPPort       int           `yaml:"sip_port"`
		ICEIPs        []string      `yaml:"ice_ips"`
		PublicIP      string        `yaml:"public_ip"`
		UDPPorts      string        `yaml:"udp_ports"`
		RingTimeout   time.Duration `yaml:"ring_timeout"`
		AnswerTimeout time.Duration `yaml:"answer_timeout"`
	} `yaml:"webrtc"`
	Registrar struct {
		DefaultExpires int `yaml:"default_expires"`
		MinExpires     int `yaml:"min_expires"`
		MaxExpires     int `yaml:"max_expires"`
		MaxContacts    int `yaml:"max_contacts"`
	} `yaml:"registrar"`
	NAT struct {
		Detect            []string      `yaml:"detect"`
		KeepaliveInterval time.Duration `yaml:"keepalive_interval"`
		KeepaliveMethod   string        `yaml:"keepalive_method"`
		KeepaliveFailures int           `yaml:"keepalive_failures"`
	} `yaml:"nat"`
	Security struct {
		AuthFailures int           `yaml:"auth_failures"`
		AuthWindow   time.Duration `yaml:"auth_window"`
		Ban          time.Duration `yaml:"ban"`
		NonceTTL     time.Duration `yaml:"nonce_ttl"`
		Algorithms   []string      `yaml:"digest_algorithms"`
		MD5Only      []string      `yaml:"md5_only_user_agents"`
		SHA256UA     []string      `yaml:"sha256_user_agents"`

		AuthFailuresPerUser int `yaml:"auth_failures_per_user"` // per-user budget of the shared guard
		// Strangers: parties that are not local users.
		ExternalCallers        bool    `yaml:"external_callers"`
		ExternalCallsPerSource int     `yaml:"external_calls_per_source"`
		ExternalCallRate       float64 `yaml:"external_call_rate"`
		Flood                  struct {
			Requests int           `yaml:"requests"`
			Window   time.Duration `yaml:"window"`
			Ban      time.Duration `yaml:"ban"`
			Exempt   []string      `yaml:"exempt"`
		} `yaml:"flood"`
	} `yaml:"security"`
	Console consoleConfig `yaml:"console"` // the operations console (console.go)
	HEP     hepConfig     `yaml:"hep"`
	// SIP trunks, numbers, dial plan and limits (trunks.go).
	Trunks   []trunkFileConfig   `yaml:"trunks"`
	Numbers  map[string][]string `yaml:"numbers"`
	Dialplan dialplanFileConfig  `yaml:"dialplan"`
	Limits   limitsFileConfig    `yaml:"limits"`
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
		var te *yaml.TypeError
		if errors.As(err, &te) {
			return namedTypeError(data, te)
		}
		return err
	}
	return nil
}

// namedTypeError rewrites yaml.v3's "line N: cannot unmarshal ..." errors
// so that each names the key at that line (e.g. registrar.min_expires).
func namedTypeError(data []byte, te *yaml.TypeError) error {
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil {
		return te
	}
	keys := map[int]string{}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := k.Value
				if path != "" {
					p = path + "." + k.Value
				}
				keys[k.Line] = p
				if _, ok := keys[v.Line]; !ok || v.Line != k.Line {
					keys[v.Line] = p
				}
				walk(v, p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := fmt.Sprintf("%s[%d]", path, i)
				keys[c.Line] = p
				walk(c, p)
			}
		}
	}
	walk(&root, "")
	msgs := make([]string, 0, len(te.Errors))
	for _, e := range te.Errors {
		var line int
		if _, err := fmt.Sscanf(e, "line %d:", &line); err == nil {
			if k, ok := keys[line]; ok {
				e = k + ": " + e
			}
		}
		msgs = append(msgs, e)
	}
	return errors.New(strings.Join(msgs, "; "))
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
	}
	if c.ShutdownGrace < 0 {
		return errors.New("shutdown_grace: must not be negative")
	}
	if err := c.Runtime.check(); err != nil {
		return err
	}
	// A 0 in the file is a 0, but to a package's Config it means "the
	// default": these zeros are refused here (the packages' own rules,
	// such as negative values, are checked by their Validate below).
	if c.SIP.MaxTransactions == 0 {
		return errors.New("sip.max_transactions: must be at least 1")
	}
	if sc := c.SIP.Connections; sc.IdleTimeout == 0 || sc.MaxPerSource == 0 {
		return errors.New("sip.connections: idle_timeout must be positive and max_per_source at least 1")
	}
	if c.Security.ExternalCallsPerSource == 0 || c.Security.ExternalCallRate == 0 {
		return errors.New("security: external_calls_per_source must be at least 1 and external_call_rate positive")
	}
	if c.Security.Flood.Requests == 0 || c.Security.Flood.Window == 0 || c.Security.Flood.Ban == 0 {
		return errors.New("security.flood: requests must not be 0 (negative: no limit), window and ban must be positive")
	}
	for i, p := range c.Security.Flood.Exempt {
		if _, err := netip.ParsePrefix(p); err != nil {
			return fmt.Errorf("security.flood.exempt[%d]: %q is not a CIDR prefix", i, p)
		}
	}
	if _, _, err := parseRange(c.Media.RTPPorts); err != nil {
		return fmt.Errorf("media.rtp_ports: %w", err)
	}
	if c.Media.PublicIP6 != "" {
		if ip, err := netip.ParseAddr(c.Media.PublicIP6); err != nil || !ip.Is6() || ip.Is4In6() {
			return fmt.Errorf("media.public_ip6: %q is not an IPv6 address", c.Media.PublicIP6)
		}
	}
	if c.Media.ICETimeout < 0 {
		return errors.New("media.ice_timeout: must not be negative")
	}
	if c.Media.Timeout < 0 {
		return errors.New("media.timeout: must not be negative")
	}
	if c.TURN.Enabled {
		if _, _, err := parseRange(c.TURN.RelayPorts); err != nil {
			return fmt.Errorf("turn.relay_ports: %w", err)
		}
		if c.TURN.AllocateRate == 0 {
			return errors.New("turn.allocate_rate: must not be 0 (negative: no limit)")
		}
		if c.TURN.PublicIP != "" {
			if _, err := netip.ParseAddr(c.TURN.PublicIP); err != nil {
				return fmt.Errorf("turn.public_ip: %q is not an IP address", c.TURN.PublicIP)
			}
		}
		if c.TURN.PublicIP6 != "" {
			if ip, err := netip.ParseAddr(c.TURN.PublicIP6); err != nil || !ip.Is6() || ip.Is4In6() {
				return fmt.Errorf("turn.public_ip6: %q is not an IPv6 address", c.TURN.PublicIP6)
			}
		}
		for i, p := range c.TURN.AllowPeers {
			if _, err := netip.ParsePrefix(p); err != nil {
				return fmt.Errorf("turn.allow_peers[%d]: %q is not a CIDR prefix", i, p)
			}
		}
	}
	if c.WebRTC.Enabled {
		if err := c.checkWebRTC(); err != nil {
			return err
		}
	}
	if err := c.checkNAT(); err != nil {
		return err
	}
	if c.Registrar.MinExpires == 0 || c.Registrar.MaxContacts == 0 {
		return errors.New("registrar: min_expires and max_contacts must be at least 1")
	}
	if len(c.Security.Algorithms) == 0 {
		return errors.New("security.digest_algorithms: offer at least one of MD5, SHA-256")
	}
	if c.Security.AuthWindow == 0 || c.Security.Ban == 0 || c.Security.NonceTTL == 0 {
		return errors.New("security: auth_window, ban and nonce_ttl must be positive durations")
	}
	if err := c.checkHTTP(); err != nil {
		return err
	}
	if err := c.checkConsole(); err != nil {
		return err
	}
	if err := c.checkTrunks(); err != nil {
		return err
	}
	return c.checkComponents()
}

// sipKeys and registrarKeys name, by configuration key, the fields of the
// packages' Configs that their Validate may report.
var (
	sipKeys = map[string]string{
		"Domain": "domain", "TLS": "sip.tls.cert", "Advertise": "sip.advertise", "Advertise6": "sip.advertise6",
		"MaxMessageSize": "sip.max_message_size", "MediaMode": "media.relay", "TimerC": "sip.timer_c",
		"ExternalCallsPerSource": "security.external_calls_per_source", "ExternalCallRate": "security.external_call_rate",
		"MaxTransactions": "sip.max_transactions", "Flood.Window": "security.flood.window", "Flood.Ban": "security.flood.ban",
		"Connections.IdleTimeout": "sip.connections.idle_timeout", "Connections.MaxPerSource": "sip.connections.max_per_source",
		"Connections.Max":       "sip.connections.max",
		"NAT.KeepaliveInterval": "nat.keepalive_interval", "NAT.KeepaliveMethod": "nat.keepalive_method",
		"NAT.KeepaliveFailures": "nat.keepalive_failures",
	}
	registrarKeys = map[string]string{
		"Realm": "domain", "MinExpires": "registrar.min_expires", "DefaultExpires": "registrar.default_expires",
		"MaxExpires": "registrar.max_expires", "MaxContacts": "registrar.max_contacts", "NonceTTL": "security.nonce_ttl",
		"AuthWindow": "security.auth_window", "Ban": "security.ban", "Algorithms": "security.digest_algorithms",
		"FlowTimer": "nat.keepalive_interval",
	}
)

// checkComponents runs the packages' own validation on the Configs built
// from the file, naming what they report by its key.
func (c *fileConfig) checkComponents() error {
	if err := fielderr.Named("registrar", registrarKeys, c.registrarConfig().Validate()); err != nil {
		return err
	}
	sc, err := c.sipConfig()
	if err != nil {
		return err
	}
	if sc.TLS == nil {
		sc.TLS = &tls.Config{} // the shared certificate (certs), made at start
	}
	return fielderr.Named("sip", sipKeys, sc.Validate())
}

// parseRange parses "min-max" port ranges.
func parseRange(s string) (int, int, error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, fmt.Errorf("%q: want MIN-MAX", s)
	}
	lo, err1 := strconv.Atoi(strings.TrimSpace(a))
	hi, err2 := strconv.Atoi(strings.TrimSpace(b))
	if err1 != nil || err2 != nil || lo < 1024 || hi > 65535 || hi-lo < 3 {
		return 0, 0, fmt.Errorf("%q: want MIN-MAX within 1024-65535 with at least 4 ports", s)
	}
	return lo, hi, nil
}

func (c *fileConfig) mediaConfig() media.Config {
	lo, hi, _ := parseRange(c.Media.RTPPorts)
	return media.Config{PublicIP: c.Media.PublicIP, PublicIP6: c.Media.PublicIP6, BindIP: c.Media.BindIP, PortMin: lo, PortMax: hi, Timeout: c.Media.Timeout,
		ICETimeout: c.Media.ICETimeout}
}

// turnConfig builds the TURN server's config; secret is the REST secret
// (from the file, or generated and stored in the database).
func (c *fileConfig) turnConfig(secret string, tlsCfg *tls.Config) turn.Config {
	lo, hi, _ := parseRange(c.TURN.RelayPorts)
	tc := turn.Config{
		Realm:                 c.Domain,
		Listen:                c.TURN.Listen,
		TLSConfig:             tlsCfg,
		RelayPortMin:          uint16(lo),
		RelayPortMax:          uint16(hi),
		Secret:                []byte(secret),
		MaxAllocationsPerUser: c.TURN.MaxAllocationsPerUser,
		AllocateRate:          c.TURN.AllocateRate,
	}
	if c.TURN.PublicIP != "" {
		tc.PublicIP = netip.MustParseAddr(c.TURN.PublicIP)
	}
	if c.TURN.PublicIP6 != "" {
		tc.PublicIP6 = netip.MustParseAddr(c.TURN.PublicIP6)
	}
	for _, p := range c.TURN.AllowPeers {
		tc.AllowPeers = append(tc.AllowPeers, netip.MustParsePrefix(p))
	}
	return tc
}

func (c *fileConfig) registrarConfig() registrar.Config {
	failures := c.Security.AuthFailures
	if failures == 0 {
		failures = -1 // 0 in the file means "never ban"
	}
	perUser := c.Security.AuthFailuresPerUser
	if perUser == 0 {
		perUser = -1 // 0 in the file means "never ban a user"
	}
	return registrar.Config{
		Realm:             c.Domain,
		DefaultExpires:    time.Duration(c.Registrar.DefaultExpires) * time.Second,
		MinExpires:        time.Duration(c.Registrar.MinExpires) * time.Second,
		MaxExpires:        time.Duration(c.Registrar.MaxExpires) * time.Second,
		MaxContacts:       c.Registrar.MaxContacts,
		NonceTTL:          c.Security.NonceTTL,
		AuthFailures:      failures,
		AuthWindow:        c.Security.AuthWindow,
		Ban:               c.Security.Ban,
		Algorithms:        c.Security.Algorithms,
		MD5OnlyUserAgents: c.Security.MD5Only,
		SHA256UserAgents:  c.Security.SHA256UA,

		AuthFailuresPerUser: perUser,
		NATDetect:           c.natRule(),
		FlowTimer:           c.NAT.KeepaliveInterval.Truncate(time.Second),
	}
}

// checkNAT validates the nat section: its test names here (the packages
// get a parsed rule), its zeros, which the packages would take as defaults.
func (c *fileConfig) checkNAT() error {
	if _, err := natdetect.Parse(c.NAT.Detect); err != nil {
		return fmt.Errorf("nat.detect%w", err)
	}
	if c.NAT.KeepaliveInterval < 0 {
		return errors.New("nat.keepalive_interval: must not be negative (0 turns keep-alives off)")
	}
	if c.NAT.KeepaliveFailures == 0 {
		return errors.New("nat.keepalive_failures: must be at least 1")
	}
	return nil
}

// natRule is nat.detect as the packages take it.
func (c *fileConfig) natRule() natdetect.Rule {
	r, _ := natdetect.Parse(c.NAT.Detect) // checked by checkNAT
	return r
}

// natConfig is the SIP edge's share of the nat section; 0 in the file turns
// keep-alives off.
func (c *fileConfig) natConfig() sip.NATConfig {
	nc := sip.NATConfig{
		Detect:            c.natRule(),
		KeepaliveInterval: c.NAT.KeepaliveInterval,
		KeepaliveMethod:   c.NAT.KeepaliveMethod,
		KeepaliveFailures: c.NAT.KeepaliveFailures,
	}
	if nc.KeepaliveInterval == 0 {
		nc.KeepaliveInterval = -1
	}
	return nc
}

func (c *fileConfig) sipConfig() (sip.Config, error) {
	sc := sip.Config{
		Domain:         c.Domain,
		Advertise:      c.SIP.Advertise,
		Advertise6:     c.SIP.Advertise6,
		MaxMessageSize: c.SIP.MaxMessageSize,
		TimerC:         c.SIP.TimerC,
		MediaMode:      c.Media.Relay,
		ShutdownGrace:  c.ShutdownGrace,

		MaxTransactions:        c.SIP.MaxTransactions,
		ExternalCallers:        c.Security.ExternalCallers,
		ExternalCallsPerSource: c.Security.ExternalCallsPerSource,
		ExternalCallRate:       c.Security.ExternalCallRate,
		Flood: sip.FloodConfig{
			Requests: c.Security.Flood.Requests,
			Window:   c.Security.Flood.Window,
			Ban:      c.Security.Flood.Ban,
		},
		Connections: sip.ConnLimits{
			IdleTimeout:  c.SIP.Connections.IdleTimeout,
			MaxPerSource: c.SIP.Connections.MaxPerSource,
			Max:          c.SIP.Connections.Max,
		},
		NAT: c.natConfig(),
	}
	if sc.ShutdownGrace == 0 {
		sc.ShutdownGrace = time.Nanosecond // 0 means: hang up at once
	}
	for _, p := range c.Security.Flood.Exempt {
		pfx, _ := netip.ParsePrefix(p)
		sc.Flood.Exempt = append(sc.Flood.Exempt, pfx.Masked())
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

func (c *fileConfig) checkWebRTC() error {
	if c.WebRTC.SIPPort < 0 || c.WebRTC.SIPPort > 65535 {
		return fmt.Errorf("webrtc.sip_port: %d is not a port", c.WebRTC.SIPPort)
	}
	for i, s := range c.WebRTC.ICEIPs {
		if _, err := netip.ParseAddr(s); err != nil {
			return fmt.Errorf("webrtc.ice_ips[%d]: %q is not an IP address", i, s)
		}
	}
	if c.WebRTC.PublicIP != "" {
		if _, err := netip.ParseAddr(c.WebRTC.PublicIP); err != nil {
			return fmt.Errorf("webrtc.public_ip: %q is not an IP address", c.WebRTC.PublicIP)
		}
	}
	if c.WebRTC.UDPPorts != "" {
		if lo, hi, err := parseRange(c.WebRTC.UDPPorts); err != nil || hi-lo < 15 {
			return fmt.Errorf("webrtc.udp_ports: %q: want MIN-MAX within 1024-65535 with at least 16 ports", c.WebRTC.UDPPorts)
		}
	}
	if c.WebRTC.RingTimeout < 0 || c.WebRTC.AnswerTimeout < 0 {
		return errors.New("webrtc: ring_timeout and answer_timeout must not be negative")
	}
	return nil
}

// certsConfig is the certificate source's configuration (http.https).
func (c *fileConfig) certsConfig() certs.Config {
	h := c.HTTP.HTTPS
	return certs.Config{
		CertFile: h.Cert,
		KeyFile:  h.Key,
		ACME: certs.ACMEConfig{
			Domains:   h.ACME.Domains,
			Email:     h.ACME.Email,
			Directory: h.ACME.Directory,
			CARoot:    h.ACME.CARoot,
		},
	}
}

// gatewayConfig is the WebRTC gateway's configuration. proxy is the SIP UDP
// listener as the gateway reaches it, listenIP the gateway's own address
// beside it.
func (c *fileConfig) gatewayConfig(proxy, listenIP string, ice func(user string) []webrtc.ICEServer) gateway.Config {
	gc := gateway.Config{
		Domain:        c.Domain,
		ProxyAddr:     proxy,
		ListenIP:      listenIP,
		SIPPort:       c.WebRTC.SIPPort,
		ICEIPs:        c.WebRTC.ICEIPs,
		PublicIP:      c.WebRTC.PublicIP,
		ICEServers:    ice,
		RingTimeout:   c.WebRTC.RingTimeout,
		AnswerTimeout: c.WebRTC.AnswerTimeout,
		// /ws and /sip admit the same web origins (see checkOrigin).
		OriginPatterns: c.HTTP.AllowedOrigins,
	}
	if c.WebRTC.UDPPorts != "" {
		gc.UDPPortMin, gc.UDPPortMax, _ = parseRange(c.WebRTC.UDPPorts)
	}
	return gc
}

// Values of http.metrics.
const (
	metricsLoopback = "loopback"
	metricsOpen     = "open"
	metricsOff      = "off"
)

// checkHTTP validates the http section beyond its listener.
func (c *fileConfig) checkHTTP() error {
	switch c.HTTP.Metrics {
	case metricsLoopback, metricsOpen, metricsOff:
	default:
		return fmt.Errorf("http.metrics: %q is not loopback, open or off", c.HTTP.Metrics)
	}
	if h := c.HTTP.HTTPS; (h.Cert == "") != (h.Key == "") {
		return errors.New("http.https: cert and key go together")
	}
	if h := c.HTTP.HTTPS.Listen; h != "" {
		if _, _, err := net.SplitHostPort(h); err != nil {
			return fmt.Errorf("http.https.listen: %w", err)
		}
	}
	for i, d := range c.HTTP.HTTPS.ACME.Domains {
		if d == "" || strings.ContainsAny(d, " /:@") {
			return fmt.Errorf("http.https.acme.domains[%d]: %q is not a host name", i, d)
		}
	}
	for i, o := range c.HTTP.AllowedOrigins {
		if err := checkOriginPattern(o); err != nil {
			return fmt.Errorf("http.allowed_origins[%d]: %w", i, err)
		}
	}
	return nil
}

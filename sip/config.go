package sip

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard/switchboard/internal/fielderr"

	"github.com/switchboard/switchboard/media"
)

// Listen is one SIP listener.
type Listen struct {
	Transport string // "udp", "tcp" or "tls"
	Addr      string // host:port; port 0 picks a free port
}

// ParseListen parses "transport://host:port".
func ParseListen(s string) (Listen, error) {
	tr, addr, ok := strings.Cut(s, "://")
	if !ok {
		return Listen{}, fmt.Errorf("listener %q: want transport://host:port", s)
	}
	tr = strings.ToLower(tr)
	switch tr {
	case "udp", "tcp", "tls":
	default:
		return Listen{}, fmt.Errorf("listener %q: transport %q is not udp, tcp or tls (WebSocket is served on the HTTP listener)", s, tr)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return Listen{}, fmt.Errorf("listener %q: %w", s, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return Listen{}, fmt.Errorf("listener %q: bad port %q", s, port)
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil {
			return Listen{}, fmt.Errorf("listener %q: host must be an IP address", s)
		}
	}
	return Listen{Transport: tr, Addr: addr}, nil
}

// Config configures the SIP edge and proxy. Zero values take the defaults
// given on each field.
type Config struct {
	// Registrar processes REGISTERs and answers location lookups. Required.
	Registrar Registrar
	// Authenticator checks the digest credentials of local users' requests.
	// Required.
	Authenticator Authenticator
	// Recorder receives call events for call detail records; nil records
	// nothing.
	Recorder CallRecorder
	// Router connects calls with SIP trunks (see Router); nil: no trunks.
	Router Router
	// Logger receives the server's logs; nil is slog.Default().
	Logger *slog.Logger

	// Domain is the SIP domain served. Requests whose Request-URI host is
	// the domain or an address the switch listens on are local. Required.
	Domain string
	// Listen lists the UDP/TCP/TLS listeners. At least one, or a WebSocket
	// listener attached through Server.WebSocketHandler.
	Listen []Listen
	// Advertise is the address written into Via and Record-Route for
	// listeners bound to an unspecified address. Empty: the first
	// non-loopback IPv4 address of the machine (127.0.0.1 if none).
	Advertise string
	// Advertise6 is the address written into Via and Record-Route towards
	// IPv6 peers by listeners bound to :: (which serve IPv4 and IPv6; the
	// IPv4 ones get Advertise). Empty: Advertise.
	Advertise6 string
	// TLS is required when a tls listener is configured.
	TLS *tls.Config
	// MaxMessageSize is the largest SIP message accepted (default 65535).
	MaxMessageSize int
	// TimerC is the INVITE branch timeout of RFC 3261 §16.8 (default 180s,
	// at least 3 minutes per the RFC; tests may set it lower).
	TimerC time.Duration
	// MediaRelay anchors call media; nil means SDP passes untouched.
	MediaRelay *media.Relay
	// MediaMode is RelayAlways (default when MediaRelay is set), RelayNAT
	// or RelayNever.
	MediaMode string
	// ShutdownGrace bounds how long a graceful shutdown waits for calls
	// to end by themselves before the switch hangs them up (default 30s).
	ShutdownGrace time.Duration
	// Secret keys the signatures in the switch's Record-Route entries and
	// branch parameters. Keep it across restarts (the binary stores one in
	// the database) so dialogs set up before a restart still route. Empty:
	// a random secret for this process.
	Secret string
	// ExternalCallers admits out-of-dialog requests (calls, MESSAGE,
	// OPTIONS to a user) from parties that are not local users to local
	// users. False (the default): they are refused with 403 whatever the
	// user, so a stranger can neither call nor list users.
	ExternalCallers bool
	// ExternalCallsPerSource caps the concurrent calls one source IP that
	// is not a local user may have when ExternalCallers is set (default 2).
	ExternalCallsPerSource int
	// ExternalCallRate is the number of new requests per second one such
	// source may make, with bursts of 5 (default 1).
	ExternalCallRate float64
	// Flood is the per-source limit on everything received (see FloodConfig).
	Flood FloodConfig
	// MaxTransactions caps the server transactions alive at once; requests
	// beyond it get 503 with Retry-After (default 50000).
	MaxTransactions int
	// Connections bounds the TCP, TLS and WebSocket connections accepted
	// (see ConnLimits; the zero value takes its defaults).
	Connections ConnLimits
	// Observer, when set, is handed every SIP message the switch receives
	// and sends on its listeners (the operations console's traces, HEP
	// export); nil observes nothing and costs nothing.
	Observer Observer
	// NAT is how phones behind NAT are detected and kept reachable (see
	// NATConfig; the zero value takes its defaults).
	NAT NATConfig
}

func (c *Config) setDefaults() {
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = 65535
	}
	if c.TimerC == 0 {
		c.TimerC = 180 * time.Second
	}
	if c.MediaMode == "" {
		c.MediaMode = RelayAlways
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = 30 * time.Second
	}
	if c.ExternalCallsPerSource == 0 {
		c.ExternalCallsPerSource = 2
	}
	if c.ExternalCallRate == 0 {
		c.ExternalCallRate = 1
	}
	if c.MaxTransactions == 0 {
		c.MaxTransactions = 50000
	}
	c.Flood.setDefaults()
	c.Connections.setDefaults()
	c.NAT.setDefaults()
}

// Validate checks c's values, its zero values taken as their defaults;
// New checks the same, and that the collaborators are set. An error names
// the field at fault (fielderr.Error).
func (c Config) Validate() error {
	c.setDefaults()
	return c.validate()
}

func (c *Config) validate() error {
	if c.Domain == "" {
		return fielderr.New("Domain", "must not be empty")
	}
	for _, l := range c.Listen {
		if l.Transport == "tls" && c.TLS == nil {
			return fielderr.New("TLS", "listener tls://%s needs a certificate", l.Addr)
		}
	}
	if c.Advertise != "" {
		if _, err := netip.ParseAddr(c.Advertise); err != nil {
			return fielderr.New("Advertise", "%q is not an IP address", c.Advertise)
		}
	}
	if c.Advertise6 != "" {
		if ip, err := netip.ParseAddr(c.Advertise6); err != nil || !ip.Is6() || ip.Is4In6() {
			return fielderr.New("Advertise6", "%q is not an IPv6 address", c.Advertise6)
		}
	}
	if c.MaxMessageSize < 1024 || c.MaxMessageSize > 65535 {
		return fielderr.New("MaxMessageSize", "%d is outside 1024..65535", c.MaxMessageSize)
	}
	switch c.MediaMode {
	case RelayAlways, RelayNAT, RelayNever:
	default:
		return fielderr.New("MediaMode", "%q is not always, nat or never", c.MediaMode)
	}
	// RFC 3261 §16.8 wants at least 3 minutes; shorter is for tests.
	if c.TimerC < time.Second {
		return fielderr.New("TimerC", "%s is too short", c.TimerC)
	}
	switch {
	case c.ExternalCallsPerSource < 0:
		return fielderr.New("ExternalCallsPerSource", "%d: must not be negative", c.ExternalCallsPerSource)
	case c.ExternalCallRate < 0:
		return fielderr.New("ExternalCallRate", "%g: must not be negative", c.ExternalCallRate)
	case c.MaxTransactions < 0:
		return fielderr.New("MaxTransactions", "%d: must not be negative", c.MaxTransactions)
	}
	if err := c.Flood.validate(); err != nil {
		return fielderr.In("Flood", err)
	}
	if err := c.Connections.validate(); err != nil {
		return fielderr.In("Connections", err)
	}
	if err := c.NAT.validate(); err != nil {
		return fielderr.In("NAT", err)
	}
	return nil
}

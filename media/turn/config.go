package turn

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"runtime"
	"strconv"
	"time"

	"github.com/switchboard/switchboard/internal/hostaddr"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults applied by New to zero-valued Config fields.
const (
	// DefaultRelayPortMin is the lowest relay port when Config.RelayPortMin is 0
	// (the start of the IANA dynamic range, RFC 6335 §6).
	DefaultRelayPortMin = 49152
	// DefaultRelayPortMax is the highest relay port when Config.RelayPortMax is 0.
	DefaultRelayPortMax = 65535
	// DefaultMaxAllocationsPerUser is the per-user allocation quota when
	// Config.MaxAllocationsPerUser is 0.
	DefaultMaxAllocationsPerUser = 10
	// DefaultAllocateRate is the number of authenticated Allocate requests per
	// second accepted from one source IP when Config.AllocateRate is 0: with
	// its burst of 2,000 it lets a NAT address with hundreds of WebRTC
	// clients (a few allocations each: one per TURN URL) all reconnect at
	// once, and costs at most ~20 % of a core per source (~200 µs each).
	DefaultAllocateRate = 1000
	// DefaultCredentialTTL is the lifetime of TURN REST credentials minted by
	// ICEServersHandler when Config.CredentialTTL is 0.
	DefaultCredentialTTL = 24 * time.Hour
	// DefaultSocketBuffer is the SO_RCVBUF/SO_SNDBUF size of listening sockets
	// when Config.SocketBuffer is 0.
	DefaultSocketBuffer = 4 << 20
)

// DefaultListen is the listener set used when Config.Listen is empty: the
// IANA-registered STUN/TURN port 3478 on UDP and TCP.
var DefaultListen = []string{"udp://0.0.0.0:3478", "tcp://0.0.0.0:3478"}

// Transport names the transport of a listener.
type Transport string

// Transports a listener can use.
const (
	// TransportUDP is STUN/TURN over UDP.
	TransportUDP Transport = "udp"
	// TransportTCP is STUN/TURN over TCP (RFC 8656).
	TransportTCP Transport = "tcp"
	// TransportTLS is STUN/TURN over TLS over TCP ("turns:", RFC 7065).
	TransportTLS Transport = "tls"
)

// Config configures a Server. The zero value of every field is usable and
// documented; only Realm is required. Config has no on/off switch: a caller
// that does not want TURN does not call New.
type Config struct {
	// Credentials resolves SIP users' long-term keys; nil when only REST
	// credentials are used.
	Credentials Credentials
	// Logger receives the server's logs (component=turn) and pion/turn's;
	// nil discards them.
	Logger *slog.Logger
	// Metrics receives the switchboard_turn_* metrics; nil keeps them
	// unregistered.
	Metrics prometheus.Registerer
	// Realm is the long-term credential realm (RFC 8489 §9.2), which must be
	// the SIP domain so that a SIP user's digest HA1 is the TURN key.
	// Required.
	Realm string

	// Listen lists the addresses to serve STUN and TURN on, as URLs
	// "udp://host:port", "tcp://host:port" or "tls://host:port". A port of 0
	// binds an ephemeral port (read it back with Server.Endpoints). Empty
	// means DefaultListen.
	Listen []string

	// TLSConfig is the server TLS configuration for tls:// listeners. It must
	// hold a certificate when a tls:// listener is configured, and is unused
	// otherwise.
	TLSConfig *tls.Config

	// TLSHost is the host name put in "turns:" URLs by ICEServersHandler; it
	// must match the TLS certificate. Empty means the host of the first
	// tls:// listener when that is a name, else PublicIP.
	TLSHost string

	// PublicIP is the IPv4 address advertised as the relayed transport address
	// and in ICE server URLs. The zero value means the first non-loopback IPv4
	// address of the machine, or 127.0.0.1 when there is none.
	PublicIP netip.Addr

	// BindIP is the IPv4 address relay sockets are bound on. The zero value
	// means 0.0.0.0 (every interface).
	BindIP netip.Addr

	// PublicIP6 is the IPv6 address advertised as the relayed transport
	// address of allocations that ask for IPv6 (REQUESTED-ADDRESS-FAMILY,
	// RFC 6156 §4.2); their relay sockets take the same port range. The
	// zero value offers no IPv6 relays: such an Allocate is refused. An
	// Allocate that names no family gets IPv4 (RFC 6156 §4.2).
	PublicIP6 netip.Addr

	// BindIP6 is the IPv6 address IPv6 relay sockets are bound on. The zero
	// value means :: (every interface) when PublicIP6 is set.
	BindIP6 netip.Addr

	// RelayPortMin is the lowest port of relay sockets. Zero means
	// DefaultRelayPortMin.
	RelayPortMin uint16
	// RelayPortMax is the highest (inclusive) port of relay sockets. Zero
	// means DefaultRelayPortMax.
	RelayPortMax uint16

	// Secret is the TURN REST shared secret: usernames "expiry:user" with
	// password base64(HMAC-SHA1(Secret, username)) are accepted until expiry.
	// Empty disables REST credentials; ICEServersHandler then answers 503.
	Secret []byte

	// CredentialTTL is the lifetime of REST credentials minted by
	// ICEServersHandler. Zero means DefaultCredentialTTL.
	CredentialTTL time.Duration

	// AllowPeers lists extra prefixes clients may relay to although they fall
	// in a range refused by default (see PeerAllowed), e.g. 127.0.0.0/8 for
	// tests or an internal media network. Empty allows none.
	AllowPeers []netip.Prefix

	// MaxAllocationsPerUser is the number of simultaneous allocations one user
	// may hold (RFC 8656 §7.2, 486 Allocation Quota Reached). REST
	// credentials count against the user after the "expiry:" prefix. Zero
	// means DefaultMaxAllocationsPerUser; negative means no quota.
	MaxAllocationsPerUser int

	// AllocateRate is the number of authenticated Allocate requests (those
	// with MESSAGE-INTEGRITY) per second accepted from one source IP address
	// (burst: twice that), and of TCP/TLS connections accepted per second
	// from one source IP. The unauthenticated first round (answered 401) is
	// counted apart, at twice this rate: it does not use up the budget of
	// new allocations. Requests over a rate are dropped without an answer
	// (the client retransmits). Zero means DefaultAllocateRate; negative
	// means unlimited.
	AllocateRate int

	// ReadLoops is the number of sockets (each with its own read goroutine)
	// bound with SO_REUSEPORT on every UDP listen address; the kernel spreads
	// clients over them by source IP address (see steerBySource). Zero means
	// runtime.NumCPU(). Where SO_REUSEPORT is unavailable one socket is used.
	ReadLoops int

	// Guard is the switch's ban on password guessing, shared with SIP and
	// HTTP (see the Guard type). Nil: TURN failures are not limited.
	Guard Guard

	// SocketBuffer is the SO_RCVBUF and SO_SNDBUF size in bytes requested for
	// UDP listening sockets; relay sockets get a quarter of it. Zero means
	// DefaultSocketBuffer; negative leaves the kernel default. The kernel caps
	// it at net.core.rmem_max/wmem_max unless the process may use
	// SO_RCVBUFFORCE (CAP_NET_ADMIN; listening sockets only).
	SocketBuffer int
}

// listenAddr is one parsed Config.Listen entry.
type listenAddr struct {
	transport Transport
	host      string
	port      int
}

func (l listenAddr) hostPort() string {
	return net.JoinHostPort(l.host, strconv.Itoa(l.port))
}

// parseListen parses a listen URL such as "udp://0.0.0.0:3478".
func parseListen(s string) (listenAddr, error) {
	u, err := url.Parse(s)
	if err != nil {
		return listenAddr{}, fmt.Errorf("listen address %q: %w: %w", s, ErrBadListen, err)
	}
	var la listenAddr
	switch Transport(u.Scheme) {
	case TransportUDP, TransportTCP, TransportTLS:
		la.transport = Transport(u.Scheme)
	default:
		return listenAddr{}, fmt.Errorf("listen address %q: %w", s, ErrBadListen)
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return listenAddr{}, fmt.Errorf("listen address %q: %w", s, ErrBadListen)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		return listenAddr{}, fmt.Errorf("listen address %q: %w: %w", s, ErrBadListen, err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return listenAddr{}, fmt.Errorf("listen address %q: %w: bad port", s, ErrBadListen)
	}
	la.host, la.port = host, int(p)
	if la.host == "" {
		la.host = "0.0.0.0"
	}

	return la, nil
}

// withDefaults returns c with every zero field replaced by its documented
// default.
func (c Config) withDefaults() Config {
	if len(c.Listen) == 0 {
		c.Listen = append([]string(nil), DefaultListen...)
	}
	if !c.PublicIP.IsValid() {
		c.PublicIP = hostaddr.Primary()
	}
	if !c.BindIP.IsValid() {
		c.BindIP = netip.IPv4Unspecified()
	}
	if c.PublicIP6.IsValid() && !c.BindIP6.IsValid() {
		c.BindIP6 = netip.IPv6Unspecified()
	}
	if c.RelayPortMin == 0 {
		c.RelayPortMin = DefaultRelayPortMin
	}
	if c.RelayPortMax == 0 {
		c.RelayPortMax = DefaultRelayPortMax
	}
	if c.CredentialTTL == 0 {
		c.CredentialTTL = DefaultCredentialTTL
	}
	if c.MaxAllocationsPerUser == 0 {
		c.MaxAllocationsPerUser = DefaultMaxAllocationsPerUser
	}
	if c.AllocateRate == 0 {
		c.AllocateRate = DefaultAllocateRate
	}
	if c.ReadLoops == 0 {
		c.ReadLoops = runtime.NumCPU()
	}
	if c.SocketBuffer == 0 {
		c.SocketBuffer = DefaultSocketBuffer
	}

	return c
}

// validate checks a Config after withDefaults.
func (c *Config) validate() error {
	if c.Realm == "" {
		return fmt.Errorf("realm: %w", ErrConfig)
	}
	hasTLS := false
	for _, s := range c.Listen {
		la, err := parseListen(s)
		if err != nil {
			return err
		}
		if la.transport == TransportTLS {
			hasTLS = true
		}
	}
	if hasTLS && (c.TLSConfig == nil ||
		(len(c.TLSConfig.Certificates) == 0 && c.TLSConfig.GetCertificate == nil && c.TLSConfig.GetConfigForClient == nil)) {
		return fmt.Errorf("tls listener without a certificate: %w", ErrConfig)
	}
	// IPv4 relays are on PublicIP and BindIP, IPv6 ones on PublicIP6 and
	// BindIP6.
	if !c.PublicIP.Is4() {
		return fmt.Errorf("public ip %v is not IPv4: %w", c.PublicIP, ErrConfig)
	}
	if !c.BindIP.Is4() {
		return fmt.Errorf("bind ip %v is not IPv4: %w", c.BindIP, ErrConfig)
	}
	if c.PublicIP6.IsValid() && (!c.PublicIP6.Is6() || c.PublicIP6.Is4In6()) {
		return fmt.Errorf("public ip6 %v is not IPv6: %w", c.PublicIP6, ErrConfig)
	}
	if c.BindIP6.IsValid() && (!c.PublicIP6.IsValid() || !c.BindIP6.Is6() || c.BindIP6.Is4In6()) {
		return fmt.Errorf("bind ip6 %v: want an IPv6 address, with PublicIP6: %w", c.BindIP6, ErrConfig)
	}
	if c.RelayPortMin > c.RelayPortMax {
		return fmt.Errorf("relay ports %d-%d: %w", c.RelayPortMin, c.RelayPortMax, ErrConfig)
	}
	if c.CredentialTTL < 0 {
		return fmt.Errorf("credential ttl %v: %w", c.CredentialTTL, ErrConfig)
	}
	for _, p := range c.AllowPeers {
		if !p.IsValid() {
			return fmt.Errorf("allow peers: invalid prefix: %w", ErrConfig)
		}
	}
	if c.ReadLoops < 0 || c.ReadLoops > 256 {
		return fmt.Errorf("read loops %d: %w", c.ReadLoops, ErrConfig)
	}

	return nil
}

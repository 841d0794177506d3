package gateway

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/pion/webrtc/v4"
)

// Defaults applied to zero fields of Config.
const (
	DefaultListenIP        = "127.0.0.1"
	DefaultRegisterExpires = 300 * time.Second
	DefaultRingTimeout     = 60 * time.Second
	DefaultAnswerTimeout   = 120 * time.Second
	DefaultICETimeout      = 20 * time.Second
	DefaultPingInterval    = 20 * time.Second
	DefaultMaxMessageSize  = 64 << 10
	DefaultMaxTabs         = 1000
	DefaultMaxTabsPerUser  = 10
	DefaultMaxCallsPerTab  = 4
	DefaultLoginFailures   = 5
	DefaultLoginWindow     = time.Minute
	DefaultUserAgent       = "switchboard-gateway"
)

// Guard counts failed sign-ins and refuses a browser address, or a user from
// an address it has not signed in from, after too many. source is the
// browser's address, user the name it signs in as. It must be safe for
// concurrent use.
type Guard interface {
	Banned(source netip.AddrPort, user string) bool
	Fail(source netip.AddrPort, user string)
	Succeed(source netip.AddrPort, user string)
}

// Config configures the gateway. Zero values take the defaults named on each
// field; Domain and ProxyAddr are required.
type Config struct {
	// Logger receives the gateway's logs (and pion's); nil is
	// slog.Default().
	Logger *slog.Logger
	// Domain is the SIP domain: the host of every user's address of record
	// and the digest realm the registrar challenges with. Required.
	Domain string
	// ProxyAddr is the host:port of the switch's SIP UDP listener. Every
	// request the gateway sends goes there (it is the gateway's outbound
	// proxy), in and out of dialogs. Required.
	ProxyAddr string
	// ListenIP is the local address of the gateway's SIP socket and of the
	// RTP sockets facing the switch; the proxy must be able to reach it.
	// Default 127.0.0.1 (the gateway and the proxy in one process).
	ListenIP string
	// SIPPort is the gateway's SIP UDP port on ListenIP. Zero picks a free
	// port; a fixed port lets a restarted gateway answer calls routed to the
	// registrations of its previous run (with 480) instead of timing out.
	SIPPort int

	// ICEIPs are the local addresses the gateway offers browsers as ICE host
	// candidates. Empty: every address of the machine's interfaces.
	ICEIPs []string
	// ICELoopback offers loopback addresses as ICE candidates too. They are
	// offered anyway when the machine has no other address (a test network
	// namespace with only lo).
	ICELoopback bool
	// PublicIP is the address announced in ICE host candidates instead of
	// the local one, for a gateway behind a 1:1 NAT. Empty: the local
	// addresses as they are.
	PublicIP string
	// UDPPortMin and UDPPortMax bound the UDP ports of ICE and of the RTP
	// sockets facing the switch, both included. Zero: ephemeral ports.
	UDPPortMin, UDPPortMax int
	// ICEServers returns the STUN and TURN servers (with fresh credentials)
	// the browser of user should use; it is called at each sign-in. Nil:
	// none, the browser uses host candidates only.
	ICEServers func(user string) []webrtc.ICEServer

	// RegisterExpires is the registration lifetime asked for each signed-in
	// user; the gateway refreshes it at half-time. Default 300s.
	RegisterExpires time.Duration
	// RingTimeout bounds how long an incoming call rings in the browser
	// before it is refused with 480. Default 60s.
	RingTimeout time.Duration
	// AnswerTimeout bounds how long an outgoing call waits for the far end
	// to answer before it is cancelled. Default 120s.
	AnswerTimeout time.Duration
	// ICETimeout bounds how long ICE and DTLS may take to connect with the
	// browser once media is set up, and how long a connection may stay
	// disconnected, before the call is ended. Default 20s.
	ICETimeout time.Duration
	// PingInterval is how often an idle WebSocket is pinged; a browser that
	// does not answer within the interval is gone. Default 20s.
	PingInterval time.Duration

	// MaxMessageSize is the largest WebSocket message accepted, in bytes;
	// a larger one closes the connection with status 1009. Default 64 KiB.
	MaxMessageSize int64
	// MaxTabs bounds the WebSocket connections served at once. Default 1000.
	MaxTabs int
	// MaxTabsPerUser bounds the connections signed in as one user. Default 10.
	MaxTabsPerUser int
	// MaxCallsPerTab bounds the calls one connection holds at once
	// (ringing ones included). Default 4.
	MaxCallsPerTab int
	// Guard is the switch's ban on password guessing, shared with its other
	// password checks (SIP digest, TURN, HTTP Basic): each sign-in is asked
	// of it and reported to it under the browser's address and the user
	// name. The switch trusts the gateway's own SIP socket instead (every
	// browser signs in through it). Nil: the gateway limits failures per
	// browser address itself, with LoginFailures and LoginWindow.
	Guard Guard
	// LoginFailures wrong passwords from one browser address within
	// LoginWindow make further sign-ins from that address wait for the
	// window to pass, so that guessing cannot get the gateway's own address
	// banned by the registrar. Used when Guard is nil. Default 5 per minute;
	// negative disables.
	LoginFailures int
	LoginWindow   time.Duration
	// OriginPatterns lists the web origins, besides the switch's own
	// (Origin host equal to the request's Host), whose pages may open /ws:
	// host patterns ("phone.example.com", "*.example.com") or
	// "scheme://host" patterns, matched as coder/websocket's
	// AcceptOptions.OriginPatterns (path.Match, case-insensitive). Requests
	// without an Origin (not from a browser) are accepted.
	OriginPatterns []string
	// HTTPSPort is the port of the switch's HTTPS listener. A web phone
	// opened where the browser gives it no microphone (not a secure
	// context: plain HTTP from another machine) links to the same host on
	// this port. Zero: the switch serves no HTTPS, and the page says so.
	HTTPSPort int

	// UserAgent is the User-Agent header of the gateway's SIP requests.
	// Default "switchboard-gateway".
	UserAgent string
}

func (c *Config) setDefaults() {
	c.ListenIP = cmp.Or(c.ListenIP, DefaultListenIP)
	c.RegisterExpires = cmp.Or(c.RegisterExpires, DefaultRegisterExpires)
	c.RingTimeout = cmp.Or(c.RingTimeout, DefaultRingTimeout)
	c.AnswerTimeout = cmp.Or(c.AnswerTimeout, DefaultAnswerTimeout)
	c.ICETimeout = cmp.Or(c.ICETimeout, DefaultICETimeout)
	c.PingInterval = cmp.Or(c.PingInterval, DefaultPingInterval)
	c.MaxMessageSize = cmp.Or(c.MaxMessageSize, DefaultMaxMessageSize)
	c.MaxTabs = cmp.Or(c.MaxTabs, DefaultMaxTabs)
	c.MaxTabsPerUser = cmp.Or(c.MaxTabsPerUser, DefaultMaxTabsPerUser)
	c.MaxCallsPerTab = cmp.Or(c.MaxCallsPerTab, DefaultMaxCallsPerTab)
	c.LoginFailures = cmp.Or(c.LoginFailures, DefaultLoginFailures)
	c.LoginWindow = cmp.Or(c.LoginWindow, DefaultLoginWindow)
	c.UserAgent = cmp.Or(c.UserAgent, DefaultUserAgent)
}

func (c *Config) validate() error {
	if c.Domain == "" {
		return errors.New("domain is empty")
	}
	if _, _, err := net.SplitHostPort(c.ProxyAddr); err != nil {
		return fmt.Errorf("proxy address %q: %w", c.ProxyAddr, err)
	}
	if _, err := netip.ParseAddr(c.ListenIP); err != nil {
		return fmt.Errorf("listen IP %q is not an IP address", c.ListenIP)
	}
	if c.SIPPort < 0 || c.SIPPort > 65535 {
		return fmt.Errorf("SIP port %d is out of range", c.SIPPort)
	}
	if c.HTTPSPort < 0 || c.HTTPSPort > 65535 {
		return fmt.Errorf("HTTPS port %d is out of range", c.HTTPSPort)
	}
	for _, s := range c.ICEIPs {
		if _, err := netip.ParseAddr(s); err != nil {
			return fmt.Errorf("ICE IP %q is not an IP address", s)
		}
	}
	if c.PublicIP != "" {
		if _, err := netip.ParseAddr(c.PublicIP); err != nil {
			return fmt.Errorf("public IP %q is not an IP address", c.PublicIP)
		}
	}
	switch {
	case c.UDPPortMin == 0 && c.UDPPortMax == 0:
	case c.UDPPortMin < 1024 || c.UDPPortMax > 65535 || c.UDPPortMax-c.UDPPortMin < 15:
		return fmt.Errorf("UDP ports %d-%d: want a range within 1024-65535 of at least 16 ports", c.UDPPortMin, c.UDPPortMax)
	}
	if c.RegisterExpires < 60*time.Second {
		return fmt.Errorf("register expires %s is below 60s", c.RegisterExpires)
	}
	for name, d := range map[string]time.Duration{"ring timeout": c.RingTimeout, "answer timeout": c.AnswerTimeout,
		"ICE timeout": c.ICETimeout, "ping interval": c.PingInterval, "login window": c.LoginWindow} {
		if d < 0 {
			return fmt.Errorf("%s must not be negative", name)
		}
	}
	if c.MaxMessageSize < 1024 {
		return fmt.Errorf("max message size %d is below 1024", c.MaxMessageSize)
	}
	if c.MaxTabs < 1 || c.MaxTabsPerUser < 1 || c.MaxCallsPerTab < 1 {
		return errors.New("connection and call limits must be at least 1")
	}
	return nil
}

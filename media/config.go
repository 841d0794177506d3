package media

import (
	"cmp"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults applied to zero fields of Config.
const (
	DefaultBindIP       = "::"
	DefaultPortMin      = 10000
	DefaultPortMax      = 20000
	DefaultTimeout      = 60 * time.Second
	DefaultQuarantine   = 30 * time.Second
	DefaultSocketBuffer = 1 << 20
	DefaultICETimeout   = 10 * time.Second
)

// Config is the media relay's configuration. The zero value is usable: every
// zero field takes the default named in its comment.
type Config struct {
	// Logger receives the relay's logs; nil is slog.Default().
	Logger *slog.Logger
	// Metrics, when set, is where the relay registers its metrics.
	Metrics prometheus.Registerer
	// PublicIP is the address the parties send media to, which the proxy
	// writes into the SDP it forwards. Empty: hostaddr.Primary(), the first
	// non-loopback address of the machine.
	PublicIP string
	// PublicIP6 is the address IPv6 parties send media to, when the
	// sockets take IPv6 (BindIP "::" or an IPv6 address); see PublicIPFor.
	// Empty: hostaddr.Primary6(), the first global or unique-local IPv6
	// address of the machine, if any (else ::1 to loopback parties and
	// PublicIP to the others).
	PublicIP6 string
	// BindIP is the local address the media sockets are bound to. Empty:
	// "::", every address of both families (IPv4 parties arrive as
	// v4-mapped addresses), or 0.0.0.0 on a host without IPv6. An IPv4
	// address gives IPv4 sockets, any other IPv6 address IPv6 ones.
	BindIP string
	// PortMin and PortMax bound the UDP ports used for media, both included.
	// Each side of a stream takes an even RTP port and the odd RTCP port
	// above it, so a stream needs four ports. Zero: 10000 and 20000.
	PortMin, PortMax int
	// Timeout is how long a stream may go without a packet from either party
	// before its owner is told (to end the call). Zero: 60 s. Negative:
	// never.
	Timeout time.Duration
	// Quarantine is how long a released port pair rests before it is handed
	// out again, so that late packets of a finished call never reach the
	// next one. Zero: 30 s. Negative: no quarantine.
	Quarantine time.Duration
	// SocketBuffer is the SO_RCVBUF and SO_SNDBUF asked for each media
	// socket, in bytes; the kernel caps it at net.core.rmem_max/wmem_max.
	// Zero: 1 MiB.
	SocketBuffer int
	// ICETimeout is how long a WebRTC leg has, from the moment its party
	// has the relay's SDP and the relay has the party's, to complete an ICE
	// check and the DTLS handshake; a leg that does not is reported to the
	// stream's OnFailure. Zero: 10 s. Negative: no limit.
	ICETimeout time.Duration
	// Workers is the number of packet loops sharing the sockets (Linux).
	// Zero: GOMAXPROCS.
	Workers int

	// now is the clock, for tests. Nil: time.Now.
	now func() time.Time
}

// withDefaults returns c with zero fields replaced by their defaults.
func (c Config) withDefaults() Config {
	c.BindIP = cmp.Or(c.BindIP, DefaultBindIP)
	c.PortMin = cmp.Or(c.PortMin, DefaultPortMin)
	c.PortMax = cmp.Or(c.PortMax, DefaultPortMax)
	c.Timeout = cmp.Or(c.Timeout, DefaultTimeout)
	c.Quarantine = cmp.Or(c.Quarantine, DefaultQuarantine)
	c.SocketBuffer = cmp.Or(c.SocketBuffer, DefaultSocketBuffer)
	c.ICETimeout = cmp.Or(c.ICETimeout, DefaultICETimeout)
	if c.Workers == 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c
}

// validate checks a Config that went through withDefaults.
func (c Config) validate() error {
	if c.PublicIP != "" {
		if _, err := netip.ParseAddr(c.PublicIP); err != nil {
			return fmt.Errorf("media: public_ip %q: %w", c.PublicIP, err)
		}
	}
	if c.PublicIP6 != "" {
		if ip, err := netip.ParseAddr(c.PublicIP6); err != nil || !ip.Is6() || ip.Is4In6() {
			return fmt.Errorf("media: public_ip6 %q: not an IPv6 address", c.PublicIP6)
		}
	}
	if _, err := netip.ParseAddr(c.BindIP); err != nil {
		return fmt.Errorf("media: bind_ip %q: %w", c.BindIP, err)
	}
	if c.PortMin < 1 || c.PortMax > 65535 || c.PortMin > c.PortMax {
		return fmt.Errorf("media: rtp_ports %d-%d: want 1 <= min <= max <= 65535", c.PortMin, c.PortMax)
	}
	if pairs := pairCount(c.PortMin, c.PortMax); pairs < 2 {
		return fmt.Errorf("media: rtp_ports %d-%d: room for %d RTP/RTCP pairs, a stream needs 2", c.PortMin, c.PortMax, pairs)
	}
	if c.SocketBuffer < 0 {
		return fmt.Errorf("media: socket buffer %d: must not be negative", c.SocketBuffer)
	}
	if c.Workers < 1 {
		return fmt.Errorf("media: workers %d: need at least one", c.Workers)
	}
	return nil
}

// firstPair returns the lowest even port >= min, where pairs start.
func firstPair(min int) int { return min + min%2 }

// pairCount returns how many even/odd port pairs fit in [min, max].
func pairCount(min, max int) int {
	first := firstPair(min)
	if first+1 > max {
		return 0
	}
	return (max - first + 1) / 2
}

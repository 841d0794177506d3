package sip

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emiago/sipgo"
	gosip "github.com/emiago/sipgo/sip"

	"github.com/switchboard/switchboard/registrar"
)

// Registrar is what the proxy needs of the registrar: REGISTER processing,
// the location service, and flow tracking. *registrar.Registrar satisfies it.
type Registrar interface {
	// Register processes a REGISTER for our domain and returns the 200 OK,
	// or an error carrying the status to answer with.
	Register(ctx context.Context, req *gosip.Request) (*gosip.Response, error)
	// Lookup returns the bindings of user and whether the user exists.
	Lookup(ctx context.Context, user string) ([]registrar.Binding, bool, error)
	// DropFlow removes bindings made over a connection that closed.
	DropFlow(transport string, source netip.AddrPort)
}

// Authenticator verifies digest credentials. *registrar.Authenticator
// satisfies it.
type Authenticator interface {
	// Authorize returns the authenticated user name, or an error carrying
	// the response to send (407 with a challenge, 403).
	Authorize(ctx context.Context, req *gosip.Request, proxy bool, source netip.AddrPort) (string, error)
}

// CallRecorder receives call events for call detail records. *cdr.Store
// satisfies it.
type CallRecorder interface {
	Started(callID, caller, callee string, at time.Time)
	Answered(callID string, status int, at time.Time)
	Ended(callID string, status int, reason, by, media string, at time.Time)
}

// iface is one address the switch receives SIP on, as it is advertised.
type iface struct {
	transport string // lower case: udp, tcp, tls, ws
	bound     netip.AddrPort
	adv       string // host written into Via/Record-Route
	port      int
	laddr     gosip.Addr // sipgo's key for the listening socket
}

// Server is the SIP edge and proxy.
type Server struct {
	cfg   Config
	log   *slog.Logger
	reg   Registrar
	auth  Authenticator
	calls *callTracker

	ua     *sipgo.UserAgent
	srv    *sipgo.Server
	client *sipgo.Client

	mu       sync.Mutex
	ifaces   []iface
	localIPs map[netip.Addr]bool
	closers  []func() error
	ws       *hijackListener
	serving  sync.WaitGroup

	stopHK   chan struct{}
	secret   [32]byte // keys the MACs in our branch parameters
	draining atomic.Bool
	inflight sync.WaitGroup

	// Counters exported as metrics.
	Stats Stats
}

// Stats counts what the edge drops or refuses.
type Stats struct {
	Malformed atomic.Uint64 // unparsable or oversized datagrams dropped
	Requests  atomic.Uint64
	Refused   atomic.Uint64 // requests answered with an error status
}

var setSipgoLogger sync.Once

// New builds the server. Listen binds its sockets; Serve runs it.
func New(cfg Config, reg Registrar, auth Authenticator, rec CallRecorder, log *slog.Logger) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("sip: %w", err)
	}
	if cfg.Advertise == "" {
		cfg.Advertise = DefaultAdvertise()
	}
	if log == nil {
		log = slog.Default()
	}
	s := &Server{cfg: cfg, log: log.With("component", "sip"), reg: reg, auth: auth, localIPs: map[netip.Addr]bool{}}
	s.calls = newCallTracker(rec)
	if _, err := rand.Read(s.secret[:]); err != nil {
		return nil, fmt.Errorf("sip: secret: %w", err)
	}

	parser := gosip.NewParser()
	parser.MaxMessageLength = cfg.MaxMessageSize
	sipgoLog := slog.New(&sipgoLogHandler{next: s.log.Handler(), stats: &s.Stats})
	// sipgo's default logger is a process global read by its goroutines:
	// set it once, before any server runs.
	setSipgoLogger.Do(func() {
		gosip.SetDefaultLogger(sipgoLog)
		// sipgo refuses to send UDP messages over UDPMTUSize-200 bytes
		// (1300): WebRTC-sized SDPs would fail. Like Kamailio we send what
		// we accept, up to MaxMessageSize, and let IP fragment it.
		gosip.UDPMTUSize = cfg.MaxMessageSize + 200
	})
	ua, err := sipgo.NewUA(
		sipgo.WithUserAgent("switchboard"),
		sipgo.WithUserAgentHostname(cfg.Domain),
		sipgo.WithUserAgentParser(parser),
		sipgo.WithUserAgenTLSConfig(cfg.TLS),
		sipgo.WithUserAgentTransportLayerOptions(
			gosip.WithTransportLayerLogger(sipgoLog),
			gosip.WithTransportLayerReadFilter(s.readFilter),
		),
		sipgo.WithUserAgentTransactionLayerOptions(
			gosip.WithTransactionLayerLogger(sipgoLog),
			gosip.WithTransactionLayerUnhandledResponseHandler(s.forwardStrayResponse),
		),
	)
	if err != nil {
		return nil, fmt.Errorf("sip user agent: %w", err)
	}
	s.ua = ua
	if s.srv, err = sipgo.NewServer(ua, sipgo.WithServerLogger(sipgoLog)); err != nil {
		return nil, err
	}
	if s.client, err = sipgo.NewClient(ua, sipgo.WithClientLogger(sipgoLog), sipgo.WithClientHostname(cfg.Advertise)); err != nil {
		return nil, err
	}
	for _, m := range []gosip.RequestMethod{gosip.INVITE, gosip.ACK, gosip.CANCEL, gosip.BYE, gosip.REGISTER,
		gosip.OPTIONS, gosip.SUBSCRIBE, gosip.NOTIFY, gosip.REFER, gosip.INFO, gosip.MESSAGE, gosip.PRACK,
		gosip.UPDATE, gosip.PUBLISH} {
		s.srv.OnRequest(m, s.handle)
	}
	s.srv.OnNoRoute(s.handle)
	return s, nil
}

// readFilter drops datagrams that cannot be SIP before sipgo parses them.
func (s *Server) readFilter(p gosip.TransportReadProps, data []byte) ([]byte, error) {
	if p.Transport != "UDP" {
		return data, nil
	}
	// sipgo reads datagrams into a TransportBufferReadSize buffer: one that
	// filled it may have been cut short, and must not be parsed.
	if len(data) > s.cfg.MaxMessageSize || len(data) >= int(gosip.TransportBufferReadSize) {
		s.Stats.Malformed.Add(1)
		return nil, nil
	}
	if len(data) > 4 && !looksLikeSIP(data) {
		s.Stats.Malformed.Add(1)
		return nil, nil
	}
	return data, nil
}

// looksLikeSIP is a cheap check that a datagram starts like a SIP request or
// response line: a token then a space, or "SIP/2.0 ".
func looksLikeSIP(b []byte) bool {
	for i, c := range b {
		if c == ' ' {
			return i > 0
		}
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '/' || c == '.' || c == '-' || c == '_' || c == '!' || c == '%' || c == '*' || c == '+' || c == '`' || c == '\'' || c == '~') || i > 32 {
			return false
		}
	}
	return false
}

// Listen binds every configured listener. Addrs then reports them.
func (s *Server) Listen(ctx context.Context) error {
	s.startHousekeeping()
	lc := net.ListenConfig{Control: bigBuffers}
	for _, l := range s.cfg.Listen {
		switch l.Transport {
		case "udp":
			pc, err := lc.ListenPacket(ctx, "udp", l.Addr)
			if err != nil {
				return fmt.Errorf("listen udp://%s: %w", l.Addr, err)
			}
			s.addIface("udp", pc.LocalAddr())
			s.closers = append(s.closers, pc.Close)
			s.serve(func() error { return s.srv.ServeUDP(pc) })
		case "tcp", "tls":
			ln, err := lc.Listen(ctx, "tcp", l.Addr)
			if err != nil {
				return fmt.Errorf("listen %s://%s: %w", l.Transport, l.Addr, err)
			}
			s.addIface(l.Transport, ln.Addr())
			s.closers = append(s.closers, ln.Close)
			fl := &flowListener{Listener: ln, transport: strings.ToUpper(l.Transport), onClose: s.reg.DropFlow}
			if l.Transport == "tcp" {
				s.serve(func() error { return s.srv.ServeTCP(fl) })
			} else {
				tl := tlsListener(fl, s.cfg.TLS)
				s.serve(func() error { return s.srv.ServeTLS(tl) })
			}
		}
	}
	return nil
}

// WebSocketHandler returns the http.Handler for SIP over WebSocket
// (RFC 7118), to mount at /sip on the HTTP listener bound at addr.
func (s *Server) WebSocketHandler(addr net.Addr) http.Handler {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ws == nil {
		s.ws = newHijackListener(addr)
		s.addIfaceLocked("ws", addr)
		fl := &flowListener{Listener: s.ws, transport: "WS", onClose: s.reg.DropFlow}
		s.closers = append(s.closers, s.ws.Close)
		s.serve(func() error { return s.srv.ServeWS(fl) })
	}
	return s.ws
}

func (s *Server) serve(f func() error) {
	s.serving.Add(1)
	go func() {
		defer s.serving.Done()
		if err := f(); err != nil && !errors.Is(err, net.ErrClosed) {
			s.log.Error("listener stopped", "error", err)
		}
	}()
}

func (s *Server) addIface(transport string, a net.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addIfaceLocked(transport, a)
}

func (s *Server) addIfaceLocked(transport string, a net.Addr) {
	ap := addrPortOf(a)
	adv := ap.Addr().Unmap().String()
	if ap.Addr().IsUnspecified() {
		adv = s.cfg.Advertise
		for _, ip := range interfaceIPs() {
			s.localIPs[ip] = true
		}
	}
	s.localIPs[ap.Addr().Unmap()] = true
	if ip, err := netip.ParseAddr(s.cfg.Advertise); err == nil {
		s.localIPs[ip] = true
	}
	i := iface{transport: transport, bound: ap, adv: adv, port: int(ap.Port())}
	if h, _, err := net.SplitHostPort(a.String()); err == nil {
		i.laddr = gosip.Addr{IP: net.ParseIP(h), Port: i.port}
	}
	s.ifaces = append(s.ifaces, i)
	s.log.Info("listening", "transport", transport, "addr", net.JoinHostPort(adv, strconv.Itoa(int(ap.Port()))))
}

func interfaceIPs() []netip.Addr {
	var out []netip.Addr
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(ipn.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out
}

// Addrs returns the bound listeners as transport → host:port.
func (s *Server) Addrs() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := map[string]string{}
	for _, i := range s.ifaces {
		m[i.transport] = net.JoinHostPort(i.adv, strconv.Itoa(i.port))
	}
	return m
}

// startHousekeeping runs the periodic sweep of stale calls until Close.
func (s *Server) startHousekeeping() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopHK != nil {
		return
	}
	stop := make(chan struct{})
	s.stopHK = stop
	s.closers = append(s.closers, func() error { close(stop); return nil })
	s.serve(func() error {
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return nil
			case <-t.C:
				s.calls.sweep()
			}
		}
	})
}

// Shutdown stops accepting new calls and waits, at most until ctx ends, for
// requests in progress; then it closes the listeners and the transaction and
// transport layers.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	done := make(chan struct{})
	go func() { s.inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.log.Warn("shutdown: requests still in progress are abandoned")
	}
	return s.Close()
}

// Close stops everything at once.
func (s *Server) Close() error {
	s.mu.Lock()
	closers := s.closers
	s.closers = nil
	s.mu.Unlock()
	var errs []error
	for _, c := range closers {
		if err := c(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	errs = append(errs, s.ua.Close())
	s.serving.Wait()
	return errors.Join(errs...)
}

// bigBuffers raises socket buffers so bursts are not dropped by the kernel
// before the read loop gets to them (Go's default is the system's ~200 KiB).
func bigBuffers(network, address string, c syscall.RawConn) error {
	const size = 4 << 20
	c.Control(func(fd uintptr) {
		// SO_RCVBUFFORCE works past rmem_max when we run as root; fall
		// back to what the limit allows otherwise.
		if syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, size) != nil {
			syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, size)
		}
		if syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUFFORCE, size) != nil {
			syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, size)
		}
	})
	return nil
}

// sipgoLogHandler passes sipgo's own logs on with component=sipgo, counts
// and quietens its per-packet parse failures, and keeps its debug chatter out.
type sipgoLogHandler struct {
	next  slog.Handler
	stats *Stats
}

func (h *sipgoLogHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn || (l >= slog.LevelError && h.next.Enabled(ctx, l))
}

func (h *sipgoLogHandler) Handle(ctx context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, "failed to parse") {
		h.stats.Malformed.Add(1)
		return nil
	}
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	r.AddAttrs(slog.String("component", "sipgo"))
	return h.next.Handle(ctx, r)
}

func (h *sipgoLogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &sipgoLogHandler{next: h.next.WithAttrs(as), stats: h.stats}
}

func (h *sipgoLogHandler) WithGroup(n string) slog.Handler {
	return &sipgoLogHandler{next: h.next.WithGroup(n), stats: h.stats}
}

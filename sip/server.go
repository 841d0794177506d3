package sip

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
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

	"github.com/switchboard/switchboard/internal/hostaddr"

	"github.com/emiago/sipgo"
	gosip "github.com/emiago/sipgo/sip"

	"github.com/switchboard/switchboard/internal/ratelog"
	"github.com/switchboard/switchboard/internal/siphdr"
	"github.com/switchboard/switchboard/registrar"
)

// Registrar is what the proxy needs of the registrar: REGISTER processing,
// the location service, and flow tracking. *registrar.Registrar satisfies it.
type Registrar interface {
	// Register processes a REGISTER for our domain and returns the 200 OK,
	// or an error carrying the status to answer with.
	Register(ctx context.Context, req *gosip.Request) (*gosip.Response, error)
	// Registration is Register for a REGISTER read from its bytes (the
	// fast path's, rawregister.go): the headers of the 200 OK besides
	// those copied from the request, or the error.
	Registration(ctx context.Context, q *registrar.Request) ([]gosip.Header, error)
	// Lookup returns the bindings of user and whether the user exists.
	Lookup(ctx context.Context, user string) ([]registrar.Binding, bool, error)
	// DropFlow removes bindings made over a connection that closed.
	DropFlow(transport string, source netip.AddrPort)
	// HasFlow reports whether a binding was made over the connection from
	// source on transport (such a connection is never closed as idle).
	HasFlow(transport string, source netip.AddrPort) bool
	// NATBindings returns the UDP bindings behind NAT to keep alive.
	NATBindings() []registrar.Binding
	// Unreachable removes a binding whose keep-alives went unanswered,
	// unless it was registered again since; it reports whether it did.
	Unreachable(b registrar.Binding) bool
}

// Authenticator verifies digest credentials. *registrar.Authenticator
// satisfies it.
type Authenticator interface {
	// Authorize returns the authenticated user name, or an error carrying
	// the response to send (407 with a challenge, 403).
	Authorize(ctx context.Context, req *gosip.Request, proxy bool, source netip.AddrPort) (string, error)
	// ChallengeRequest is Authorize's answer to a request without
	// credentials, named by what siphdr.RequestID hashes and its
	// User-Agent: the challenge headers, or false for a banned source
	// (403).
	ChallengeRequest(id siphdr.ID, userAgent string, proxy bool, source netip.AddrPort) ([]gosip.Header, bool)
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
	transport string // lower case: udp, tcp, tls, ws, wss
	bound     netip.AddrPort
	adv       string // host written into Via/Record-Route
	adv6      string // the same for IPv6 peers of a listener bound to :: (see forFamily)
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
	// inboxes hands the fork's branches over UDP their responses in
	// order (responseorder.go).
	inboxes branchInboxes
	// udpSockets are the UDP listeners by their local address's text
	// (sipgo's key for them), for the fast path's writes; filled in New,
	// read-only after.
	udpSockets map[string]*udpListener

	ua     *sipgo.UserAgent
	srv    *sipgo.Server
	client *sipgo.Client

	mu       sync.Mutex
	ifaces   []iface
	localIPs map[netip.Addr]bool
	closers  []func() error
	ws       *hijackListener // SIP over WebSocket on the HTTP listener
	wss      *hijackListener // and on the HTTPS listener
	serving  sync.WaitGroup
	running  bool           // Serve has started the loops
	pending  []func() error // loops waiting for Serve
	failed   chan error     // a loop that failed
	closed   chan struct{}  // closed by Close
	closeMu  sync.Once

	secret   [32]byte  // keys the MACs in our branch parameters
	macs     sync.Pool // *macState: HMAC-SHA256 keyed with secret (getMAC)
	draining atomic.Bool
	inflight atomic.Int64 // requests being handled

	stopCalls chan struct{} // closed when the switch hangs every call up
	stopOnce  sync.Once
	flood     *floodGuard
	conns     *connTracker // accepted TCP, TLS and WS connections
	sweeping  bool         // the idle connection sweeper runs
	strangers *strangers
	keeper    *keeper        // NAT keep-alives (keepalive.go)
	fast      *fastPath      // REGISTER over UDP without sipgo transactions (fastpath.go); set by Serve
	invites   inviteBranches // the INVITE server transactions over UDP, by branch (statelessdialog.go)
	txLive    atomic.Int64   // server transactions alive

	// Counters exported as metrics.
	Stats Stats
}

// Stats counts what the edge drops or refuses.
type Stats struct {
	Malformed atomic.Uint64 // unparsable or oversized datagrams dropped
	Requests  atomic.Uint64
	Refused   atomic.Uint64 // requests answered with an error status
	Strangers atomic.Uint64 // requests from non-users refused or limited
	Overload  atomic.Uint64 // requests refused at the transaction cap
}

// FloodBans returns how many sources the flood limit has banned, and how
// many messages it dropped.
func (s *Server) FloodBans() (bans, dropped uint64) {
	return s.flood.bans.Load(), s.flood.dropped.Load()
}

// LiveTransactions returns the number of server transactions alive.
func (s *Server) LiveTransactions() int64 { return s.txLive.Load() }

// Trust exempts one source address and port from the flood limit: the
// WebRTC gateway's SIP socket, which carries every browser's signalling.
func (s *Server) Trust(src netip.AddrPort) { s.flood.trust(src) }

var setSipgoLogger sync.Once

// New validates cfg and binds every configured listener, so that Addrs
// reports the chosen ports at once (as with httptest); Serve then runs the
// server and Shutdown drains and stops it. A New that fails has bound
// nothing.
func New(cfg Config) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("sip: %w", err)
	}
	if cfg.Registrar == nil || cfg.Authenticator == nil {
		return nil, errors.New("sip: a registrar and an authenticator are required")
	}
	reg, auth, rec, log := cfg.Registrar, cfg.Authenticator, cfg.Recorder, cfg.Logger
	if cfg.Advertise == "" {
		cfg.Advertise = hostaddr.Primary().String()
	}
	if log == nil {
		log = slog.Default()
	}
	// Whatever the network sends can make the edge warn: at most 10 such
	// lines a second (bursts of 20) reach the log, the rest are counted ("suppressed").
	log = slog.New(ratelog.New(log.Handler(), 10, 20, slog.LevelWarn))
	s := &Server{cfg: cfg, log: log.With("component", "sip"), reg: reg, auth: auth, localIPs: map[netip.Addr]bool{}}
	s.calls = newCallTracker(rec)
	s.stopCalls = make(chan struct{})
	s.failed = make(chan error, 1)
	s.closed = make(chan struct{})
	s.flood = newFloodGuard(cfg.Flood, s.log)
	s.conns = newConnTracker(cfg.Connections, reg, s.log)
	s.strangers = newStrangers(cfg.ExternalCallRate, cfg.ExternalCallsPerSource)
	s.keeper = newKeeper(s, cfg.NAT)
	if cfg.Secret != "" {
		s.secret = sha256.Sum256([]byte(cfg.Secret))
	} else if _, err := rand.Read(s.secret[:]); err != nil {
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
		// A completed UDP transaction is kept to absorb retransmissions
		// for 64*T1 = 32 s: server side Timer J, and Timer L for an
		// INVITE after its 2xx (RFC 6026); client side Timer D after an
		// INVITE's error and Timer M after its 2xx. Retransmissions come
		// at most T2 = 4 s apart, so, like Kamailio's tm wait timer, 5 s
		// does that job (a 2xx retransmitted later is forwarded as a
		// stray response): 32 s of transactions at a high call rate was
		// memory and filled the transaction cap (MaxTransactions) at ~300
		// calls/s.
		gosip.Timer_J = completedTxTime
		gosip.Timer_L = completedTxTime
		gosip.Timer_D = completedTxTime
		gosip.Timer_M = completedTxTime
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
			gosip.WithTransactionLayerUnhandledResponseHandler(s.unhandledResponse),
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
	if err := s.listen(context.Background()); err != nil {
		_ = s.Close() // what listen bound; its error is the one to report
		return nil, err
	}
	return s, nil
}

// errFlood closes a stream connection whose source is flooding.
var errFlood = errors.New("source is flooding")

// readFilter drops what a flooding source sends (FloodConfig), and
// datagrams that cannot be SIP, before sipgo parses them or creates any
// state for them.
func (s *Server) readFilter(p gosip.TransportReadProps, data []byte) ([]byte, error) {
	if !s.flood.allow(addrPortOfNet(p.RemoteAddr)) {
		if p.Transport != "UDP" {
			return nil, errFlood
		}
		return nil, nil
	}
	if p.Transport != "UDP" {
		return data, nil
	}
	// sipgo reads datagrams into a TransportBufferReadSize buffer: one that
	// filled it may have been cut short, and must not be parsed.
	if len(data) > s.cfg.MaxMessageSize || len(data) >= int(gosip.TransportBufferReadSize) {
		s.Stats.Malformed.Add(1)
		return nil, nil
	}
	if isSTUN(data) {
		s.answerSTUN(p.LocalAddr, p.RemoteAddr, data) // RFC 5626 §8.4 (stun.go)
		return nil, nil
	}
	if len(data) > 4 && !looksLikeSIP(data) {
		s.Stats.Malformed.Add(1)
		return nil, nil
	}
	if s.fast != nil && s.fast.take(p.LocalAddr, p.RemoteAddr, data) {
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

// listen binds every configured listener; their read loops start in Serve.
func (s *Server) listen(ctx context.Context) error {
	lc := net.ListenConfig{Control: bigBuffers}
	for _, l := range s.cfg.Listen {
		switch l.Transport {
		case "udp":
			raw, err := lc.ListenPacket(ctx, "udp", l.Addr)
			if err != nil {
				return fmt.Errorf("listen udp://%s: %w", l.Addr, err)
			}
			pc := newUDPListener(raw.(*net.UDPConn))
			s.addIface("udp", pc.LocalAddr())
			if s.udpSockets == nil {
				s.udpSockets = map[string]*udpListener{}
			}
			s.udpSockets[pc.LocalAddr().String()] = pc
			s.closers = append(s.closers, pc.Close)
			s.serve(func() error { return s.srv.ServeUDP(pc) })
		case "tcp", "tls":
			ln, err := lc.Listen(ctx, "tcp", l.Addr)
			if err != nil {
				return fmt.Errorf("listen %s://%s: %w", l.Transport, l.Addr, err)
			}
			s.addIface(l.Transport, ln.Addr())
			fl := newFlowListener(ln, strings.ToUpper(l.Transport), s.conns, s.log)
			s.closers = append(s.closers, fl.Close)
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
		s.ws = s.webSocketLocked("ws", addr)
	}
	return s.ws
}

// WebSocketTLSHandler returns the http.Handler for SIP over secure
// WebSocket (RFC 7118 §5: "wss"), to mount at /sip on the HTTPS listener
// bound at addr. net/http terminates TLS, so the connections it hands over
// are plain; they are a transport of their own, WSS, in Via and
// Record-Route and for sipgo.
func (s *Server) WebSocketTLSHandler(addr net.Addr) http.Handler {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.wss == nil {
		s.wss = s.webSocketLocked("wss", addr)
	}
	return s.wss
}

// webSocketLocked attaches a WebSocket transport (ws or wss) whose
// connections an HTTP server hands over.
func (s *Server) webSocketLocked(transport string, addr net.Addr) *hijackListener {
	hl := newHijackListener(addr)
	s.addIfaceLocked(transport, addr)
	s.startConnSweeperLocked()
	fl := newFlowListener(hl, strings.ToUpper(transport), s.conns, s.log)
	s.closers = append(s.closers, fl.Close)
	if transport == "wss" {
		// sipgo's WSS transport upgrades what it accepts like WS does
		// (its TLS is only for dialling out), and labels it WSS.
		s.serveLocked(func() error { return s.srv.ServeWSS(fl) })
	} else {
		s.serveLocked(func() error { return s.srv.ServeWS(fl) })
	}
	return hl
}

// serve runs f (a read loop or a sweeper) in a goroutine the server owns,
// once Serve has started (at once if it has). A loop that fails for any
// reason but a closed socket ends Serve with its error.
func (s *Server) serve(f func() error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.serveLocked(f)
}

func (s *Server) serveLocked(f func() error) {
	if !s.running {
		s.pending = append(s.pending, f)
		return
	}
	s.serving.Add(1)
	go func() {
		defer s.serving.Done()
		if err := f(); err != nil && !errors.Is(err, net.ErrClosed) {
			s.log.Error("listener stopped", "error", err)
			select {
			case s.failed <- err:
			default:
			}
		}
	}()
}

// Serve runs the server: the listeners' read loops and its housekeeping.
// It blocks until ctx ends (nil), Shutdown or Close is called (nil), or a
// listener fails (its error). It does not stop the server: call Shutdown.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return errors.New("sip: Serve called twice")
	}
	select {
	case <-s.closed:
		// Closed before it ran: start nothing (Close has taken, or is
		// about to take, the closers under s.mu).
		s.mu.Unlock()
		return nil
	default:
	}
	s.running = true
	s.startFastPathLocked()
	pending := s.pending
	s.pending = nil
	for _, f := range pending {
		s.serveLocked(f)
	}
	s.startHousekeepingLocked()
	s.startConnSweeperLocked()
	s.startKeepaliveLocked()
	s.mu.Unlock()
	select {
	case <-ctx.Done():
		return nil
	case <-s.closed:
		return nil
	case err := <-s.failed:
		return fmt.Errorf("sip: %w", err)
	}
}

func (s *Server) addIface(transport string, a net.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addIfaceLocked(transport, a)
}

func (s *Server) addIfaceLocked(transport string, a net.Addr) {
	ap := addrPortOf(a)
	adv, adv6 := ap.Addr().Unmap().String(), ""
	if ap.Addr().IsUnspecified() {
		adv, adv6 = s.cfg.Advertise, s.cfg.Advertise6
		for _, ip := range interfaceIPs() {
			s.localIPs[ip] = true
		}
	}
	s.localIPs[ap.Addr().Unmap()] = true
	for _, a := range []string{s.cfg.Advertise, s.cfg.Advertise6} {
		if ip, err := netip.ParseAddr(a); err == nil {
			s.localIPs[ip] = true
		}
	}
	i := iface{transport: transport, bound: ap, adv: adv, adv6: adv6, port: int(ap.Port())}
	if h, _, err := net.SplitHostPort(a.String()); err == nil {
		i.laddr = gosip.Addr{IP: net.ParseIP(h), Port: i.port}
	}
	s.ifaces = append(s.ifaces, i)
	s.observeIfaceLocked(i)
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
func (s *Server) startHousekeepingLocked() {
	s.untilCloseLocked(func(stop <-chan struct{}) {
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				s.calls.sweep()
				s.flood.sweep()
				s.strangers.sweep()
			}
		}
	})
}

// untilCloseLocked runs loop in a goroutine the server owns; the channel it
// is given closes when the server does.
func (s *Server) untilCloseLocked(loop func(stop <-chan struct{})) {
	stop := make(chan struct{})
	s.closers = append(s.closers, func() error { close(stop); return nil })
	s.serveLocked(func() error { loop(stop); return nil })
}

// Shutdown drains the switch: it stops taking new calls (503 with
// Retry-After), waits up to Config.ShutdownGrace (or until ctx
// ends) for calls to end by themselves, then hangs up what is left — a BYE
// to both parties of each answered call, a CANCEL for each call still
// ringing — records those calls as ended by the switch with reason
// "shutdown", and closes the listeners and the transaction and transport
// layers once the requests in progress are done or ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.Drain(ctx)
	// A counter polled, not a WaitGroup: requests keep arriving (and
	// adding to it from zero) while we wait, which a WaitGroup forbids.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for s.inflight.Load() > 0 {
		select {
		case <-tick.C:
			continue
		case <-ctx.Done():
			s.log.Warn("shutdown: requests still in progress are abandoned", "requests", s.inflight.Load())
		}
		break
	}
	return s.Close()
}

// Drain is the first half of Shutdown: it stops taking new calls, waits up
// to Config.ShutdownGrace (or until ctx ends) for calls to end, and hangs up
// the rest, but leaves the listeners open, so that components speaking SIP
// through the switch (the WebRTC gateway) can still sign off. Registrations
// are still taken while draining. Calling it again is harmless.
func (s *Server) Drain(ctx context.Context) {
	s.draining.Store(true)
	grace, cancel := context.WithTimeout(ctx, s.cfg.ShutdownGrace)
	s.calls.waitIdle(grace)
	cancel()
	if n := s.hangUpAll(ctx, "shutdown"); n > 0 {
		s.log.Info("shutdown: calls hung up", "calls", n)
	}
}

// hangUpAll ends every call: ringing ones are cancelled by their proxy
// loops (stopCalls), answered ones get a BYE to each party, sent in
// parallel and awaited until ctx ends. It returns the number of calls.
func (s *Server) hangUpAll(ctx context.Context, reason string) int {
	s.stopOnce.Do(func() { close(s.stopCalls) })
	calls := s.calls.all()
	var wg sync.WaitGroup
	for _, c := range calls {
		d := s.calls.endBySwitch(c, 503, reason)
		if d == nil {
			continue
		}
		for _, bye := range d.byes() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.sendBye(bye, reason)
			}()
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return len(calls)
}

// errClosed refuses to send once the server is closed: sipgo would bind a
// fresh socket to a closed listener's address to send from (and leave its
// read loop running).
var errClosed = errors.New("sip server closed")

// isClosed reports whether Close has begun.
func (s *Server) isClosed() bool {
	select {
	case <-s.closed:
		return true
	default:
		return false
	}
}

// transactionRequest starts a client transaction for req (built in full:
// noBuild), unless the server is closed.
func (s *Server) transactionRequest(ctx context.Context, req *gosip.Request) (gosip.ClientTransaction, error) {
	if s.isClosed() {
		return nil, errClosed
	}
	return s.client.TransactionRequest(ctx, req, noBuild)
}

// Close stops everything at once: calls are not hung up (Shutdown does
// that). Calling it again does nothing.
func (s *Server) Close() error {
	first := false
	s.closeMu.Do(func() { first = true; close(s.closed) })
	if !first {
		return nil
	}
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
	s.closeFlows(time.Second)
	errs = append(errs, s.ua.Close())
	s.serving.Wait()
	s.closeLateConnections()
	s.unobserve()
	return errors.Join(errs...)
}

// closeLateConnections works around sipgo v1.7.2's transport layer, which
// has no closed state: a response it sends on its own after Close (the
// stateless 400 to a malformed request read just before) finds no pooled
// connection and binds a new UDP socket, whose read loop nobody stops. Our
// own sends check isClosed; for sipgo's, once our handlers are done and a
// moment has passed, the pool is cleared again, which closes such sockets.
func (s *Server) closeLateConnections() {
	deadline := time.Now().Add(time.Second)
	for s.inflight.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	_ = s.ua.TransportLayer().Close()
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
	switch {
	case strings.HasPrefix(r.Message, "failed to parse"), malformedRequest(r):
		h.stats.Malformed.Add(1)
		return nil
	case strings.HasPrefix(r.Message, "SIP request handler not found"):
		return nil // an unknown method, answered 405: the network's noise
	}
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	// sipgo quotes what it received (a start line, a header) in its
	// attributes: an attacker's text, so keep only its beginning.
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(truncateAttr(a))
		return true
	})
	out.AddAttrs(slog.String("component", "sipgo"))
	return h.next.Handle(ctx, out)
}

// maxLoggedValue bounds a string logged from what the network sent.
const maxLoggedValue = 200

func truncateAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindString {
		if s := v.String(); len(s) > maxLoggedValue {
			return slog.String(a.Key, s[:maxLoggedValue]+"…")
		}
		return a
	}
	if v.Kind() == slog.KindAny {
		if err, ok := v.Any().(error); ok {
			if s := err.Error(); len(s) > maxLoggedValue {
				return slog.String(a.Key, s[:maxLoggedValue]+"…")
			}
		}
	}
	return a
}

// malformedRequest reports whether r is sipgo's note of a request too
// malformed for a transaction key (which it answers with a stateless 400).
func malformedRequest(r slog.Record) bool {
	if !strings.HasPrefix(r.Message, "Server tx failed to handle request") {
		return false
	}
	found := false
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "error" && strings.Contains(a.Value.String(), "make key failed") {
			found = true
			return false
		}
		return true
	})
	return found
}

func (h *sipgoLogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &sipgoLogHandler{next: h.next.WithAttrs(as), stats: h.stats}
}

func (h *sipgoLogHandler) WithGroup(n string) slog.Handler {
	return &sipgoLogHandler{next: h.next.WithGroup(n), stats: h.stats}
}

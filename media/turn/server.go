package turn

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/internal/lifecycle"

	"github.com/pion/turn/v5"
)

// closeTimeout bounds each wait of Close for pion/turn's goroutines.
const closeTimeout = 5 * time.Second

// Endpoint is one bound listener.
type Endpoint struct {
	// Transport is the listener's transport.
	Transport Transport
	// Addr is the bound address, with the actual port when 0 was asked for.
	Addr net.Addr
}

// Server is a running STUN/TURN server. Create it with New and stop it with
// Close; its methods are safe for concurrent use.
type Server struct {
	closed  chan struct{} // closed by Close
	cfg     Config
	creds   Credentials
	log     *slog.Logger
	metrics *metrics
	limiter *allocateLimiter
	quota   *userQuota
	now     func() time.Time

	pion      *turn.Server
	endpoints []Endpoint
	tlsPorts  map[int]bool
	tlsHost   string
	selfAddrs map[netip.Addr]struct{}

	// loops counts pion goroutines Close waits for: UDP read loops, accept
	// loops, and per-connection loops of accepted TCP/TLS connections.
	loops loopCounter
	// active counts allocations created and not yet deleted.
	active atomic.Int64
	// allocs lists them, for the operations console (admin.go).
	allocs allocations

	mu      sync.Mutex
	closing bool
	conns   map[*tcpConn]struct{}
	relays  map[*relayConn]struct{}

	closeOnce sync.Once
	closeErr  error
}

// loopCounter counts running goroutines; Done matches sync.WaitGroup's so
// that sync.Once can call it.
type loopCounter struct{ n atomic.Int64 }

func (c *loopCounter) Add(n int64) { c.n.Add(n) }
func (c *loopCounter) Done()       { c.n.Add(-1) }

// New binds every listener of cfg and starts serving STUN and TURN on them
// (pion/turn reads its sockets from its NewServer on). The caller owns the
// Server and must call Shutdown or Close, which release every socket and
// goroutine New started.
func New(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	creds, log := cfg.Credentials, cfg.Logger
	cfg.Secret = append([]byte(nil), cfg.Secret...)
	cfg.AllowPeers = append([]netip.Prefix(nil), cfg.AllowPeers...)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "turn")
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:       cfg,
		creds:     creds,
		log:       log,
		metrics:   m,
		limiter:   newAllocateLimiter(cfg.AllocateRate),
		quota:     newUserQuota(cfg.MaxAllocationsPerUser),
		now:       time.Now,
		tlsPorts:  make(map[int]bool),
		selfAddrs: localAddrs(cfg.PublicIP, cfg.PublicIP6),
		conns:     make(map[*tcpConn]struct{}),
		relays:    make(map[*relayConn]struct{}),
		closed:    make(chan struct{}),
	}
	sc := turn.ServerConfig{
		Realm:       cfg.Realm,
		AuthHandler: s.pionAuth,
		// RFC 6156 §4.2: an Allocate without REQUESTED-ADDRESS-FAMILY asks
		// for IPv4, whatever the listener's family.
		StrictAddressFamily: true,
		QuotaHandler:        s.admitAllocation,
		EventHandler:        s.eventHandler(),
		LoggerFactory:       slogFactory{log: log},
	}
	closers, err := s.listen(&sc)
	fail := func(err error) (*Server, error) {
		for _, c := range closers {
			_ = c()
		}
		m.unregister()
		return nil, err
	}
	if err != nil {
		return fail(err)
	}
	if cfg.TLSHost != "" {
		s.tlsHost = cfg.TLSHost
	}
	if s.tlsHost == "" {
		s.tlsHost = cfg.PublicIP.String()
	}
	s.loops.Add(int64(len(sc.PacketConnConfigs) + len(sc.ListenerConfigs)))
	p, err := turn.NewServer(sc)
	if err != nil {
		return fail(fmt.Errorf("start pion/turn: %w", err))
	}
	s.pion = p
	for _, e := range s.endpoints {
		log.Info("listening", "transport", string(e.Transport), "addr", e.Addr.String())
	}
	log.Info("turn server started", "realm", cfg.Realm, "public_ip", cfg.PublicIP.String(), "public_ip6", cfg.PublicIP6,
		"relay_ports", fmt.Sprintf("%d-%d", cfg.RelayPortMin, cfg.RelayPortMax),
		"read_loops_per_udp_listener", len(sc.PacketConnConfigs)/max(1, countTransport(s.endpoints, TransportUDP)))

	return s, nil
}

// Serve waits until ctx ends or the server is closed: pion/turn reads its
// sockets from New on (its NewServer starts the loops), so Serve has
// nothing more to start.
func (s *Server) Serve(ctx context.Context) error { return lifecycle.Wait(ctx, s.closed) }

// Shutdown is Close: allocations end with the process (ctx is not needed).
func (s *Server) Shutdown(ctx context.Context) error { return s.Close() }

// listen binds every configured listener into sc and returns the closers
// of what it bound (all of them, also when it fails).
func (s *Server) listen(sc *turn.ServerConfig) ([]func() error, error) {
	cfg, log := s.cfg, s.log
	gen := &relayGenerator{s: s, inner: &turn.RelayAddressGeneratorPortRange{
		RelayAddress: net.IP(cfg.PublicIP.AsSlice()),
		Address:      cfg.BindIP.String(),
		MinPort:      cfg.RelayPortMin,
		MaxPort:      cfg.RelayPortMax,
	}}
	if cfg.PublicIP6.IsValid() {
		gen.inner6 = &turn.RelayAddressGeneratorPortRange{
			RelayAddress: net.IP(cfg.PublicIP6.AsSlice()),
			Address:      cfg.BindIP6.String(),
			MinPort:      cfg.RelayPortMin,
			MaxPort:      cfg.RelayPortMax,
		}
	}
	var closers []func() error
	for _, spec := range cfg.Listen {
		la, err := parseListen(spec)
		if err != nil {
			return closers, err
		}
		switch la.transport {
		case TransportUDP:
			conns, err := listenUDP(context.Background(), la.hostPort(), cfg.ReadLoops, cfg.SocketBuffer)
			if err != nil {
				return closers, err
			}
			if err := steerBySource(conns); err != nil {
				// The kernel's 4-tuple hash then spreads a client's sockets
				// over the read loops: a RESERVATION-TOKEN may miss.
				log.Warn("udp listener: cannot steer datagrams by source address", "addr", la.hostPort(), "err", err.Error())
			}
			for _, c := range conns {
				closers = append(closers, c.Close)
				sc.PacketConnConfigs = append(sc.PacketConnConfigs, turn.PacketConnConfig{
					PacketConn:            &udpListener{UDPConn: c, s: s},
					RelayAddressGenerator: gen,
					PermissionHandler:     s.permitPeer,
				})
			}
			s.endpoints = append(s.endpoints, Endpoint{Transport: TransportUDP, Addr: conns[0].LocalAddr()})
		case TransportTCP, TransportTLS:
			var lc net.ListenConfig
			l, err := lc.Listen(context.Background(), "tcp", la.hostPort())
			if err != nil {
				return closers, fmt.Errorf("listen %s %s: %w", la.transport, la.hostPort(), err)
			}
			closers = append(closers, l.Close)
			var pl net.Listener = &tcpListener{Listener: l, s: s}
			if la.transport == TransportTLS {
				pl = tls.NewListener(pl, cfg.TLSConfig)
				s.tlsPorts[l.Addr().(*net.TCPAddr).Port] = true
				if s.tlsHost == "" && net.ParseIP(la.host) == nil && la.host != "" {
					s.tlsHost = la.host
				}
			}
			sc.ListenerConfigs = append(sc.ListenerConfigs, turn.ListenerConfig{
				Listener:              streamListener{Listener: pl, s: s},
				RelayAddressGenerator: gen,
				PermissionHandler:     s.permitPeer,
			})
			s.endpoints = append(s.endpoints, Endpoint{Transport: la.transport, Addr: l.Addr()})
		}
	}
	return closers, nil
}

func countTransport(es []Endpoint, t Transport) int {
	n := 0
	for _, e := range es {
		if e.Transport == t {
			n++
		}
	}

	return n
}

// Endpoints returns the bound listeners in Config.Listen order.
func (s *Server) Endpoints() []Endpoint {
	return append([]Endpoint(nil), s.endpoints...)
}

// Allocations returns the number of allocations currently held.
func (s *Server) Allocations() int {
	return int(s.active.Load())
}

// Close stops the server: it closes the listeners, the accepted TCP/TLS
// connections and every relay socket, then waits (bounded) for pion/turn's
// goroutines to end and unregisters the metrics. Calling it again returns
// the first result.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		close(s.closed)
		s.mu.Lock()
		s.closing = true
		conns := make([]*tcpConn, 0, len(s.conns))
		for c := range s.conns {
			conns = append(conns, c)
		}
		s.mu.Unlock()

		if err := s.pion.Close(); err != nil {
			s.closeErr = fmt.Errorf("close turn listeners: %w", err)
		}
		// pion/turn does not close accepted connections; closing the socket
		// ends its read loop, which then calls tcpConn.Close.
		for _, c := range conns {
			_ = c.Conn.Close()
		}
		if !waitUntil(func() bool { return s.loops.n.Load() == 0 }, closeTimeout) {
			s.log.Warn("close: pion read loops still running", "loops", s.loops.n.Load())
		}
		// Each ended read loop closes its allocations; their relay sockets
		// close and their relay goroutines delete them.
		drained := func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()

			return len(s.relays) == 0 && s.active.Load() == 0
		}
		if !waitUntil(drained, closeTimeout) {
			s.mu.Lock()
			left := make([]*relayConn, 0, len(s.relays))
			for c := range s.relays {
				left = append(left, c)
			}
			s.mu.Unlock()
			s.log.Warn("close: closing leftover relay sockets", "relays", len(left))
			for _, c := range left {
				_ = c.Close()
			}
			waitUntil(func() bool { return s.active.Load() == 0 }, closeTimeout)
		}
		s.metrics.allocationsActive.Set(0)
		s.metrics.unregister()
		s.log.Info("turn server stopped")
	})

	return s.closeErr
}

// waitUntil polls cond until it holds or timeout passes.
func waitUntil(cond func() bool, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}

	return true
}

// track adds c to set, and runs added under the same lock, unless the
// server is closing (then Close will not see c, and c must not start).
func track[K comparable](s *Server, set map[K]struct{}, c K, added func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	set[c] = struct{}{}
	added()

	return true
}

func (s *Server) trackConn(c *tcpConn) bool {
	return track(s, s.conns, c, func() { s.loops.Add(1) })
}

func (s *Server) untrackConn(c *tcpConn) {
	s.mu.Lock()
	_, ok := s.conns[c]
	delete(s.conns, c)
	s.mu.Unlock()
	if ok {
		s.loops.Done()
	}
}

func (s *Server) trackRelay(c *relayConn) bool {
	return track(s, s.relays, c, func() {})
}

func (s *Server) untrackRelay(c *relayConn) {
	s.mu.Lock()
	delete(s.relays, c)
	s.mu.Unlock()
}

// relayCount returns the number of open relay sockets.
func (s *Server) relayCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()

	return len(s.relays)
}

// permitPeer is pion/turn's PermissionHandler for CreatePermission and
// ChannelBind. RFC 8656 §10.2/§12.2 let the server refuse a peer address by
// local policy; pion/turn then answers an error response (see PeerAllowed for
// the policy).
func (s *Server) permitPeer(client net.Addr, peer net.IP) bool {
	if s.peerAllowed(netIPToAddr(peer)) {
		return true
	}
	s.metrics.permissionsDenied.Inc()
	s.log.Debug("peer refused", "src", client.String(), "peer", peer.String())

	return false
}

// peerAllowed applies PeerAllowed and also refuses the server's own
// addresses (PublicIP and every address of the machine's interfaces) unless
// AllowPeers lists them: relaying to itself would let a client reach the
// SIP proxy or other local services from a trusted source address, or loop
// through the TURN listener.
func (s *Server) peerAllowed(ip netip.Addr) bool {
	if !PeerAllowed(ip, s.cfg.AllowPeers) {
		return false
	}
	if _, self := s.selfAddrs[ip.Unmap()]; !self {
		return true
	}
	for _, p := range s.cfg.AllowPeers {
		if p.Contains(ip.Unmap()) {
			return true
		}
	}

	return false
}

// localAddrs returns the addresses of the machine's interfaces and the
// public ones (PublicIP, and PublicIP6 when valid).
func localAddrs(public ...netip.Addr) map[netip.Addr]struct{} {
	m := map[netip.Addr]struct{}{}
	for _, p := range public {
		if p.IsValid() {
			m[p.Unmap()] = struct{}{}
		}
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(ipn.IP); ok {
					m[ip.Unmap()] = struct{}{}
				}
			}
		}
	}

	return m
}

// admitAllocation is pion/turn's QuotaHandler, called for an authenticated
// Allocate before the relay socket is made. RFC 8656 §7.2: a server
// may refuse with 486 (Allocation Quota Reached) based on the username.
func (s *Server) admitAllocation(username, _ string, src net.Addr) bool {
	user := quotaUser(username)
	if s.quota.admit(user, s.now()) {
		return true
	}
	s.metrics.quotaRejections.Inc()
	s.log.Info("allocation quota reached", "user", user, "src", src.String(), "max", s.cfg.MaxAllocationsPerUser)

	return false
}

// transportOf names the transport of a pion 5-tuple's server address.
func (s *Server) transportOf(dst net.Addr) Transport {
	if a, ok := dst.(*net.TCPAddr); ok {
		if s.tlsPorts[a.Port] {
			return TransportTLS
		}

		return TransportTCP
	}

	return TransportUDP
}

// eventHandler returns pion/turn's allocation lifecycle callbacks, which feed
// the quota, the metrics and the log.
func (s *Server) eventHandler() turn.EventHandler {
	return turn.EventHandler{
		// pion calls OnAuth right after its MESSAGE-INTEGRITY check of a
		// request whose user authKey knew: this is where a wrong password
		// (or a forged REST password) is seen.
		OnAuth: func(src, _ net.Addr, _, username, _ string, method string, verdict bool) {
			if !verdict {
				s.metrics.authFailures.Inc()
				s.log.Debug("authentication failed", "user", username, "src", src.String(), "method", method)
				s.guardFail(src, username)

				return
			}
			s.guardSucceed(src, username)
		},
		OnAllocationCreated: func(src, dst net.Addr, _, username, _ string, relay net.Addr, _ int) {
			s.quota.created(quotaUser(username))
			s.allocs.created(src, dst, Allocation{User: quotaUser(username), Username: username, Client: src.String(),
				Transport: string(s.transportOf(dst)), Relay: relay.String(), Created: s.now()})
			s.metrics.allocations.Inc()
			s.metrics.allocationsActive.Set(float64(s.active.Add(1)))
			s.log.Info("allocation created", "user", quotaUser(username), "username", username,
				"src", src.String(), "transport", string(s.transportOf(dst)), "relay", relay.String())
		},
		OnAllocationDeleted: func(src, dst net.Addr, _, username, _ string) {
			s.quota.deleted(quotaUser(username))
			s.allocs.deleted(src, dst)
			s.metrics.allocationsActive.Set(float64(s.active.Add(-1)))
			s.log.Debug("allocation deleted", "user", quotaUser(username), "src", src.String(),
				"transport", string(s.transportOf(dst)))
		},
		OnPermissionCreated: func(src, _ net.Addr, _, username, _ string, _ net.Addr, peer net.IP) {
			s.metrics.permissions.Inc()
			s.log.Debug("permission created", "user", quotaUser(username), "src", src.String(), "peer", peer.String())
		},
		OnChannelCreated: func(src, _ net.Addr, _, username, _ string, _, peer net.Addr, number uint16) {
			s.metrics.channels.Inc()
			s.log.Debug("channel bound", "user", quotaUser(username), "src", src.String(),
				"peer", peer.String(), "channel", "0x"+strconv.FormatUint(uint64(number), 16))
		},
	}
}

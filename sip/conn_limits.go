package sip

import (
	"errors"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/switchboard/switchboard/internal/fielderr"

	gosip "github.com/emiago/sipgo/sip"
)

// ConnLimits bounds the connections the switch accepts on its stream
// listeners (TCP, TLS and WebSocket), so that connections opened and left
// idle cannot use up its file descriptors and memory.
type ConnLimits struct {
	// IdleTimeout closes a connection that has not delivered a complete
	// SIP request within IdleTimeout of being accepted, or on which
	// nothing was read or written for IdleTimeout while no registration
	// binding uses it. A connection that carries a binding (an RFC 5626
	// flow) is kept however quiet it is: the phone is reached over it.
	// Default 60s.
	IdleTimeout time.Duration
	// MaxPerSource caps the connections open at once from one IP address;
	// beyond it a new connection is closed as soon as it is accepted.
	// Default 100.
	MaxPerSource int
	// Max caps the accepted connections open at once in all; beyond it a
	// new connection is closed as soon as it is accepted. Default: the
	// soft RLIMIT_NOFILE less fdReserve descriptors kept for UDP, media,
	// the database and HTTP, and at least 64.
	Max int
}

// fdReserve is what the default ConnLimits.Max leaves of the descriptor
// limit for everything but accepted SIP connections.
const fdReserve = 1024

func (c *ConnLimits) setDefaults() {
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 60 * time.Second
	}
	if c.MaxPerSource == 0 {
		c.MaxPerSource = 100
	}
	if c.Max == 0 {
		c.Max = maxConnsForFDLimit()
	}
}

func (c *ConnLimits) validate() error {
	switch {
	case c.IdleTimeout < 0:
		return fielderr.New("IdleTimeout", "%s: must not be negative", c.IdleTimeout)
	case c.MaxPerSource < 0:
		return fielderr.New("MaxPerSource", "%d: must not be negative", c.MaxPerSource)
	case c.Max < 0:
		return fielderr.New("Max", "%d: must not be negative (0: from the file descriptor limit)", c.Max)
	}
	return nil
}

// maxConnsForFDLimit is the default ConnLimits.Max: the soft limit on open
// files less fdReserve, at least 64.
func maxConnsForFDLimit() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 64
	}
	if rl.Cur > math.MaxInt32 {
		return math.MaxInt32
	}
	return max(int(rl.Cur)-fdReserve, 64)
}

// temporaryAcceptError reports whether an accept failure is one that passes
// by itself: out of descriptors or kernel memory, a connection aborted
// before it was accepted, or a timeout.
func temporaryAcceptError(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var te interface{ Temporary() bool }
	return errors.As(err, &te) && te.Temporary()
}

// flowKey names a connection as a message's transport and source do.
type flowKey struct {
	transport string // upper case: TCP, TLS, WS
	remote    netip.AddrPort
}

// connTracker admits, counts and sweeps the connections accepted by every
// flowListener of one Server. One goroutine (run) closes idle connections.
type connTracker struct {
	cfg      ConnLimits
	log      *slog.Logger
	hasFlow  func(transport string, source netip.AddrPort) bool
	dropFlow func(transport string, source netip.AddrPort)

	mu    sync.RWMutex
	conns map[*flowConn]struct{}
	flows map[flowKey][]*flowConn
	perIP map[netip.Addr]int

	refusals logLimiter
	closes   logLimiter
	// Connections closed by sweeps since the last line logged; only the
	// sweeping goroutine touches them.
	closedSilent, closedIdle int
}

func newConnTracker(cfg ConnLimits, reg Registrar, log *slog.Logger) *connTracker {
	return &connTracker{
		cfg: cfg, log: log, hasFlow: reg.HasFlow, dropFlow: reg.DropFlow,
		conns: map[*flowConn]struct{}{}, flows: map[flowKey][]*flowConn{}, perIP: map[netip.Addr]int{},
		refusals: logLimiter{every: 10 * time.Second}, closes: logLimiter{every: 10 * time.Second},
	}
}

// open returns the number of connections admitted and not yet closed.
func (t *connTracker) open() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.conns)
}

// admit starts tracking c, accepted on transport, and returns it wrapped,
// with wrap (if any) layered over it; or, when the global or per-source cap
// is reached, closes it at once and returns nil.
func (t *connTracker) admit(c net.Conn, transport string, wrap func(net.Conn) net.Conn) *flowConn {
	now := time.Now()
	key := flowKey{transport, addrPortOf(c.RemoteAddr())}
	ip := key.remote.Addr()
	fc := &flowConn{Conn: c, key: key, accepted: now, onClose: t.release, closed: make(chan struct{})}
	fc.active.Store(now.UnixNano())
	if wrap != nil {
		fc.outer = &onceConn{Conn: wrap(fc)}
	}
	t.mu.Lock()
	refused := ""
	switch {
	case len(t.conns) >= t.cfg.Max:
		refused = "too many connections"
	case t.perIP[ip] >= t.cfg.MaxPerSource:
		refused = "too many connections from this source"
	}
	if refused != "" {
		open, fromIP := len(t.conns), t.perIP[ip]
		t.mu.Unlock()
		if n, ok := t.refusals.allow(now); ok {
			t.log.Warn("connection refused: "+refused, "transport", transport, "source", key.remote.String(),
				"connections", open, "from_source", fromIP, "max", t.cfg.Max, "max_per_source", t.cfg.MaxPerSource,
				"refused_since_last_log", n)
		}
		refuse(c)
		return nil
	}
	t.conns[fc] = struct{}{}
	t.flows[key] = append(t.flows[key], fc)
	t.perIP[ip]++
	t.mu.Unlock()
	return fc
}

// refuse closes a connection the caps do not admit, with a reset where it
// can so that the socket is gone at once (no TIME_WAIT on our side).
func refuse(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// release forgets fc, which has closed, and drops the bindings made over it.
func (t *connTracker) release(fc *flowConn) {
	t.mu.Lock()
	if _, ok := t.conns[fc]; ok {
		delete(t.conns, fc)
		ip := fc.key.remote.Addr()
		if t.perIP[ip]--; t.perIP[ip] <= 0 {
			delete(t.perIP, ip)
		}
		fs := t.flows[fc.key]
		for i, o := range fs {
			if o == fc {
				fs = append(fs[:i], fs[i+1:]...)
				break
			}
		}
		if len(fs) == 0 {
			delete(t.flows, fc.key)
		} else {
			t.flows[fc.key] = fs
		}
	}
	t.mu.Unlock()
	t.dropFlow(fc.key.transport, fc.key.remote)
}

// sawRequest marks the connection req arrived on as having delivered a
// complete SIP message. Server.handle calls it for every request.
func (t *connTracker) sawRequest(req *gosip.Request) {
	tr := req.Transport()
	if strings.EqualFold(tr, "UDP") {
		return
	}
	src, err := netip.ParseAddrPort(req.Source())
	if err != nil {
		return
	}
	t.seen(flowKey{strings.ToUpper(tr), netip.AddrPortFrom(src.Addr().Unmap(), src.Port())})
}

func (t *connTracker) seen(k flowKey) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, fc := range t.flows[k] {
		if !fc.messaged.Load() {
			fc.messaged.Store(true)
		}
	}
}

// run closes idle connections (ConnLimits.IdleTimeout) until stop is
// closed. It checks a quarter of the timeout apart, at most every 5 s.
func (t *connTracker) run(stop <-chan struct{}) {
	every := min(max(t.cfg.IdleTimeout/4, 10*time.Millisecond), 5*time.Second)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-tick.C:
			t.sweep(now)
		}
	}
}

// sweep closes the connections that sent no complete request within the
// idle timeout of being accepted, and those idle for the timeout; but never
// one that carries a binding.
func (t *connTracker) sweep(now time.Time) {
	idle := t.cfg.IdleTimeout
	var silent, quiet []*flowConn
	t.mu.RLock()
	for fc := range t.conns {
		switch {
		case !fc.messaged.Load():
			if now.Sub(fc.accepted) >= idle {
				silent = append(silent, fc)
			}
		case now.Sub(time.Unix(0, fc.active.Load())) >= idle:
			quiet = append(quiet, fc)
		}
	}
	t.mu.RUnlock()
	// The registrar's lock is not taken under ours. A request may have
	// come in since the look above: the binding it made is checked after
	// the marks it set.
	var closing []*flowConn
	for _, fc := range silent {
		if !fc.messaged.Load() && !t.hasFlow(fc.key.transport, fc.key.remote) {
			closing = append(closing, fc)
			t.closedSilent++
		}
	}
	for _, fc := range quiet {
		if time.Since(time.Unix(0, fc.active.Load())) >= idle && !t.hasFlow(fc.key.transport, fc.key.remote) {
			closing = append(closing, fc)
			t.closedIdle++
		}
	}
	if len(closing) > 0 {
		if _, ok := t.closes.allow(now); ok {
			t.log.Info("idle connections closed", "no_request", t.closedSilent, "idle", t.closedIdle,
				"idle_timeout", idle, "remaining", t.open()-len(closing))
			t.closedSilent, t.closedIdle = 0, 0
		}
	}
	closeIdle(closing)
}

// closeIdle closes connections found idle. A TLS connection is closed as
// TLS (close_notify first, which may wait up to 5 s for a peer that does not
// read): those are closed in parallel, and closeIdle waits for them all.
func closeIdle(conns []*flowConn) {
	var wg sync.WaitGroup
	for _, fc := range conns {
		if fc.outer == nil {
			_ = fc.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			fc.outer.Close()
		}()
	}
	wg.Wait()
}

// logLimiter lets a log line through at most once every so often and
// counts the ones held back.
type logLimiter struct {
	every time.Duration

	mu      sync.Mutex
	last    time.Time
	skipped int
}

// allow reports whether to log at now and how many lines were held back
// since the last one logged.
func (l *logLimiter) allow(now time.Time) (int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		l.skipped++
		return 0, false
	}
	n := l.skipped
	l.last, l.skipped = now, 0
	return n, true
}

// startConnSweeperLocked starts the goroutine that closes idle connections, once;
// Close stops it.
func (s *Server) startConnSweeperLocked() {
	if !s.sweeping {
		s.sweeping = true
		s.untilCloseLocked(s.conns.run)
	}
}

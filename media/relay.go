package media

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/switchboard/switchboard/internal/lifecycle"

	"github.com/switchboard/switchboard/internal/hostaddr"

	"github.com/prometheus/client_golang/prometheus"
)

// Relay owns the media port range and relays the packets of its Streams.
// Its methods are safe for concurrent use.
type Relay struct {
	cfg      Config
	log      *slog.Logger
	publicIP netip.Addr
	bindIP   netip.Addr
	// publicIP6 is the address for IPv6 parties; invalid when there is
	// none (see PublicIPFor).
	publicIP6 netip.Addr
	epoch     time.Time
	pool      *portPool
	eng       *engine
	reg       prometheus.Registerer
	coll      *collector

	id *identity // DTLS certificate of WebRTC legs

	streamsTotal atomic.Uint64
	exhausted    atomic.Uint64
	timeouts     atomic.Uint64
	rtcFailures  atomic.Uint64

	mu      sync.Mutex
	closed  bool
	streams map[*Stream]struct{}
	done    counters // of streams already closed

	stop chan struct{}
	wg   sync.WaitGroup
}

// New starts a relay: it checks cfg (zero fields take their defaults), starts
// the packet loops and, if cfg.Timeout is positive, the idle timer. Metrics
// are registered on cfg.Metrics when it is not nil. Streams work from New
// on (the relay's sockets are its streams', opened as calls ask for them);
// Serve only waits, and Shutdown (or Close) stops it all.
func New(cfg Config) (*Relay, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	log, reg := cfg.Logger, cfg.Metrics
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "media")
	var public netip.Addr
	if cfg.PublicIP != "" {
		public = netip.MustParseAddr(cfg.PublicIP) // validated
	} else {
		public = hostaddr.Primary()
	}
	id, err := newIdentity()
	if err != nil {
		return nil, err
	}
	r := &Relay{
		id:       id,
		cfg:      cfg,
		log:      log,
		publicIP: public.Unmap(),
		bindIP:   bindAddr(netip.MustParseAddr(cfg.BindIP), log), // validated
		epoch:    cfg.now(),
		pool:     newPortPool(cfg.PortMin, cfg.PortMax, cfg.Quarantine, cfg.now),
		reg:      reg,
		streams:  make(map[*Stream]struct{}),
		stop:     make(chan struct{}),
	}
	r.publicIP6 = publicAddr6(cfg.PublicIP6, r.bindIP)
	eng, err := newEngine(r)
	if err != nil {
		return nil, fmt.Errorf("media: start packet loops: %w", err)
	}
	r.eng = eng
	if reg != nil {
		r.coll = newCollector(r)
		if err := reg.Register(r.coll); err != nil {
			r.eng.close()
			return nil, fmt.Errorf("media: register metrics: %w", err)
		}
	}
	if cfg.Timeout > 0 || cfg.ICETimeout > 0 {
		r.wg.Add(1)
		go r.timeoutLoop()
	}
	log.Info("media relay started", "public_ip", r.publicIP, "public_ip6", r.publicIP6, "bind_ip", r.bindIP,
		"ports", fmt.Sprintf("%d-%d", cfg.PortMin, cfg.PortMax), "pairs", r.pool.size(),
		"timeout", cfg.Timeout, "quarantine", cfg.Quarantine, "workers", cfg.Workers)
	return r, nil
}

// Serve waits until ctx ends or the relay is closed: its packet loops and
// idle timer run from New, so that streams work for callers (and tests)
// that never call Serve.
func (r *Relay) Serve(ctx context.Context) error { return lifecycle.Wait(ctx, r.stop) }

// Shutdown stops the relay (see Close); ctx is not needed, as closing
// sockets does not wait.
func (r *Relay) Shutdown(ctx context.Context) error { return r.Close() }

// Close stops all goroutines of the relay and closes all sockets, those of
// open Streams included. Streams stay readable (Stats) afterwards. It is
// idempotent and always returns nil.
func (r *Relay) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	live := make([]*Stream, 0, len(r.streams))
	for s := range r.streams {
		live = append(live, s)
	}
	r.mu.Unlock()
	close(r.stop)
	r.wg.Wait()
	for _, s := range live {
		s.closeRTC()
	}
	r.eng.close()
	if r.coll != nil {
		r.reg.Unregister(r.coll)
	}
	r.log.Info("media relay stopped")
	return nil
}

// PublicIP returns the address parties send media to, for the SDP.
func (r *Relay) PublicIP() netip.Addr { return r.publicIP }

// NewStream allocates a port pair for each side and starts relaying between
// them. No packet is relayed towards a side before its peer is set
// (SetPeer) or it latched. It returns an error wrapping ErrNoPorts when the
// port range is used up, and ErrClosed after Close.
//
// onTimeout, if not nil, is called once when neither party has sent anything
// for Config.Timeout while both sides have a peer set. It is called from the
// relay's timer goroutine, so it must not block (start the BYE in a goroutine
// of its own if it takes long); it may call the stream's Close.
func (r *Relay) NewStream(onTimeout func()) (*Stream, error) {
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	s := &Stream{r: r, onTimeout: onTimeout}
	s.lastActive.Store(r.clock())
	for side := A; side <= B; side++ {
		if err := r.openSide(s, side); err != nil {
			for o := A; o < side; o++ {
				r.eng.closeSide(s, o)
				r.pool.putBack(s.legs[o].pair)
			}
			if errors.Is(err, ErrNoPorts) {
				r.exhausted.Add(1)
			}
			return nil, err
		}
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		for side := A; side <= B; side++ {
			r.eng.closeSide(s, side)
			r.pool.putBack(s.legs[side].pair)
		}
		return nil, ErrClosed
	}
	r.streams[s] = struct{}{}
	r.eng.start(s)
	r.mu.Unlock()
	r.streamsTotal.Add(1)
	return s, nil
}

// openSide takes a port pair for side and binds its sockets, skipping pairs
// whose ports are in use by another program.
func (r *Relay) openSide(s *Stream, side Side) error {
	var lastErr error
	for tries := r.pool.size(); tries > 0; tries-- {
		pair, ok := r.pool.get()
		if !ok {
			break
		}
		port := r.pool.port(pair)
		err := r.eng.openSide(s, side, port)
		if err == nil {
			s.legs[side].pair = pair
			s.legs[side].port = port
			return nil
		}
		if !isAddrInUse(err) {
			r.pool.putBack(pair)
			return fmt.Errorf("media: bind port %d: %w", port, err)
		}
		// Someone else holds one of the ports: let it rest, try the next.
		r.log.Debug("media port in use, skipped", "port", port, "err", err)
		r.pool.release(pair)
		lastErr = err
	}
	if lastErr != nil {
		return fmt.Errorf("%w (last bind error: %v)", ErrNoPorts, lastErr)
	}
	return ErrNoPorts
}

// removeStream is Stream.Close's work on the relay's side. The stream no
// longer counts anything (accept ignores a closed stream), so its counters
// move to the totals in the same step as it leaves the live set.
func (r *Relay) removeStream(s *Stream) {
	s.mu.Lock()
	c := s.countersLocked()
	s.mu.Unlock()
	r.mu.Lock()
	if _, ok := r.streams[s]; !ok {
		r.mu.Unlock()
		return
	}
	delete(r.streams, s)
	r.done.add(c)
	closed := r.closed
	r.mu.Unlock()
	if !closed {
		// Closes the sockets and calls finish before it returns. Should
		// Close run meanwhile, the engine closes the sockets itself.
		r.eng.remove(s)
	}
}

// finish is called by the engine once a removed stream's sockets are
// closed: its ports go to quarantine.
func (r *Relay) finish(s *Stream) {
	r.pool.release(s.legs[A].pair)
	r.pool.release(s.legs[B].pair)
}

// clock returns nanoseconds since the relay started on its clock.
func (r *Relay) clock() int64 { return int64(r.cfg.now().Sub(r.epoch)) }

func (r *Relay) timeoutLoop() {
	defer r.wg.Done()
	every := time.Second
	for _, d := range []time.Duration{r.cfg.Timeout, r.cfg.ICETimeout} {
		if d > 0 {
			every = min(every, d/4)
		}
	}
	every = max(every, 10*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			if r.cfg.Timeout > 0 {
				r.scanTimeouts()
			}
			r.scanRTC(r.clock())
		}
	}
}

// scanTimeouts tells the owner of every armed stream idle for Config.Timeout,
// once per stream.
func (r *Relay) scanTimeouts() {
	now := r.clock()
	limit := int64(r.cfg.Timeout)
	var idle []*Stream
	r.mu.Lock()
	for s := range r.streams {
		if s.onTimeout != nil && !s.timedOut.Load() && now-s.lastActive.Load() >= limit {
			idle = append(idle, s)
		}
	}
	r.mu.Unlock()
	for _, s := range idle {
		if !s.armed() || !s.timedOut.CompareAndSwap(false, true) {
			continue
		}
		r.timeouts.Add(1)
		r.log.Info("media timeout", "port_a", s.LocalPort(A), "port_b", s.LocalPort(B),
			"idle", time.Duration(now-s.lastActive.Load()))
		s.onTimeout()
	}
}

// isAddrInUse reports whether a bind failed because of the port (taken by
// another program, or privileged), so that the next pair may be tried.
func isAddrInUse(err error) bool {
	return errors.Is(err, syscall.EADDRINUSE) || errors.Is(err, syscall.EACCES)
}

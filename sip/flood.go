package sip

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/internal/fielderr"
)

// FloodConfig is the per-source flood limit, checked on every datagram and
// stream read before anything is parsed or any transaction exists (as
// Kamailio's pike module does): a source IP that sends more than Requests
// messages within Window is dropped, silently, for Ban.
type FloodConfig struct {
	// Requests is the number of messages one source IP may send within
	// Window (default 500). Negative: no flood limit.
	Requests int
	// Window is the counting window (default 1s).
	Window time.Duration
	// Ban is how long a flooding source is dropped (default 60s).
	Ban time.Duration
	// Exempt lists networks never limited (a load generator, a trusted
	// peer).
	Exempt []netip.Prefix
}

func (c *FloodConfig) setDefaults() {
	if c.Requests == 0 {
		c.Requests = 500
	}
	if c.Window == 0 {
		c.Window = time.Second
	}
	if c.Ban == 0 {
		c.Ban = time.Minute
	}
}

func (c *FloodConfig) validate() error {
	if c.Window < 0 {
		return fielderr.New("Window", "%s: must be a positive duration", c.Window)
	}
	if c.Ban < 0 {
		return fielderr.New("Ban", "%s: must be a positive duration", c.Ban)
	}
	return nil
}

// maxFloodEntries bounds the memory of the flood table. Past it (a flood
// from that many addresses at once) new sources pass uncounted until a
// sweep makes room: the transaction cap (Config.MaxTransactions) is then
// what bounds the cost.
const maxFloodEntries = 1 << 16

// floodGuard implements FloodConfig.
type floodGuard struct {
	cfg FloodConfig
	log *slog.Logger
	now func() time.Time

	mu      sync.Mutex
	sources sourceTable[floodEntry]
	trusted map[netip.AddrPort]bool

	bans    atomic.Uint64 // sources banned so far
	dropped atomic.Uint64 // messages dropped while banned
}

type floodEntry struct {
	start time.Time
	n     int
	until time.Time
}

func newFloodGuard(cfg FloodConfig, log *slog.Logger) *floodGuard {
	sources := newSourceTable(maxFloodEntries,
		func(now time.Time) *floodEntry { return &floodEntry{start: now} },
		func(e *floodEntry, now time.Time) bool { return !now.Before(e.until) && now.Sub(e.start) >= cfg.Window })
	return &floodGuard{cfg: cfg, log: log, now: time.Now, sources: sources, trusted: map[netip.AddrPort]bool{}}
}

// trust exempts one source address and port (the WebRTC gateway's SIP
// socket, which carries every browser's signalling).
func (f *floodGuard) trust(src netip.AddrPort) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.trusted[netip.AddrPortFrom(src.Addr().Unmap(), src.Port())] = true
}

// allow counts one message from src and reports whether it may be
// processed.
func (f *floodGuard) allow(src netip.AddrPort) bool {
	if f.cfg.Requests < 0 || !src.IsValid() {
		return true
	}
	ip := src.Addr().Unmap()
	for _, p := range f.cfg.Exempt {
		if p.Contains(ip) {
			return true
		}
	}
	now := f.now()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.trusted) > 0 && f.trusted[netip.AddrPortFrom(ip, src.Port())] {
		return true
	}
	e := f.sources.entry(ip, now)
	if e == nil {
		return true
	}
	if now.Before(e.until) {
		f.dropped.Add(1)
		return false
	}
	if now.Sub(e.start) >= f.cfg.Window {
		e.start, e.n = now, 0
	}
	e.n++
	if e.n > f.cfg.Requests {
		e.until = now.Add(f.cfg.Ban)
		f.bans.Add(1)
		f.dropped.Add(1)
		// Once per ban: the ban itself keeps this quiet.
		f.log.Warn("source flooding: dropped", "source", ip.String(), "messages", e.n, "window", f.cfg.Window, "ban", f.cfg.Ban)
		return false
	}
	return true
}

// sweep forgets sources that are neither banned nor inside their window.
func (f *floodGuard) sweep() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sources.sweep(f.now())
}

// addrPortOfNet returns the address of a net.Addr as netip.AddrPort.
func addrPortOfNet(a net.Addr) netip.AddrPort {
	if a == nil {
		return netip.AddrPort{}
	}
	return addrPortOf(a)
}

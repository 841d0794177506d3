// Package admin is the switch's operations console and admin API: the JSON
// API under /api/v1/, the console's pages under /admin/ (plain HTML, CSS
// and JavaScript embedded in the binary), its sign-in sessions, and the
// admin accounts and API tokens they use.
//
// Callers of the API authenticate with the console's session cookie (and,
// for requests that change anything, the session's CSRF token in the
// X-CSRF-Token header) or with "Authorization: Bearer TOKEN". Every failed
// sign-in or token counts into the switch's one password ban
// (registrar.Guard).
package admin

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/switchboard/switchboard/internal/fielderr"
	"github.com/switchboard/switchboard/internal/lifecycle"
	"github.com/switchboard/switchboard/media/turn"
	"github.com/switchboard/switchboard/registrar"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/trace"
)

// Switch is what the console reads of the SIP proxy and asks of it.
// *sip.Server satisfies it.
type Switch interface {
	Calls() []sip.CallInfo
	CallsStarted() uint64
	CallCount() int
	Hangup(ctx context.Context, callID, reason string) error
	Draining() bool
	FloodBanned() []sip.FloodBan
	LiftFloodBan(addr netip.Addr) bool
}

// Users is the SIP user store the console manages. *registrar.Users
// satisfies it.
type Users interface {
	Add(ctx context.Context, name, password string) error
	SetPassword(ctx context.Context, name, password string) error
	Delete(ctx context.Context, name string) error
	List(ctx context.Context) ([]registrar.User, error)
}

// Config configures a Console.
type Config struct {
	// DB holds the admin accounts and tokens (migrated by New) and the
	// call records. Required.
	DB *sql.DB
	// Switch is the SIP proxy. Required.
	Switch Switch
	// Registrations returns the registrations in force
	// (registrar.Location.All). Required.
	Registrations func() []registrar.Binding
	// RegistrationsHead returns how many registrations are in force and
	// the first n of them in Registrations' order
	// (registrar.Location.Head), for the live view and the chart. Nil:
	// derived from Registrations.
	RegistrationsHead func(n int) (int, []registrar.Binding)
	// Users is the SIP user store. Required.
	Users Users
	// Guard is the switch's password ban: sign-in and token failures count
	// into it, and GET bans lists it. Nil bans nothing.
	Guard *registrar.Guard
	// Allocations returns the TURN allocations in force; nil when the
	// switch runs no TURN server.
	Allocations func() []turn.Allocation
	// Traces holds the SIP messages of the last calls. Required.
	Traces *trace.Store
	// Domain is the SIP domain, shown in the console.
	Domain string
	// Version is the switch's version, shown in the console.
	Version string
	// Logger receives the console's logs; nil is slog.Default().
	Logger *slog.Logger
	// SampleEvery is the interval of the statistics kept for GET stats
	// (default 10s); an hour of them is kept.
	SampleEvery time.Duration
	// LiveEvery is the interval of the console's live updates (default
	// 1s).
	LiveEvery time.Duration
	// SessionTTL is how long a console sign-in lasts (default 12h).
	SessionTTL time.Duration
}

// Validate checks c; errors name the field at fault (fielderr.Error).
func (c Config) Validate() error {
	for _, f := range []struct {
		name  string
		unset bool
	}{{"DB", c.DB == nil}, {"Switch", c.Switch == nil}, {"Registrations", c.Registrations == nil},
		{"Users", c.Users == nil}, {"Traces", c.Traces == nil}} {
		if f.unset {
			return fielderr.New(f.name, "is required")
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"SampleEvery", c.SampleEvery}, {"LiveEvery", c.LiveEvery}, {"SessionTTL", c.SessionTTL}} {
		if d.v < 0 {
			return fielderr.New(d.name, "%s: must not be negative", d.v)
		}
	}
	return nil
}

// Console is the operations console and admin API.
type Console struct {
	cfg      Config
	log      *slog.Logger
	accounts *Accounts
	sessions *sessions
	stats    *sampler
	live     *live
	loop     lifecycle.Loop
	now      func() time.Time

	mux *http.ServeMux
}

// New validates cfg, migrates the account tables, and returns the console;
// Serve runs its samplers, Shutdown stops them.
func New(ctx context.Context, cfg Config) (*Console, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	if cfg.SampleEvery == 0 {
		cfg.SampleEvery = 10 * time.Second
	}
	if cfg.LiveEvery == 0 {
		cfg.LiveEvery = time.Second
	}
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	if cfg.RegistrationsHead == nil {
		all := cfg.Registrations
		cfg.RegistrationsHead = func(n int) (int, []registrar.Binding) {
			regs := all()
			return len(regs), regs[:min(n, len(regs))]
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	accounts, err := OpenAccounts(ctx, cfg.DB)
	if err != nil {
		return nil, err
	}
	c := &Console{cfg: cfg, log: log.With("component", "admin"), accounts: accounts, now: time.Now,
		sessions: newSessions(cfg.SessionTTL)}
	c.stats = newSampler(cfg.SampleEvery, time.Hour)
	c.live = newLive(c)
	c.routes()
	return c, nil
}

// Accounts returns the admin account store.
func (c *Console) Accounts() *Accounts { return c.accounts }

// Handler serves /admin/ and /api/v1/.
func (c *Console) Handler() http.Handler { return c.mux }

// Serve samples the statistics and feeds the live updates until ctx ends
// or Shutdown.
func (c *Console) Serve(ctx context.Context) error {
	return c.loop.Run(ctx, func(ctx context.Context) {
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); c.sampleLoop(ctx) }()
		go func() { defer wg.Done(); c.live.run(ctx, c.cfg.LiveEvery) }()
		wg.Wait()
	})
}

// Shutdown stops Serve; live update streams end with it.
func (c *Console) Shutdown(ctx context.Context) error { return c.loop.Stop(ctx) }

func (c *Console) sampleLoop(ctx context.Context) {
	c.sample()
	t := time.NewTicker(c.cfg.SampleEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.sample()
			c.sessions.sweep(c.now())
		}
	}
}

func (c *Console) sample() {
	registrations, _ := c.cfg.RegistrationsHead(0)
	c.stats.add(point{
		Time:          c.now(),
		Calls:         c.cfg.Switch.CallCount(),
		Registrations: registrations,
		started:       c.cfg.Switch.CallsStarted(),
	})
}

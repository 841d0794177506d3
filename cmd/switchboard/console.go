package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard/switchboard/admin"
	"github.com/switchboard/switchboard/hep"
	"github.com/switchboard/switchboard/media/turn"
	"github.com/switchboard/switchboard/registrar"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/trace"
)

// consoleConfig is the console: section of the configuration file.
type consoleConfig struct {
	Enabled    bool `yaml:"enabled"`
	TraceCalls int  `yaml:"trace_calls"`
}

// hepConfig is the hep: section.
type hepConfig struct {
	Address  string `yaml:"address"`
	ID       uint32 `yaml:"id"`
	Password string `yaml:"password"`
}

// checkConsole validates the console: and hep: sections.
func (c *fileConfig) checkConsole() error {
	if c.Console.Enabled && c.Console.TraceCalls < 1 {
		return fmt.Errorf("console.trace_calls: %d: must be at least 1", c.Console.TraceCalls)
	}
	if c.HEP.Address != "" {
		if err := c.hepConfig().Validate(); err != nil {
			return fmt.Errorf("hep.address: %w", errors.Unwrap(err))
		}
	}
	return nil
}

func (c *fileConfig) hepConfig() hep.Config {
	return hep.Config{Address: c.HEP.Address, ID: c.HEP.ID, Password: c.HEP.Password}
}

// buildObservers makes what watches the SIP messages — the console's call
// traces, the HEP exporter — and hands them to the proxy's config.
func (sw *switchboard) buildObservers(cfg *fileConfig, sipCfg *sip.Config, metrics prometheus.Registerer) error {
	var observers []sip.Observer
	if cfg.Console.Enabled {
		sw.traces = trace.New(cfg.Console.TraceCalls)
		observers = append(observers, sw.traces.Observe)
	}
	if cfg.HEP.Address != "" {
		hc := cfg.hepConfig()
		hc.Logger = sw.log
		s, err := hep.New(hc)
		if err != nil {
			return err
		}
		sw.add("hep", s)
		sw.log.Info("exporting SIP as HEP3", "component", "hep", "address", hc.Address, "id", s.CaptureID())
		metrics.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "switchboard_hep_sent_total", Help: "HEP packets sent (hep.address)."},
				func() float64 { return float64(s.Sent.Load()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "switchboard_hep_dropped_total", Help: "HEP packets dropped: queue full or collector unreachable."},
				func() float64 { return float64(s.Dropped.Load()) }),
		)
		observers = append(observers, s.Observe)
	}
	switch len(observers) {
	case 0:
	case 1:
		sipCfg.Observer = observers[0]
	default:
		sipCfg.Observer = func(m *sip.Message) {
			for _, o := range observers {
				o(m)
			}
		}
	}
	return nil
}

// buildConsole makes the operations console and admin API, when enabled;
// addConsole (after the HTTP servers) makes it a part, so that it stops
// before them and its live streams do not hold their shutdown.
func (sw *switchboard) buildConsole(ctx context.Context, cfg *fileConfig, srv *sip.Server, reg *registrar.Registrar, turnSrv *turn.Server) error {
	if !cfg.Console.Enabled {
		return nil
	}
	ac := admin.Config{
		DB: sw.db, Switch: srv, Registrations: reg.Location().All,
		RegistrationsHead: reg.Location().Head, Users: reg.Users(), Guard: reg.Guard(),
		Traces: sw.traces, Domain: cfg.Domain, Version: version, Logger: sw.log,
	}
	if turnSrv != nil {
		ac.Allocations = turnSrv.AllocationList
	}
	c, err := admin.New(ctx, ac)
	if err != nil {
		return err
	}
	sw.console = c
	if sw.httpLn != nil {
		// For the CLI: http.listen may name port 0.
		if err := c.Accounts().SetServerURL(ctx, localURL(sw.httpLn.Addr().String())); err != nil {
			return err
		}
	}
	return nil
}

func (sw *switchboard) addConsole() {
	if sw.console != nil {
		sw.add("console", sw.console)
	}
}

// withConsole mounts the console at /admin/ and the API at /api/v1/ on mux.
func (sw *switchboard) withConsole(mux *http.ServeMux) *http.ServeMux {
	if sw.console != nil {
		mux.Handle("/admin/", sw.console.Handler())
		mux.Handle("/admin", sw.console.Handler())
		mux.Handle("/api/v1/", sw.console.Handler())
	}
	return mux
}

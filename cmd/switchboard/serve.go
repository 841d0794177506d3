package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/switchboard/switchboard/cdr"
	"github.com/switchboard/switchboard/registrar"
	"github.com/switchboard/switchboard/sip"
)

func cmdServe(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	config := fs.String("config", "", "configuration file (default: embedded configs/switchboard.yaml)")
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*config)
	if err != nil {
		return err
	}
	log := newLogger(stderr, cfg.Log.Level, cfg.Log.Format)
	slog.SetDefault(log)

	// SIGTERM drains; SIGINT (or a second signal) stops at once.
	term := make(chan os.Signal, 2)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(term)

	sw, err := start(context.Background(), cfg, log)
	if err != nil {
		return err
	}
	sig := <-term
	if sig == syscall.SIGTERM {
		log.Info("SIGTERM: draining (no new calls, finishing transactions)")
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		go func() {
			select {
			case <-term:
				log.Warn("second signal: stopping now")
				cancel()
			case <-ctx.Done():
			}
		}()
		err = sw.shutdown(ctx)
		cancel()
	} else {
		log.Info("SIGINT: stopping now")
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err = sw.shutdown(ctx)
	}
	log.Info("stopped")
	return err
}

// switchboard is a running switch: what start built and shutdown stops.
type switchboard struct {
	log     *slog.Logger
	sip     *sip.Server
	http    *http.Server
	stopBG  context.CancelFunc
	bg      sync.WaitGroup
	closeDB func() error
}

// start opens the database, binds every listener and starts serving. It
// returns once the switch is ready.
func start(ctx context.Context, cfg *fileConfig, log *slog.Logger) (*switchboard, error) {
	db, err := openDBFrom(ctx, cfg)
	if err != nil {
		return nil, err
	}
	sw := &switchboard{log: log, closeDB: db.Close}
	fail := func(err error) (*switchboard, error) {
		if sw.sip != nil {
			sw.sip.Close()
		}
		if sw.stopBG != nil {
			sw.stopBG()
			sw.bg.Wait()
		}
		db.Close()
		return nil, err
	}

	reg, err := registrar.New(ctx, cfg.registrarConfig(), db, log)
	if err != nil {
		return fail(err)
	}
	calls, err := cdr.Open(ctx, db, log)
	if err != nil {
		return fail(err)
	}
	bgctx, stop := context.WithCancel(context.Background())
	sw.stopBG = stop
	sw.goBG(func() { reg.Run(bgctx) })
	sw.goBG(func() { calls.Run(bgctx) })

	sipCfg, err := cfg.sipConfig()
	if err != nil {
		return fail(err)
	}
	srv, err := sip.New(sipCfg, reg, reg.Authenticator(), calls, log)
	if err != nil {
		return fail(err)
	}
	sw.sip = srv
	if err := srv.Listen(ctx); err != nil {
		return fail(err)
	}

	metrics := prometheus.NewRegistry()
	registerMetrics(metrics, srv, reg)

	mux := http.NewServeMux()
	if cfg.HTTP.Listen != "" {
		ln, err := net.Listen("tcp", cfg.HTTP.Listen)
		if err != nil {
			return fail(fmt.Errorf("http.listen %s: %w", cfg.HTTP.Listen, err))
		}
		mux.Handle("/sip", srv.WebSocketHandler(ln.Addr()))
		mux.Handle("/metrics", promhttp.HandlerFor(metrics, promhttp.HandlerOpts{}))
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/" {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprintf(w, "switchboard %s\nSIP domain: %s\nSIP over WebSocket: ws://%s/sip\n", version, cfg.Domain, r.Host)
		})
		sw.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
		log.Info("listening", "component", "http", "addr", ln.Addr().String())
		sw.goBG(func() {
			if err := sw.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("http server stopped", "error", err)
			}
		})
	}
	log.Info("switchboard ready", "version", version, "domain", cfg.Domain, "database", cfg.Database)
	return sw, nil
}

func (sw *switchboard) goBG(f func()) {
	sw.bg.Add(1)
	go func() {
		defer sw.bg.Done()
		f()
	}()
}

// shutdown stops accepting, lets transactions finish until ctx ends, then
// flushes pending database writes and closes everything.
func (sw *switchboard) shutdown(ctx context.Context) error {
	var errs []error
	if sw.http != nil {
		hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := sw.http.Shutdown(hctx); err != nil {
			sw.http.Close()
		}
		cancel()
	}
	errs = append(errs, sw.sip.Shutdown(ctx))
	sw.stopBG()
	sw.bg.Wait()
	errs = append(errs, sw.closeDB())
	return errors.Join(errs...)
}

func registerMetrics(r *prometheus.Registry, srv *sip.Server, reg *registrar.Registrar) {
	r.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "switchboard_sip_requests_total", Help: "SIP requests received."},
			func() float64 { return float64(srv.Stats.Requests.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "switchboard_sip_refused_total", Help: "SIP requests answered with an error status by the switch."},
			func() float64 { return float64(srv.Stats.Refused.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "switchboard_sip_malformed_total", Help: "Datagrams dropped as unparsable or oversized."},
			func() float64 { return float64(srv.Stats.Malformed.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchboard_registrar_bindings", Help: "Current registrations (bindings)."},
			func() float64 { return float64(reg.Location().Count()) }),
		prometheus.NewGoCollector(),
	)
}

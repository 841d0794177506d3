package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/switchboard/switchboard/cdr"
	"github.com/switchboard/switchboard/gateway"
	"github.com/switchboard/switchboard/internal/ratelog"
	"github.com/switchboard/switchboard/internal/sqldb"
	"github.com/switchboard/switchboard/media"
	"github.com/switchboard/switchboard/media/turn"
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
	raiseFDLimit(log) // before any listener: sip.connections.max derives from it

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
		log.Info("SIGTERM: draining (no new calls; calls in progress get shutdown_grace to end)", "shutdown_grace", cfg.ShutdownGrace)
		// The grace, then time for the BYEs and the last writes.
		ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace+15*time.Second)
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
	closers []func() error   // closed after the SIP server, in reverse order
	gw      *gateway.Gateway // closed before the SIP server: its BYEs and un-REGISTERs go through it
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
		if sw.gw != nil {
			sw.gw.Close()
		}
		if sw.sip != nil {
			sw.sip.Close()
		}
		for i := len(sw.closers) - 1; i >= 0; i-- {
			sw.closers[i]()
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

	metrics := prometheus.NewRegistry()
	sipCfg, err := cfg.sipConfig()
	if err != nil {
		return fail(err)
	}
	// Kept in the database so that the signatures in Record-Route (and so
	// the dialogs set up before a restart) stay valid across restarts.
	if sipCfg.Secret, err = sqldb.Setting(ctx, db, "sip_secret", randomSecret); err != nil {
		return fail(err)
	}
	if cfg.Media.Relay != sip.RelayNever {
		relay, err := media.New(cfg.mediaConfig(), log, metrics)
		if err != nil {
			return fail(fmt.Errorf("media: %w", err))
		}
		sw.closers = append(sw.closers, relay.Close)
		sipCfg.MediaRelay = relay
		log.Info("media relay ready", "component", "media", "public_ip", relay.PublicIP().String(), "ports", cfg.Media.RTPPorts, "mode", cfg.Media.Relay)
	}
	var turnSrv *turn.Server
	if cfg.TURN.Enabled {
		secret := cfg.TURN.Secret
		if secret == "" {
			secret, err = sqldb.Setting(ctx, db, "turn_rest_secret", randomSecret)
			if err != nil {
				return fail(err)
			}
		}
		tc := cfg.turnConfig(secret, sipCfg.TLS)
		tc.Guard = reg.Guard() // TURN passwords are SIP passwords: one budget
		turnSrv, err = turn.New(tc, reg.Users(), log, metrics)
		if err != nil {
			return fail(fmt.Errorf("turn: %w", err))
		}
		sw.closers = append(sw.closers, turnSrv.Close) // it logs its own listeners
	}
	srv, err := sip.New(sipCfg, reg, reg.Authenticator(), calls, log)
	if err != nil {
		return fail(err)
	}
	sw.sip = srv
	if err := srv.Listen(ctx); err != nil {
		return fail(err)
	}

	registerMetrics(metrics, srv, reg)

	// The WebRTC gateway talks SIP to the proxy's UDP listener like a phone
	// (docs/webrtc-protocol.md); it serves the web phone on the HTTP listener.
	if cfg.WebRTC.Enabled && cfg.HTTP.Listen != "" {
		proxy, local, err := gatewayProxyAddr(cfg, srv)
		if err != nil {
			log.Warn("WebRTC gateway not started", "component", "gateway", "error", err)
		} else {
			gc := cfg.gatewayConfig(proxy, local, iceServersFor(turnSrv))
			gc.Guard = reg.Guard() // counted per browser address and user
			gw, err := gateway.New(gc, log)
			if err != nil {
				return fail(err)
			}
			sw.gw = gw
			if err := gw.Start(ctx); err != nil {
				return fail(err)
			}
			// Every browser signs in from the gateway's SIP socket; the
			// gateway reports each browser's failures to the shared guard
			// under the browser's address, so the registrar must neither
			// count nor ban that socket (other sources on its IP still are).
			reg.Authenticator().Trust(gw.SIPAddr())
			srv.Trust(gw.SIPAddr())
		}
	}

	mux := http.NewServeMux()
	if cfg.HTTP.Listen != "" {
		ln, err := net.Listen("tcp", cfg.HTTP.Listen)
		if err != nil {
			return fail(fmt.Errorf("http.listen %s: %w", cfg.HTTP.Listen, err))
		}
		// Pages of other sites must not drive SIP through their visitors'
		// browsers (the gateway applies the same rule to /ws).
		mux.Handle("/sip", checkOrigin(cfg.HTTP.AllowedOrigins, srv.WebSocketHandler(ln.Addr())))
		if turnSrv != nil {
			mux.Handle("/api/turn", refuseBanned(reg.Guard(), turnSrv.ICEServersHandler(basicAuth(reg.Users(), reg.Guard()))))
		}
		mux.Handle("/metrics", metricsAccess(cfg.HTTP.Metrics, promhttp.HandlerFor(metrics, promhttp.HandlerOpts{})))
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
		if sw.gw != nil {
			// The web phone at / and its signalling at /ws.
			mux.Handle("/", sw.gw.Handler())
			mux.Handle("/ws", checkOrigin(cfg.HTTP.AllowedOrigins, sw.gw.Handler()))
		} else {
			mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/" {
					http.NotFound(w, r)
					return
				}
				w.Header().Set("Content-Type", "text/plain; charset=utf-8")
				fmt.Fprintf(w, "switchboard %s\nSIP domain: %s\nSIP over WebSocket: ws://%s/sip\n", version, cfg.Domain, r.Host)
			})
		}
		// Idle keep-alive connections are closed after two minutes, so
		// that idle HTTP clients cannot hold file descriptors forever
		// (WebSockets are hijacked and not affected); net/http's accept
		// loop backs off on EMFILE by itself. Its error log is
		// rate-limited like everything the network can make loud.
		sw.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
			MaxHeaderBytes: 64 << 10,
			ErrorLog:       slog.NewLogLogger(ratelog.New(log.Handler(), 5, 20, slog.LevelInfo), slog.LevelWarn)}
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
	// Calls get shutdown_grace to end, then the switch hangs them up;
	// then browsers' registrations are removed while the proxy still runs.
	sw.sip.Drain(ctx)
	if sw.gw != nil {
		errs = append(errs, sw.gw.Close())
	}
	errs = append(errs, sw.sip.Shutdown(ctx))
	for i := len(sw.closers) - 1; i >= 0; i-- {
		errs = append(errs, sw.closers[i]())
	}
	sw.stopBG()
	sw.bg.Wait()
	errs = append(errs, sw.closeDB())
	return errors.Join(errs...)
}

func randomSecret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

func registerMetrics(r *prometheus.Registry, srv *sip.Server, reg *registrar.Registrar) {
	r.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "switchboard_sip_requests_total", Help: "SIP requests received."},
			func() float64 { return float64(srv.Stats.Requests.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "switchboard_sip_refused_total", Help: "SIP requests answered with an error status by the switch."},
			func() float64 { return float64(srv.Stats.Refused.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "switchboard_sip_malformed_total", Help: "Datagrams dropped as unparsable or oversized."},
			func() float64 { return float64(srv.Stats.Malformed.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "switchboard_sip_strangers_refused_total", Help: "Requests from parties that are not local users refused or limited (security.external_callers)."},
			func() float64 { return float64(srv.Stats.Strangers.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "switchboard_sip_overload_refused_total", Help: "Requests answered 503 at the transaction cap (sip.max_transactions)."},
			func() float64 { return float64(srv.Stats.Overload.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "switchboard_sip_flood_bans_total", Help: "Sources banned by the flood limit (security.flood)."},
			func() float64 { b, _ := srv.FloodBans(); return float64(b) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "switchboard_sip_flood_dropped_total", Help: "Messages dropped from banned flooding sources."},
			func() float64 { _, d := srv.FloodBans(); return float64(d) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchboard_sip_transactions", Help: "Server transactions alive."},
			func() float64 { return float64(srv.LiveTransactions()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchboard_registrar_bindings", Help: "Current registrations (bindings)."},
			func() float64 { return float64(reg.Location().Count()) }),
		prometheus.NewGoCollector(),
	)
}

// gatewayProxyAddr returns the first UDP SIP listener as the WebRTC gateway
// reaches it (loopback when it is bound to every address) and the local
// address the gateway binds beside it.
func gatewayProxyAddr(cfg *fileConfig, srv *sip.Server) (proxy, local string, err error) {
	_, port, err := net.SplitHostPort(srv.Addrs()["udp"])
	host, ok := gatewayHost(cfg)
	if err != nil || !ok {
		return "", "", errors.New("webrtc: the gateway needs a udp:// listener in sip.listen")
	}
	return net.JoinHostPort(host, port), host, nil
}

// gatewayHost is the address the WebRTC gateway binds and sends SIP from:
// that of the first UDP listener, or loopback when it is bound to every
// address.
func gatewayHost(cfg *fileConfig) (string, bool) {
	for _, l := range cfg.SIP.Listen {
		pl, _ := sip.ParseListen(l)
		if pl.Transport != "udp" {
			continue
		}
		host, _, _ := net.SplitHostPort(pl.Addr)
		ip, err := netip.ParseAddr(host)
		switch {
		case err != nil || ip.IsUnspecified() && ip.Is4():
			host = "127.0.0.1"
		case ip.IsUnspecified():
			host = "::1"
		}
		return host, true
	}
	return "", false
}

// iceServersFor hands browsers the switch's own STUN/TURN server with fresh
// TURN REST credentials, when it runs.
func iceServersFor(t *turn.Server) func(user string) []webrtc.ICEServer {
	if t == nil {
		return nil
	}
	return func(user string) []webrtc.ICEServer {
		c, err := t.ICEConfig(user)
		if err != nil {
			return nil
		}
		out := make([]webrtc.ICEServer, 0, len(c.ICEServers))
		for _, s := range c.ICEServers {
			out = append(out, webrtc.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
		}
		return out
	}
}

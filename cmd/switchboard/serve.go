package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"database/sql"
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
	"syscall"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"golang.org/x/sync/errgroup"

	"github.com/switchboard/switchboard/admin"
	"github.com/switchboard/switchboard/cdr"
	"github.com/switchboard/switchboard/certs"
	"github.com/switchboard/switchboard/gateway"
	"github.com/switchboard/switchboard/internal/hostaddr"
	"github.com/switchboard/switchboard/internal/memidle"
	"github.com/switchboard/switchboard/internal/ratelog"
	"github.com/switchboard/switchboard/internal/sqldb"
	"github.com/switchboard/switchboard/media"
	"github.com/switchboard/switchboard/media/turn"
	"github.com/switchboard/switchboard/registrar"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/trace"
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
	applyRuntime(cfg.Runtime, log)

	// SIGTERM drains; SIGINT (or a second signal) stops at once.
	term := make(chan os.Signal, 2)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(term)

	sw, err := start(context.Background(), cfg, log)
	if err != nil {
		return err
	}
	var sig os.Signal
	select {
	case sig = <-term:
	case <-sw.ctx.Done():
		// A component failed: stop everything now, and say why.
		log.Error("a component failed: stopping", "error", context.Cause(sw.ctx))
		sig = syscall.SIGINT
	}
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

// component is the one lifecycle every part of the switch has: its New
// validated its Config and bound its sockets; Serve runs it until ctx ends
// (or it fails); Shutdown drains and stops it, bounded by ctx.
type component interface {
	Serve(ctx context.Context) error
	Shutdown(ctx context.Context) error
}

// part is a named component of the running switch.
type part struct {
	name string
	c    component
}

// switchboard is a running switch: what start built and shutdown stops.
type switchboard struct {
	log   *slog.Logger
	db    *sql.DB
	sip   *sip.Server
	host  netip.Addr // the host's address, for parts not told their own
	certs *certs.Source
	// The operations console (console.go) and the call traces it shows.
	traces  *trace.Store
	console *admin.Console
	// The HTTP and HTTPS listeners, bound before everything (bindHTTP)
	// and closed by shutdown whether or not their servers were built.
	httpLn, httpsLn net.Listener
	parts           []part // in start order; shut down in reverse
	g               *errgroup.Group
	ctx             context.Context // ends when a part's Serve fails (or at shutdown)
	stop            context.CancelFunc
}

// add appends a built component.
func (sw *switchboard) add(name string, c component) { sw.parts = append(sw.parts, part{name, c}) }

// start opens the database, builds (and so binds) every component in
// dependency order, then serves them all under one errgroup. It returns
// once the switch is ready; on an error everything built is stopped.
func start(ctx context.Context, cfg *fileConfig, log *slog.Logger) (*switchboard, error) {
	db, err := openDBFrom(ctx, cfg)
	if err != nil {
		return nil, err
	}
	sw := &switchboard{log: log, db: db}
	if err := sw.build(ctx, cfg); err != nil {
		stopped, cancel := context.WithCancel(context.Background())
		cancel()
		_ = sw.shutdown(stopped) // the build error is the one to report
		return nil, err
	}
	sw.ctx, sw.stop = context.WithCancel(context.Background())
	sw.g, sw.ctx = errgroup.WithContext(sw.ctx)
	for _, p := range sw.parts {
		sw.g.Go(func() error {
			if err := p.c.Serve(sw.ctx); err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			return nil
		})
	}
	log.Info("switchboard ready", "version", version, "domain", cfg.Domain, "database", cfg.Database)
	return sw, nil
}

// build makes the components: registrar and call records, the media relay
// and TURN server, the SIP proxy, the WebRTC gateway, and the HTTP server
// in front of them.
func (sw *switchboard) build(ctx context.Context, cfg *fileConfig) error {
	log, db := sw.log, sw.db
	if err := sw.bindHTTP(cfg); err != nil {
		return err
	}
	if err := sw.buildCerts(ctx, cfg); err != nil {
		return err
	}
	rc := cfg.registrarConfig()
	rc.DB, rc.Logger = db, log
	reg, err := registrar.New(ctx, rc)
	if err != nil {
		return err
	}
	sw.add("registrar", reg)
	calls, err := cdr.New(ctx, cdr.Config{DB: db, Logger: log})
	if err != nil {
		return err
	}
	sw.add("cdr", calls)
	// Memory a burst (a fleet re-registering) grew is returned once quiet.
	sw.add("memidle", memidle.New(memidle.Config{Logger: log}))

	metrics := prometheus.NewRegistry()
	sipCfg, err := cfg.sipConfig()
	if err != nil {
		return err
	}
	// The host's address, worked out once, for every part that has to tell
	// peers where to reach it and was not told.
	host := hostaddr.Primary()
	host6, hasIPv6 := hostaddr.Primary6()
	if sipCfg.Advertise == "" {
		sipCfg.Advertise = host.String()
	}
	if sipCfg.Advertise6 == "" && hasIPv6 {
		sipCfg.Advertise6 = host6.String()
	}
	if hostaddr.LoopbackOnly() && cfg.SIP.Advertise == "" {
		log.Warn("this host has no address but loopback: the switch runs on 127.0.0.1, only parties on this host can reach it " +
			"(give it a network, or set sip.advertise and media.public_ip)")
	}
	sw.host = host
	if sipCfg.TLS == nil {
		sipCfg.TLS = sw.certs.TLSConfig() // TURN over TLS shares it too
	}
	sipCfg.Registrar, sipCfg.Authenticator, sipCfg.Recorder, sipCfg.Logger = reg, reg.Authenticator(), calls, log
	// Kept in the database so that the signatures in Record-Route (and so
	// the dialogs set up before a restart) stay valid across restarts.
	if sipCfg.Secret, err = sqldb.Setting(ctx, db, "sip_secret", randomSecret); err != nil {
		return err
	}
	// The relay runs in every mode: with `never` it still bridges browsers
	// (WebRTC) and plain RTP phones, which cannot have media otherwise.
	{
		mc := cfg.mediaConfig()
		mc.Logger, mc.Metrics = log, metrics
		if mc.PublicIP == "" {
			mc.PublicIP = host.String()
		}
		if mc.PublicIP6 == "" && hasIPv6 {
			mc.PublicIP6 = host6.String()
		}
		relay, err := media.New(mc)
		if err != nil {
			return fmt.Errorf("media: %w", err)
		}
		sw.add("media", relay)
		sipCfg.MediaRelay = relay
	}
	turnSrv, err := sw.buildTURN(ctx, cfg, reg, sipCfg.TLS, metrics)
	if err != nil {
		return err
	}
	if err := sw.buildObservers(cfg, &sipCfg, metrics); err != nil {
		return err
	}
	trunks, link, err := sw.buildTrunks(ctx, cfg, reg, metrics)
	if err != nil {
		return err
	}
	sipCfg.Router = trunks
	srv, err := sip.New(sipCfg)
	if err != nil {
		return err
	}
	link.srv = srv
	sw.sip = srv
	sw.add("sip", srv)
	sw.add("trunk", trunks) // after the edge: it takes its registrations back through it at shutdown
	registerMetrics(metrics, srv, reg)
	gw, err := sw.buildGateway(cfg, srv, reg, turnSrv)
	if err != nil {
		return err
	}
	if err := sw.buildConsole(ctx, cfg, srv, reg, turnSrv); err != nil {
		return err
	}
	if err := sw.buildHTTP(cfg, srv, reg, turnSrv, gw, metrics); err != nil {
		return err
	}
	sw.addConsole()
	return nil
}

// buildTURN makes the STUN/TURN server, when enabled.
func (sw *switchboard) buildTURN(ctx context.Context, cfg *fileConfig, reg *registrar.Registrar, tlsCfg *tls.Config, metrics prometheus.Registerer) (*turn.Server, error) {
	if !cfg.TURN.Enabled {
		return nil, nil
	}
	secret := cfg.TURN.Secret
	if secret == "" {
		var err error
		if secret, err = sqldb.Setting(ctx, sw.db, "turn_rest_secret", randomSecret); err != nil {
			return nil, err
		}
	}
	tc := cfg.turnConfig(secret, tlsCfg)
	tc.Guard = reg.Guard() // TURN passwords are SIP passwords: one budget
	tc.Credentials, tc.Logger, tc.Metrics = reg.Users(), sw.log, metrics
	if !tc.PublicIP.IsValid() {
		tc.PublicIP = sw.host
	}
	t, err := turn.New(tc) // it logs its own listeners
	if err != nil {
		return nil, fmt.Errorf("turn: %w", err)
	}
	sw.add("turn", t)
	return t, nil
}

// buildGateway makes the WebRTC gateway, which talks SIP to the proxy's UDP
// listener like a phone (docs/webrtc-protocol.md), when enabled.
func (sw *switchboard) buildGateway(cfg *fileConfig, srv *sip.Server, reg *registrar.Registrar, turnSrv *turn.Server) (*gateway.Gateway, error) {
	if !cfg.WebRTC.Enabled || cfg.HTTP.Listen == "" {
		return nil, nil
	}
	proxy, local, err := gatewayProxyAddr(cfg, srv)
	if err != nil {
		sw.log.Warn("WebRTC gateway not started", "component", "gateway", "error", err)
		return nil, nil
	}
	gc := cfg.gatewayConfig(proxy, local, iceServersFor(turnSrv))
	gc.Guard = reg.Guard() // counted per browser address and user
	gc.Logger = sw.log
	if sw.httpsLn != nil {
		_, gc.HTTPSPort = hostPort(sw.httpsLn.Addr()) // the page's link when opened insecurely
	}
	gw, err := gateway.New(gc)
	if err != nil {
		return nil, err
	}
	sw.add("gateway", gw)
	// Every browser signs in from the gateway's SIP socket; the gateway
	// reports each browser's failures to the shared guard under the
	// browser's address, so the registrar must neither count nor ban that
	// socket (other sources on its IP still are), nor the flood limit
	// drop it.
	reg.Authenticator().Trust(gw.SIPAddr())
	srv.Trust(gw.SIPAddr())
	return gw, nil
}

// buildHTTP makes the HTTP and HTTPS servers on the listeners bindHTTP
// bound: the web phone, SIP over WebSocket, the TURN credentials API,
// metrics and health. While HTTPS runs, plain HTTP answers ACME HTTP-01
// challenges and sends clients that are not on loopback to HTTPS.
func (sw *switchboard) buildHTTP(cfg *fileConfig, srv *sip.Server, reg *registrar.Registrar, turnSrv *turn.Server, gw *gateway.Gateway, metrics *prometheus.Registry) error {
	if ln := sw.httpsLn; ln != nil {
		sw.serveHTTPS(sw.withConsole(newMux(cfg, srv.WebSocketTLSHandler(ln.Addr()), reg, turnSrv, gw, metrics)))
	}
	ln := sw.httpLn
	if ln == nil {
		return nil
	}
	h := http.Handler(sw.withConsole(newMux(cfg, srv.WebSocketHandler(ln.Addr()), reg, turnSrv, gw, metrics)))
	if sw.httpsLn != nil {
		_, port := hostPort(sw.httpsLn.Addr())
		h = redirectToHTTPS(h, port)
	}
	hs := newHTTPServer(sw, sw.certs.HTTPChallengeHandler(h))
	sw.log.Info("listening", "component", "http", "addr", ln.Addr().String())
	sw.add("http", httpServer{hs, ln})
	return nil
}

// newMux routes what HTTP and HTTPS serve alike; sipWS is SIP over
// WebSocket of that listener (ws or wss).
func newMux(cfg *fileConfig, sipWS http.Handler, reg *registrar.Registrar, turnSrv *turn.Server, gw *gateway.Gateway, metrics *prometheus.Registry) *http.ServeMux {
	mux := http.NewServeMux()
	// Pages of other sites must not drive SIP through their visitors'
	// browsers (the gateway applies the same rule to /ws).
	mux.Handle("/sip", checkOrigin(cfg.HTTP.AllowedOrigins, sipWS))
	if turnSrv != nil {
		mux.Handle("/api/turn", refuseBanned(reg.Guard(), turnSrv.ICEServersHandler(basicAuth(reg.Users(), reg.Guard()))))
	}
	mux.Handle("/metrics", metricsAccess(cfg.HTTP.Metrics, promhttp.HandlerFor(metrics, promhttp.HandlerOpts{})))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	if gw != nil {
		// The web phone at / and its signalling at /ws.
		mux.Handle("/", gw.Handler())
		mux.Handle("/ws", checkOrigin(cfg.HTTP.AllowedOrigins, gw.Handler()))
	} else {
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/" {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			scheme := "ws"
			if r.TLS != nil {
				scheme = "wss"
			}
			fmt.Fprintf(w, "switchboard %s\nSIP domain: %s\nSIP over WebSocket: %s://%s/sip\n", version, cfg.Domain, scheme, r.Host)
		})
	}
	return mux
}

// newHTTPServer is the net/http server of the HTTP and HTTPS listeners.
// Idle keep-alive connections are closed after two minutes, so that idle
// HTTP clients cannot hold file descriptors forever (WebSockets are
// hijacked and not affected); net/http's accept loop backs off on EMFILE
// by itself. Its error log (TLS handshake failures among it) is
// rate-limited like everything the network can make loud.
func newHTTPServer(sw *switchboard, h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(ratelog.New(sw.log.Handler(), 5, 20, slog.LevelInfo), slog.LevelWarn)}
}

// httpServer gives net/http's server the component shape.
type httpServer struct {
	*http.Server
	ln net.Listener
}

// Serve serves HTTP on the bound listener until Shutdown.
func (h httpServer) Serve(ctx context.Context) error {
	if err := h.Server.Serve(h.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown stops taking requests and waits (at most 5 s) for those in
// progress; WebSockets were hijacked and end with their components.
func (h httpServer) Shutdown(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := h.Server.Shutdown(ctx); err != nil {
		_ = h.Server.Close()
	}
	h.ln.Close() // in case Serve never ran
	return nil
}

// shutdown stops every component in reverse start order, each bounded by
// ctx — but first lets calls drain (sip.Server.Drain: shutdown_grace, then
// the switch hangs up), so that the gateway, stopped before the proxy,
// signs its browsers off through a proxy that still runs. Then it waits for
// every Serve to return and closes the database.
func (sw *switchboard) shutdown(ctx context.Context) error {
	var errs []error
	if sw.sip != nil {
		sw.sip.Drain(ctx)
	}
	for i := len(sw.parts) - 1; i >= 0; i-- {
		p := sw.parts[i]
		if err := p.c.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.name, err))
		}
	}
	for _, ln := range []net.Listener{sw.httpLn, sw.httpsLn} {
		if ln != nil {
			ln.Close() // those no server took (a server closed its own already)
		}
	}
	if sw.stop != nil {
		sw.stop()
	}
	if sw.g != nil {
		if err := sw.g.Wait(); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, sw.db.Close())
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
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchboard_nat_bindings", Help: "Current bindings behind NAT (nat.detect)."},
			func() float64 { return float64(reg.Location().NATCount()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "switchboard_nat_keepalives_sent_total", Help: "Keep-alive probes sent to UDP bindings behind NAT (nat.keepalive_interval)."},
			func() float64 { return float64(srv.NATStats().KeepalivesSent) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "switchboard_nat_keepalives_failed_total", Help: "OPTIONS keep-alive probes left unanswered for an interval."},
			func() float64 { return float64(srv.NATStats().KeepalivesFailed) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "switchboard_nat_bindings_unreachable_total", Help: "Bindings removed because nat.keepalive_failures probes in a row went unanswered."},
			func() float64 { return float64(srv.NATStats().Unreachable) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "switchboard_nat_stun_answered_total", Help: "STUN Binding requests answered on SIP UDP ports (RFC 5626 keep-alives)."},
			func() float64 { return float64(srv.NATStats().STUNAnswered) }),
		collectors.NewGoCollector(),
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

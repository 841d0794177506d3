package gateway

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/switchboard/switchboard/internal/lifecycle"

	"github.com/coder/websocket"
	"github.com/emiago/sipgo/sip"
	"github.com/pion/webrtc/v4"
)

// Gateway is the WebRTC gateway. New builds it, Start binds its SIP socket
// and starts serving, Handler serves the web phone and the signalling
// WebSocket, Close ends every call and registration and stops it.
type Gateway struct {
	cfg   Config
	log   *slog.Logger
	sip   *sipUA
	sipIP netip.Addr
	ports *portPool
	se    webrtc.SettingEngine
	web   http.Handler

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the gateway starts
	tabWG  sync.WaitGroup // WebSocket handlers
	regWG  sync.WaitGroup // registration refresh loops

	mu       sync.Mutex
	started  bool
	closed   bool
	tabs     map[*tab]bool
	accounts map[string]*account // by user name
	byToken  map[string]*account // by Contact user
	dialogs  map[string]*call    // by dialogKey
	calls    map[*call]bool
	guard    Guard
}

// New builds a gateway. log may be nil (slog.Default).
func New(cfg Config) (*Gateway, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	se, err := settingEngine(&cfg, pionLogs{log: log})
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	ua, err := newSIPUA(&cfg, log)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	ip := netip.MustParseAddr(cfg.ListenIP).Unmap()
	ctx, cancel := context.WithCancel(context.Background())
	g := &Gateway{
		cfg:      cfg,
		log:      log.With("component", "gateway"),
		sip:      ua,
		sipIP:    ip,
		ports:    newPortPool(ip, cfg.UDPPortMin, cfg.UDPPortMax),
		se:       se,
		ctx:      ctx,
		cancel:   cancel,
		tabs:     map[*tab]bool{},
		accounts: map[string]*account{},
		byToken:  map[string]*account{},
		dialogs:  map[string]*call{},
		calls:    map[*call]bool{},
		guard:    cfg.Guard,
	}
	if g.guard == nil {
		g.guard = newLoginGuard(cfg.LoginFailures, cfg.LoginWindow)
	}
	g.web = webHandler(cfg.HTTPSPort)
	srv := ua.srv
	srv.OnInvite(g.onInvite)
	srv.OnAck(g.onAck)
	srv.OnBye(g.inDialog)
	srv.OnInfo(g.inDialog)
	srv.OnMessage(g.onMessage)
	srv.OnOptions(g.onOptions)
	srv.OnNoRoute(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = respond(tx, req, 405, "Method Not Allowed", nil, sip.NewHeader("Allow", allowHeader))
	})
	if err := g.start(); err != nil {
		_ = g.Close() // what start bound; its error is the one to report
		return nil, err
	}
	return g, nil
}

// Serve waits until ctx ends or the gateway is closed. The gateway's SIP
// socket is bound and read from New on (sipgo sends from a UDP socket only
// once it reads it, and the gateway signs users in as soon as a browser
// asks), so Serve has nothing more to start.
func (g *Gateway) Serve(ctx context.Context) error { return lifecycle.Wait(ctx, g.ctx.Done()) }

// Shutdown is Close (bounded by the SIP timeouts, a few seconds; ctx is
// not needed).
func (g *Gateway) Shutdown(ctx context.Context) error { return g.Close() }

// start binds the gateway's SIP socket and starts serving it; it returns
// once the gateway is ready.
func (g *Gateway) start() error {
	ctx, cancel := context.WithTimeout(g.ctx, 10*time.Second)
	defer cancel()
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.sip.listen(ctx, g.cfg.ListenIP, g.cfg.SIPPort); err != nil {
		return err
	}
	g.started = true
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := g.sip.serve(); err != nil {
			g.log.Error("SIP listener stopped", "error", err)
		}
	}()
	if err := g.sip.ready(); err != nil {
		return err
	}
	g.log.Info("listening", "transport", "udp", "addr", g.sip.local.String(), "proxy", g.cfg.ProxyAddr)
	return nil
}

// SIPAddr returns the address of the gateway's SIP socket.
func (g *Gateway) SIPAddr() netip.AddrPort { return g.sip.local }

// Handler serves the web phone at / (with its script and style sheet) and
// the signalling WebSocket at /ws.
func (g *Gateway) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/ws", http.HandlerFunc(g.serveWS))
	mux.Handle("/", g.web)
	return mux
}

// Close ends every call (with BYE or CANCEL), closes every WebSocket,
// removes every registration and stops the SIP socket. It waits for all of
// it, bounded by the SIP timeouts (a few seconds).
func (g *Gateway) Close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	calls := make([]*call, 0, len(g.calls))
	for c := range g.calls {
		calls = append(calls, c)
	}
	tabs := make([]*tab, 0, len(g.tabs))
	for t := range g.tabs {
		tabs = append(tabs, t)
	}
	g.mu.Unlock()

	for _, c := range calls {
		c.post(event{kind: evShutdown})
	}
	for _, c := range calls {
		<-c.quit
	}
	for _, t := range tabs {
		t.close(websocket.StatusGoingAway, errShuttingDown, "the gateway is shutting down")
	}
	// Closing tabs leave their accounts; the last tab of each ends its
	// registration (an un-REGISTER bounded by sipTimeout).
	g.tabWG.Wait()
	g.regWG.Wait()
	g.cancel()
	err := g.sip.close()
	g.wg.Wait()
	return err
}

// goBG runs f in a goroutine the gateway waits for in Close. It reports
// false (and does not run f) once the gateway is closed.
func (g *Gateway) goBG(f func()) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		f()
	}()
	return true
}

// startCall registers a call and runs it.
func (g *Gateway) startCall(c *call, start func()) bool {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return false
	}
	g.calls[c] = true
	g.wg.Add(1)
	g.mu.Unlock()
	go func() {
		defer g.wg.Done()
		defer func() {
			g.mu.Lock()
			delete(g.calls, c)
			g.mu.Unlock()
		}()
		c.run(start)
	}()
	return true
}

func (g *Gateway) addDialog(key string, c *call) {
	g.mu.Lock()
	g.dialogs[key] = c
	g.mu.Unlock()
}

func (g *Gateway) dropDialog(key string, c *call) {
	g.mu.Lock()
	if g.dialogs[key] == c {
		delete(g.dialogs, key)
	}
	g.mu.Unlock()
}

// findDialog returns the call whose dialog a request from the SIP side
// belongs to: its Call-ID and our tag, which is in To.
func (g *Gateway) findDialog(req *sip.Request) *call {
	to := req.To()
	if to == nil || req.CallID() == nil {
		return nil
	}
	tag, _ := to.Params.Get("tag")
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.dialogs[dialogKey(req.CallID().Value(), tag)]
}

// tellUser sends a message to every tab of an account.
func (g *Gateway) tellUser(a *account, m serverMsg) {
	g.mu.Lock()
	tabs := make([]*tab, 0, len(a.tabs))
	for t := range a.tabs {
		tabs = append(tabs, t)
	}
	g.mu.Unlock()
	for _, t := range tabs {
		t.send(m)
	}
}

// randomID returns n random bytes as hex.
func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func randUint32() uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint32(b[:]) &^ (1 << 31)
}

// --- SIP requests from the switch ---

// onInvite handles INVITEs: re-INVITEs go to their call; a new INVITE for
// a signed-in user rings that user's tabs. The handler returns once the
// INVITE has its final response (sipgo ends the transaction when it
// returns); the call's goroutine sends it.
func (g *Gateway) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if to := req.To(); to != nil && to.Params.Has("tag") {
		g.inDialog(req, tx)
		return
	}
	g.mu.Lock()
	a := g.byToken[req.Recipient.User]
	closed := g.closed
	var idle []*tab
	tabs := 0
	if a != nil {
		for t := range a.tabs {
			tabs++
			if !t.busy() {
				idle = append(idle, t)
			}
		}
	}
	g.mu.Unlock()
	switch {
	case closed:
		_ = respond(tx, req, 503, "Service Unavailable", nil)
		return
	case a == nil || tabs == 0:
		_ = respond(tx, req, 480, "Temporarily Unavailable", nil)
		return
	case len(idle) == 0:
		_ = respond(tx, req, 486, "Busy Here", nil)
		return
	case req.From() == nil || req.CallID() == nil || req.CSeq() == nil:
		_ = respond(tx, req, 400, "Bad Request", nil)
		return
	}
	if hs := req.GetHeaders("Require"); len(hs) > 0 {
		// RFC 3261 §8.2.2.3: no extension is supported (100rel, timer, ...).
		var opts []string
		for _, h := range hs {
			opts = append(opts, h.Value())
		}
		_ = respond(tx, req, 420, "Bad Extension", nil, sip.NewHeader("Unsupported", strings.Join(opts, ", ")))
		return
	}
	if len(req.Body()) == 0 {
		// A late offer (RFC 3264 §5 in the 2xx) is not supported.
		_ = respond(tx, req, 488, "Not Acceptable Here", nil, sip.NewHeader("Warning", `399 gateway "an SDP offer is required"`))
		return
	}
	offer, err := parseSDP(string(req.Body()))
	if err != nil {
		_ = respond(tx, req, 488, "Not Acceptable Here", nil, sip.NewHeader("Warning", `399 gateway "unusable SDP"`))
		return
	}
	c := newCall(g, "in-"+randomID(6), false, a)
	c.sipOffer = offer
	c.invite.req, c.invite.tx = req, tx
	c.dlg = newUASDialog(req, a.contact)
	c.remoteURI = req.From().Address.String()
	c.remoteName = req.From().DisplayName
	if !tx.OnCancel(func(*sip.Request) { c.post(event{kind: evCancel}) }) {
		return // cancelled already
	}
	g.addDialog(c.dlg.key(), c)
	c.registered = true
	c.log.Info("incoming call", "from", c.remoteURI, "tabs", len(idle))
	if !g.startCall(c, func() { c.startIncoming(idle) }) {
		g.dropDialog(c.dlg.key(), c)
		_ = respond(tx, req, 503, "Service Unavailable", nil)
		return
	}
	select {
	case <-c.invite.sent:
	case <-c.quit:
	}
}

// inDialog hands a request inside a dialog to its call.
func (g *Gateway) inDialog(req *sip.Request, tx sip.ServerTransaction) {
	c := g.findDialog(req)
	if c == nil {
		_ = respond(tx, req, 481, "Call/Transaction Does Not Exist", nil)
		return
	}
	c.handleRequest(req, tx)
}

// onAck passes the ACK for a 2xx we sent to its call. (ACKs for non-2xx
// responses end in their transaction.)
func (g *Gateway) onAck(req *sip.Request, tx sip.ServerTransaction) {
	if c := g.findDialog(req); c != nil {
		c.post(event{kind: evRequest, req: req, done: make(chan struct{})})
	}
}

func (g *Gateway) onOptions(req *sip.Request, tx sip.ServerTransaction) {
	if to := req.To(); to != nil && to.Params.Has("tag") {
		g.inDialog(req, tx)
		return
	}
	_ = respond(tx, req, 200, "OK", nil, sip.NewHeader("Allow", allowHeader), sip.NewHeader("Accept", "application/sdp, text/plain"))
}

// onMessage delivers a SIP MESSAGE (RFC 3428) to every tab of its user.
func (g *Gateway) onMessage(req *sip.Request, tx sip.ServerTransaction) {
	g.mu.Lock()
	a := g.byToken[req.Recipient.User]
	g.mu.Unlock()
	if a == nil {
		_ = respond(tx, req, 480, "Temporarily Unavailable", nil)
		return
	}
	ct := "text/plain"
	if h := req.ContentType(); h != nil {
		ct = strings.ToLower(h.Value())
	}
	if !strings.HasPrefix(ct, "text/plain") {
		_ = respond(tx, req, 415, "Unsupported Media Type", nil, sip.NewHeader("Accept", "text/plain"))
		return
	}
	if len(req.Body()) > 16<<10 {
		_ = respond(tx, req, 413, "Request Entity Too Large", nil)
		return
	}
	from := ""
	name := ""
	if f := req.From(); f != nil {
		from, name = f.Address.String(), f.DisplayName
	}
	g.tellUser(a, serverMsg{Type: msgMessage, From: from, FromName: name, Text: string(req.Body())})
	_ = respond(tx, req, 200, "OK", nil)
}

// sendMessage sends a SIP MESSAGE from a user, answering the proxy's digest
// challenge with the user's credentials.
func (g *Gateway) sendMessage(ctx context.Context, a *account, to sip.Uri, text string) (*sip.Response, error) {
	req := sip.NewRequest(sip.MESSAGE, to)
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: a.user, Host: g.cfg.Domain}, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(16))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: to.Scheme, User: to.User, Host: to.Host, Port: to.Port}, Params: sip.NewParams()})
	cid := sip.CallIDHeader(sip.GenerateTagN(24))
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.MESSAGE})
	req.AppendHeader(sip.NewHeader("Content-Type", "text/plain; charset=utf-8"))
	req.SetBody([]byte(text))
	creds := a.creds()
	return g.sip.do(ctx, req, &creds)
}

// loginGuard is the Guard used when Config.Guard is nil: it counts failed
// sign-ins per browser address, whatever the user.
type loginGuard struct {
	max    int
	window time.Duration
	mu     sync.Mutex
	fails  map[netip.Addr][]time.Time
}

func newLoginGuard(max int, window time.Duration) *loginGuard {
	return &loginGuard{max: max, window: window, fails: map[netip.Addr][]time.Time{}}
}

// allowed reports whether ip may try to sign in now.
func (l *loginGuard) allowed(ip netip.Addr) bool {
	if l.max < 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.recent(ip)) < l.max
}

// Banned implements Guard: the address has spent its failures.
func (l *loginGuard) Banned(src netip.AddrPort, _ string) bool { return !l.allowed(src.Addr().Unmap()) }

// Fail implements Guard.
func (l *loginGuard) Fail(src netip.AddrPort, _ string) { l.failed(src.Addr().Unmap()) }

// Succeed implements Guard; a success changes nothing.
func (l *loginGuard) Succeed(netip.AddrPort, string) {}

func (l *loginGuard) failed(ip netip.Addr) {
	if l.max < 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fails[ip] = append(l.recent(ip), time.Now())
	if len(l.fails) > 10000 {
		for k := range l.fails {
			if len(l.recent(k)) == 0 {
				delete(l.fails, k)
			}
		}
	}
}

func (l *loginGuard) recent(ip netip.Addr) []time.Time {
	ts := l.fails[ip]
	cut := time.Now().Add(-l.window)
	i := 0
	for i < len(ts) && ts[i].Before(cut) {
		i++
	}
	ts = ts[i:]
	if len(ts) == 0 {
		delete(l.fails, ip)
	} else {
		l.fails[ip] = ts
	}
	return ts
}

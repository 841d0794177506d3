package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/emiago/sipgo/sip"
	"github.com/pion/webrtc/v4"
)

// Per-connection limits on what a browser may send.
const (
	outQueue     = 256                    // messages waiting for a slow browser before it is dropped
	writeTimeout = 10 * time.Second       // one message to the browser
	loginTimeout = 10 * time.Second       // the REGISTER that checks a password
	msgRate      = 100                    // messages per second a browser may send
	maxIDLen     = 64                     // call and request ids
	maxTextLen   = 8 << 10                // a text message
	maxSDPLen    = 32 << 10               // an offer or answer
	closeGrace   = 100 * time.Millisecond // lets queued messages out before a close
)

// tab is one WebSocket connection: a browser tab running the web phone (or
// any page speaking the protocol).
type tab struct {
	g      *Gateway
	conn   *websocket.Conn
	remote netip.AddrPort // the browser's address (IPv4-mapped ones unmapped)
	log    *slog.Logger
	out    chan []byte
	closeC chan closeReq
	ctx    context.Context
	cancel context.CancelFunc

	mu    sync.Mutex
	acct  *account
	calls map[string]*call
	gone  bool

	rateStart time.Time // owned by the reading goroutine
	rateCount int
}

type closeReq struct {
	code   websocket.StatusCode
	reason string
}

// serveWS upgrades a request to the signalling WebSocket and serves it
// until it closes.
func (g *Gateway) serveWS(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	if g.closed || !g.started {
		g.mu.Unlock()
		http.Error(w, "gateway unavailable", http.StatusServiceUnavailable)
		return
	}
	if len(g.tabs) >= g.cfg.MaxTabs {
		g.mu.Unlock()
		http.Error(w, "too many connections", http.StatusServiceUnavailable)
		return
	}
	g.tabWG.Add(1)
	g.mu.Unlock()
	defer g.tabWG.Done()

	// Only pages of the switch's own origin, or of Config.OriginPatterns,
	// may drive a browser's sign-in (coder/websocket answers 403 to others).
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		CompressionMode: websocket.CompressionDisabled,
		OriginPatterns:  g.cfg.OriginPatterns,
	})
	if err != nil {
		g.log.Debug("websocket upgrade failed", "remote", r.RemoteAddr, "error", err)
		return
	}
	conn.SetReadLimit(g.cfg.MaxMessageSize)
	ap, _ := netip.ParseAddrPort(r.RemoteAddr)
	ctx, cancel := context.WithCancel(g.ctx)
	t := &tab{
		g: g, conn: conn, remote: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()),
		log:    g.log.With("remote", r.RemoteAddr),
		out:    make(chan []byte, outQueue),
		closeC: make(chan closeReq, 1),
		ctx:    ctx, cancel: cancel,
		calls: map[string]*call{},
	}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		cancel()
		conn.Close(websocket.StatusGoingAway, "gateway shutting down")
		return
	}
	g.tabs[t] = true
	g.mu.Unlock()

	var writer sync.WaitGroup
	writer.Add(1)
	go func() {
		defer writer.Done()
		t.writeLoop()
	}()
	t.send(serverMsg{Type: msgHello, Version: protocolVersion})
	t.readLoop()

	t.leave()
	cancel()
	writer.Wait()
	conn.CloseNow()
	g.mu.Lock()
	delete(g.tabs, t)
	g.mu.Unlock()
}

// readLoop reads and handles the browser's messages until the connection
// ends.
func (t *tab) readLoop() {
	for {
		typ, data, err := t.conn.Read(t.ctx)
		if err != nil {
			if s := websocket.CloseStatus(err); s == websocket.StatusMessageTooBig {
				t.log.Info("websocket closed: message too big", "limit", t.g.cfg.MaxMessageSize)
			} else if s == -1 && !errors.Is(err, context.Canceled) && !errors.Is(err, net.ErrClosed) {
				t.log.Debug("websocket read", "error", err)
			}
			return
		}
		if !t.rateOK() {
			t.close(websocket.StatusPolicyViolation, errTooMany, fmt.Sprintf("more than %d messages per second", msgRate))
			return
		}
		if typ != websocket.MessageText {
			t.send(serverMsg{Type: msgError, Code: errBadRequest, Message: "messages are JSON text, not binary"})
			continue
		}
		var m clientMsg
		if err := json.Unmarshal(data, &m); err != nil {
			t.send(serverMsg{Type: msgError, Code: errBadRequest, Message: "malformed JSON: " + err.Error()})
			continue
		}
		t.handle(&m)
	}
}

func (t *tab) rateOK() bool {
	now := time.Now()
	if now.Sub(t.rateStart) >= time.Second {
		t.rateStart, t.rateCount = now, 0
	}
	t.rateCount++
	return t.rateCount <= msgRate
}

// writeLoop writes queued messages, pings an idle browser and closes the
// connection when asked.
func (t *tab) writeLoop() {
	ping := time.NewTicker(t.g.cfg.PingInterval)
	defer ping.Stop()
	write := func(b []byte) bool {
		ctx, cancel := context.WithTimeout(t.ctx, writeTimeout)
		defer cancel()
		if err := t.conn.Write(ctx, websocket.MessageText, b); err != nil {
			t.cancel()
			return false
		}
		return true
	}
	for {
		select {
		case b := <-t.out:
			if !write(b) {
				return
			}
		case cr := <-t.closeC:
			for more := true; more; {
				select {
				case b := <-t.out:
					more = write(b)
				default:
					more = false
				}
			}
			_ = t.conn.Close(cr.code, cr.reason)
			t.cancel()
			return
		case <-ping.C:
			ctx, cancel := context.WithTimeout(t.ctx, t.g.cfg.PingInterval)
			err := t.conn.Ping(ctx)
			cancel()
			if err != nil {
				t.log.Info("browser stopped answering pings", "error", err)
				t.cancel()
				return
			}
		case <-t.ctx.Done():
			return
		}
	}
}

// send queues a message for the browser. A browser that does not read its
// messages is disconnected rather than let the queue grow.
func (t *tab) send(m serverMsg) {
	b, err := json.Marshal(m)
	if err != nil {
		t.log.Error("marshal message", "error", err)
		return
	}
	select {
	case t.out <- b:
	case <-t.ctx.Done():
	default:
		t.log.Warn("browser too slow: closing its connection")
		t.cancel()
	}
}

// close sends an error message and closes the connection with code.
func (t *tab) close(code websocket.StatusCode, errCode, message string) {
	t.send(serverMsg{Type: msgError, Code: errCode, Message: message})
	select {
	case t.closeC <- closeReq{code: code, reason: message}:
	default:
	}
}

func (t *tab) account() *account {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.acct
}

// busy reports whether the tab has a call (ringing ones included).
func (t *tab) busy() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.calls) > 0
}

// addCall files a call under its id; false when the id is taken, the tab
// is closing, or it has too many calls.
func (t *tab) addCall(c *call) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.gone || t.calls[c.id] != nil || len(t.calls) >= t.g.cfg.MaxCallsPerTab {
		return false
	}
	t.calls[c.id] = c
	return true
}

func (t *tab) dropCall(id string, c *call) {
	t.mu.Lock()
	if t.calls[id] == c {
		delete(t.calls, id)
	}
	t.mu.Unlock()
}

func (t *tab) call(id string) *call {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.calls[id]
}

// leave ends the tab's calls and its sign-in.
func (t *tab) leave() {
	t.mu.Lock()
	t.gone = true
	calls := make([]*call, 0, len(t.calls))
	for _, c := range t.calls {
		calls = append(calls, c)
	}
	t.mu.Unlock()
	for _, c := range calls {
		c.post(event{kind: evTabGone, tab: t})
	}
	t.logout()
}

// handle acts on one message from the browser.
func (t *tab) handle(m *clientMsg) {
	if len(m.ID) > maxIDLen || len(m.Call) > maxIDLen {
		t.send(serverMsg{Type: msgError, Code: errBadRequest, Message: fmt.Sprintf("id and call must be at most %d characters", maxIDLen)})
		return
	}
	reply := func(code, msg string) {
		t.send(serverMsg{Type: msgError, Code: code, ID: m.ID, Call: m.Call, Message: msg})
	}
	switch m.Type {
	case msgPing:
		t.send(serverMsg{Type: msgPong, ID: m.ID})
		return
	case msgLogin:
		t.login(m)
		return
	case "":
		reply(errBadRequest, "missing type")
		return
	}
	a := t.account()
	switch m.Type {
	case msgLogout, msgCall, msgICE, msgAnswer, msgDecline, msgHangup, msgHold, msgResume, msgMessage:
		if a == nil {
			reply(errNotSignedIn, "sign in first")
			return
		}
	default:
		reply(errUnknownType, fmt.Sprintf("unknown message type %q", m.Type))
		return
	}
	switch m.Type {
	case msgLogout:
		t.leaveCalls()
		t.logout()
		t.send(serverMsg{Type: msgLoggedOut, ID: m.ID})
	case msgCall:
		t.placeCall(a, m)
	case msgMessage:
		t.message(a, m)
	default:
		if m.Call == "" {
			reply(errBadRequest, m.Type+" needs a call id")
			return
		}
		if (m.Type == msgAnswer) && (m.SDP == "" || len(m.SDP) > maxSDPLen) {
			reply(errBadRequest, "answer needs an sdp of at most 32 KiB")
			return
		}
		c := t.call(m.Call)
		if c == nil || !c.post(event{kind: evBrowser, tab: t, msg: m}) {
			reply(errUnknownCall, fmt.Sprintf("no call %q", m.Call))
		}
	}
}

// leaveCalls ends the tab's calls (sign-out).
func (t *tab) leaveCalls() {
	t.mu.Lock()
	calls := make([]*call, 0, len(t.calls))
	for _, c := range t.calls {
		calls = append(calls, c)
	}
	t.mu.Unlock()
	for _, c := range calls {
		c.post(event{kind: evTabGone, tab: t})
		<-c.quit
	}
}

// placeCall starts an outgoing call.
func (t *tab) placeCall(a *account, m *clientMsg) {
	reply := func(code, msg string) {
		t.send(serverMsg{Type: msgError, Code: code, ID: m.ID, Call: m.Call, Message: msg})
	}
	if m.SDP == "" || len(m.SDP) > maxSDPLen {
		reply(errBadRequest, "call needs an sdp offer of at most 32 KiB")
		return
	}
	target, err := parseTarget(m.To, t.g.cfg.Domain)
	if err != nil {
		reply(errBadAddress, fmt.Sprintf("cannot call %q: %v", m.To, err))
		return
	}
	id := m.Call
	if id == "" {
		id = "out-" + randomID(6)
	}
	c := newCall(t.g, id, true, a)
	c.tab = t
	if !t.addCall(c) {
		if t.call(id) != nil {
			reply(errCallExists, fmt.Sprintf("call %q exists", id))
		} else {
			reply(errTooMany, fmt.Sprintf("at most %d calls per connection", t.g.cfg.MaxCallsPerTab))
		}
		return
	}
	c.log.Info("outgoing call", "to", target.String())
	offer := m.SDP
	if !t.g.startCall(c, func() { c.startOutgoing(target, offer) }) {
		t.dropCall(id, c)
		reply(errShuttingDown, "the gateway is shutting down")
	}
}

// message sends a SIP MESSAGE and reports the outcome.
func (t *tab) message(a *account, m *clientMsg) {
	reply := func(code, msg string) {
		t.send(serverMsg{Type: msgError, Code: code, ID: m.ID, Message: msg})
	}
	if m.Text == "" || len(m.Text) > maxTextLen {
		reply(errBadRequest, "message needs a text of at most 8 KiB")
		return
	}
	to, err := parseTarget(m.To, t.g.cfg.Domain)
	if err != nil {
		reply(errBadAddress, fmt.Sprintf("cannot send to %q: %v", m.To, err))
		return
	}
	text, id := m.Text, m.ID
	ok := t.g.goBG(func() {
		ctx, cancel := context.WithTimeout(t.ctx, 32*time.Second)
		defer cancel()
		res, err := t.g.sendMessage(ctx, a, to, text)
		switch {
		case err != nil:
			t.send(serverMsg{Type: msgError, Code: errUnavailable, ID: id, Message: "message not sent: " + err.Error()})
		case res.IsSuccess():
			t.send(serverMsg{Type: msgSent, ID: id, To: to.String(), Status: res.StatusCode})
		default:
			t.send(serverMsg{Type: msgError, Code: errSIP, ID: id, Status: res.StatusCode,
				Message: fmt.Sprintf("message refused: %d %s", res.StatusCode, res.Reason)})
		}
	})
	if !ok {
		reply(errShuttingDown, "the gateway is shutting down")
	}
}

// login checks the user's password by registering with it, and signs the
// tab in.
func (t *tab) login(m *clientMsg) {
	g := t.g
	reply := func(code, msg string) {
		t.send(serverMsg{Type: msgError, Code: code, ID: m.ID, Message: msg})
	}
	if a := t.account(); a != nil {
		reply(errAlreadyActive, "already signed in as "+a.user+"; log out first")
		return
	}
	if !validUser(m.User) || m.Password == "" || len(m.Password) > 256 {
		reply(errBadRequest, "login needs a user name and a password")
		return
	}
	if g.guard.Banned(t.remote, m.User) {
		reply(errRateLimited, "too many failed sign-ins from this address or for this user; try again later")
		return
	}
	a, err := g.joinAccount(m.User)
	if err != nil {
		reply(errTooMany, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(t.ctx, loginTimeout)
	granted, err := a.register(ctx, m.Password, g.cfg.RegisterExpires)
	cancel()
	if err != nil {
		g.releaseAccount(a, nil)
		if errors.Is(err, ErrBadCredentials) {
			g.guard.Fail(t.remote, m.User)
			t.log.Info("sign-in refused", "user", m.User)
			reply(errAuthFailed, "wrong user name or password")
			return
		}
		t.log.Warn("sign-in failed", "user", m.User, "error", err)
		reply(errUnavailable, "cannot register with the switch: "+err.Error())
		return
	}
	a.mu.Lock()
	a.pass = m.Password
	a.mu.Unlock()
	if !g.attachTab(a, t, granted) {
		// The gateway closed while we registered: take the binding back.
		uctx, cancel := context.WithTimeout(context.Background(), sipTimeout)
		_, _ = a.register(uctx, m.Password, 0)
		cancel()
		reply(errShuttingDown, "the gateway is shutting down")
		return
	}
	var ice []webrtc.ICEServer
	if g.cfg.ICEServers != nil {
		ice = g.cfg.ICEServers(a.user)
	}
	g.guard.Succeed(t.remote, a.user)
	t.log.Info("signed in", "user", a.user)
	t.send(serverMsg{Type: msgLoggedIn, ID: m.ID, User: a.user, AOR: a.aor(), ICEServers: ice})
}

// logout detaches the tab from its account; the last tab to leave ends
// the registration.
func (t *tab) logout() {
	t.mu.Lock()
	a := t.acct
	t.acct = nil
	t.mu.Unlock()
	if a != nil {
		t.g.releaseAccount(a, t)
	}
}

// joinAccount returns the account of user, creating it, and counts a
// sign-in in progress on it.
func (g *Gateway) joinAccount(user string) (*account, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil, ErrClosed
	}
	a := g.accounts[user]
	if a == nil {
		token := "wrtc-" + randomID(8)
		a = &account{
			g: g, user: user, token: token,
			contact: g.sip.contactURI(token),
			log:     g.log.With("user", user),
			callID:  randomID(12),
			fromTag: sip.GenerateTagN(16),
			tabs:    map[*tab]bool{},
		}
		g.accounts[user] = a
		g.byToken[token] = a
	}
	if len(a.tabs)+a.pending >= g.cfg.MaxTabsPerUser {
		return nil, fmt.Errorf("at most %d connections per user", g.cfg.MaxTabsPerUser)
	}
	a.pending++
	return a, nil
}

// attachTab completes a sign-in: the tab joins the account, whose refresh
// loop starts with the first tab.
func (g *Gateway) attachTab(a *account, t *tab, granted time.Duration) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	a.pending--
	if g.closed {
		g.dropAccountLocked(a)
		return false
	}
	a.tabs[t] = true
	t.mu.Lock()
	t.acct = a
	t.mu.Unlock()
	if a.stop == nil {
		ctx, cancel := context.WithCancel(context.Background())
		a.stop = cancel
		a.done = make(chan struct{})
		g.regWG.Add(1)
		go func() {
			defer g.regWG.Done()
			a.refresh(ctx, granted)
		}()
		a.log.Info("registered", "contact", a.contact.String(), "expires", granted)
	}
	return true
}

// releaseAccount ends a sign-in in progress (t nil) or a tab's sign-in;
// an account with neither is unregistered and forgotten.
func (g *Gateway) releaseAccount(a *account, t *tab) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if t == nil {
		a.pending--
	} else {
		delete(a.tabs, t)
	}
	g.dropAccountLocked(a)
}

func (g *Gateway) dropAccountLocked(a *account) {
	if len(a.tabs) > 0 || a.pending > 0 {
		return
	}
	if g.accounts[a.user] == a {
		delete(g.accounts, a.user)
	}
	delete(g.byToken, a.token)
	if a.stop != nil {
		a.stop() // the refresh loop unregisters
	}
}

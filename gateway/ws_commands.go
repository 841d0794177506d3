package gateway

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/pion/webrtc/v4"
)

// The browser's commands (protocol.go lists them): sign-in and sign-out,
// calls, messages; and the tab's table of calls.

// Limits on what a command may carry, and on the sign-in it waits for.
const (
	loginTimeout = 10 * time.Second // the REGISTER that checks a password
	maxIDLen     = 64               // call and request ids
	maxTextLen   = 8 << 10          // a text message
	maxSDPLen    = 32 << 10         // an offer or answer
)

// replyTo returns a function that tells the browser why its message (of
// request id and call, either may be empty) was not acted on.
func (t *tab) replyTo(id, call string) func(code, msg string) {
	return func(code, msg string) {
		t.send(serverMsg{Type: msgError, Code: code, ID: id, Call: call, Message: msg})
	}
}

// handle acts on one message from the browser.
func (t *tab) handle(m *clientMsg) {
	if len(m.ID) > maxIDLen || len(m.Call) > maxIDLen {
		t.send(serverMsg{Type: msgError, Code: errBadRequest, Message: fmt.Sprintf("id and call must be at most %d characters", maxIDLen)})
		return
	}
	reply := t.replyTo(m.ID, m.Call)
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
		if m.Type == msgAnswer && !carries(m.SDP, maxSDPLen, "answer needs an sdp", reply) {
			return
		}
		c := t.call(m.Call)
		if c == nil || !c.post(event{kind: evBrowser, tab: t, msg: m}) {
			reply(errUnknownCall, fmt.Sprintf("no call %q", m.Call))
		}
	}
}

// leaveCalls ends the tab's calls (sign-out) and waits for them.
func (t *tab) leaveCalls() {
	for _, c := range t.tellCallsGone(false) {
		<-c.quit
	}
}

// placeCall starts an outgoing call.
func (t *tab) placeCall(a *account, m *clientMsg) {
	reply := t.replyTo(m.ID, m.Call)
	if !carries(m.SDP, maxSDPLen, "call needs an sdp offer", reply) {
		return
	}
	target, ok := t.addressed(m, "call", reply)
	if !ok {
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

// carries reports whether body, what a command must carry (an SDP, a
// text), is there and at most max bytes; when not, the browser hears what
// the command needs ("call needs an sdp offer") and the limit.
func carries(body string, max int, needs string, reply func(code, msg string)) bool {
	if body != "" && len(body) <= max {
		return true
	}
	reply(errBadRequest, fmt.Sprintf("%s of at most %d KiB", needs, max>>10))
	return false
}

// addressed parses the address m is for ("to"); when it is none, the
// browser hears it could not verb it.
func (t *tab) addressed(m *clientMsg, verb string, reply func(code, msg string)) (sip.Uri, bool) {
	to, err := parseTarget(m.To, t.g.cfg.Domain)
	if err != nil {
		reply(errBadAddress, fmt.Sprintf("cannot %s %q: %v", verb, m.To, err))
		return sip.Uri{}, false
	}
	return to, true
}

// message sends a SIP MESSAGE and reports the outcome.
func (t *tab) message(a *account, m *clientMsg) {
	reply := t.replyTo(m.ID, "")
	if !carries(m.Text, maxTextLen, "message needs a text", reply) {
		return
	}
	to, ok := t.addressed(m, "send to", reply)
	if !ok {
		return
	}
	text, id := m.Text, m.ID
	ok = t.g.goBG(func() {
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
	reply := t.replyTo(m.ID, "")
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

// --- the tab's sign-in and calls ---

// account is the account the tab is signed in as; nil before a sign-in.
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

// dropCall removes call id from the tab, if it is still c.
func (t *tab) dropCall(id string, c *call) {
	t.mu.Lock()
	if t.calls[id] == c {
		delete(t.calls, id)
	}
	t.mu.Unlock()
}

// call returns the tab's call id, or nil.
func (t *tab) call(id string) *call {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.calls[id]
}

// leave ends the tab's calls and its sign-in (the connection closed).
func (t *tab) leave() {
	t.tellCallsGone(true)
	t.logout()
}

// tellCallsGone tells each call of the tab that the tab left it, and
// returns them. With closing set, the tab takes no new call.
func (t *tab) tellCallsGone(closing bool) []*call {
	t.mu.Lock()
	if closing {
		t.gone = true
	}
	calls := make([]*call, 0, len(t.calls))
	for _, c := range t.calls {
		calls = append(calls, c)
	}
	t.mu.Unlock()
	for _, c := range calls {
		c.post(event{kind: evTabGone, tab: t})
	}
	return calls
}

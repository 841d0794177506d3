package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/pion/webrtc/v4"
)

// evKind says what an event delivered to a call's goroutine is.
type evKind int

const (
	evBrowser   evKind = iota // a message from a tab (msg)
	evTabGone                 // a tab closed or signed out (tab)
	evRequest                 // a SIP request in the call's dialog (req, tx, done)
	evCancel                  // the caller cancelled an incoming call
	evPeerState               // a peer connection changed state (peer, pcState)
	evReinvite                // our re-INVITE's outcome (res, err, hold, cseq)
	evDTMF                    // a telephone-event from the SIP side (digit)
	evShutdown                // the gateway is closing
)

type event struct {
	kind    evKind
	tab     *tab
	msg     *clientMsg
	req     *sip.Request
	tx      sip.ServerTransaction
	done    chan struct{} // closed once a request event is answered
	res     *sip.Response
	err     error
	peer    *peer
	pcState webrtc.PeerConnectionState
	hold    bool
	cseq    uint32
	digit   string
}

// call is one call between a browser tab and the SIP side. Everything
// below the marked line is owned by the call's goroutine (run), which
// handles one event at a time; other goroutines talk to it with post.
// The files: call.go (the event loop of an answered call), call_out.go and
// call_in.go (setting up outgoing and incoming calls), call_hold.go (hold
// and re-INVITEs), call_media.go (streams, SDP, the browser's connection),
// dialog.go (the SIP dialog).
type call struct {
	g      *Gateway
	id     string
	out    bool // placed by the browser
	acct   *account
	log    *slog.Logger
	events chan event
	quit   chan struct{} // closed when run stops handling events
	ctx    context.Context
	cancel context.CancelFunc
	media  mediaGroup // packet loops and helper goroutines

	// --- owned by run ---

	// Signalling: the SIP dialog and what is in flight in it.
	dlg        *dialog
	registered bool         // dlg is in the gateway's dialog table
	invite     uasInvite    // incoming: the INVITE being answered (invite.sent is made by newCall)
	ok2xx      okRetransmit // our 2xx awaiting its ACK (RFC 3261 §13.3.1.4)
	hold       holdState

	// Browser side: the tab in the call and its peer connection.
	tab        *tab
	peer       *peer                     // the peer connection in use
	rings      map[*tab]*peer            // incoming: the tabs ringing
	pendingICE []webrtc.ICECandidateInit // outgoing: candidates trickled before there is a peer
	ice        iceWatch

	// Media and SDP.
	streams    []*stream  // by SIP m-line; nil where nothing is relayed
	sipOffer   *session   // incoming: the SIP party's offer
	webOffer   *session   // the browser's SDP: its offer (outgoing) or answer (incoming)
	localMedia []sipMedia // the SDP we last sent to the SIP side
	sdpID      uint64
	sdpVersion uint64
	video      bool

	// What the browser is told.
	state      string
	remoteURI  string
	remoteName string
	answeredAt time.Time
}

func newCall(g *Gateway, id string, out bool, a *account) *call {
	ctx, cancel := context.WithCancel(g.ctx)
	c := &call{
		g: g, id: id, out: out, acct: a,
		log:    g.log.With("call", id, "user", a.user),
		events: make(chan event, 64),
		quit:   make(chan struct{}),
		invite: uasInvite{sent: make(chan struct{})},
		ctx:    ctx, cancel: cancel,
		hold:  holdState{want: -1},
		sdpID: uint64(randUint32()),
	}
	return c
}

// post hands an event to the call's goroutine. It reports false when the
// call has ended. Peer state changes never block (pion calls in from its
// own goroutines, also while the call closes the peer).
func (c *call) post(ev event) bool {
	if ev.kind == evPeerState || ev.kind == evDTMF {
		select {
		case c.events <- ev:
			return true
		default:
			return false
		}
	}
	select {
	case c.events <- ev:
		return true
	case <-c.quit:
		return false
	}
}

// handleRequest delivers an in-dialog request and waits until the call
// has answered it. A call that ended first answers 481 (RFC 3261 §12.2.2).
func (c *call) handleRequest(req *sip.Request, tx sip.ServerTransaction) {
	done := make(chan struct{})
	if c.post(event{kind: evRequest, req: req, tx: tx, done: done}) {
		select {
		case <-done:
			return
		case <-c.quit:
		}
		select {
		case <-done:
			return
		default:
		}
	}
	if !req.IsAck() {
		_ = respond(tx, req, 481, "Call/Transaction Does Not Exist", nil)
	}
}

// mediaGroup runs a call's packet loops and helper goroutines; the call
// waits for them when it finishes.
type mediaGroup struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// spawn runs f in a goroutine of the group, unless the group is closed.
func (m *mediaGroup) spawn(f func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		f()
	}()
}

// closeWait refuses new goroutines and waits for the running ones.
func (m *mediaGroup) closeWait() {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.wg.Wait()
}

// run is the call's goroutine.
func (c *call) run(start func()) {
	defer c.finish()
	start()
	if c.state == stateAnswered {
		c.established()
	}
}

// finish releases everything the call holds.
func (c *call) finish() {
	close(c.quit)
	c.cancel()
	if c.registered {
		c.g.dropDialog(c.dlg.key(), c)
	}
	for t, p := range c.rings {
		p.close()
		t.dropCall(c.id, c)
	}
	if c.peer != nil {
		c.peer.close()
	}
	if c.tab != nil {
		c.tab.dropCall(c.id, c)
	}
	for _, s := range c.streams {
		if s != nil {
			s.close()
		}
	}
	c.ice.disarm()
	c.ok2xx.stop()
	c.media.closeWait()
	if c.invite.pending() {
		// An incoming call that ends before any final response (shutdown).
		_ = c.respondInvite(500, "Server Internal Error", nil)
	}
	c.log.Debug("call finished", "state", c.state)
}

// notify sends a message about the call to the tab in it.
func (c *call) notify(m serverMsg) {
	if c.tab != nil {
		m.Call = c.id
		c.tab.send(m)
	}
}

// setState tells the tab the call's new state. A call in a final state
// no longer counts against its tab (which may take a new call at once).
func (c *call) setState(state string, status int, reason string) {
	c.state = state
	if isFinal(state) && c.tab != nil {
		c.tab.dropCall(c.id, c)
	}
	m := serverMsg{Type: msgCallState, State: state, Status: status, Reason: reason}
	if state == stateAnswered {
		m.Peer = c.remoteURI
		m.FromName = c.remoteName
		m.Video = boolp(c.video)
	}
	if !c.answeredAt.IsZero() && isFinal(state) {
		m.Duration = time.Since(c.answeredAt).Round(time.Millisecond).Seconds()
	}
	c.notify(m)
}

func isFinal(state string) bool {
	switch state {
	case stateTrying, stateRinging, stateAnswered:
		return false
	}
	return true
}

// fail tells the tab about an error of the call.
func (c *call) fail(code, message string) {
	c.notify(serverMsg{Type: msgError, Code: code, Message: message})
}

// bye ends an established dialog from our side with a BYE (RFC 3261
// §15.1.1), waiting a little for its response.
func (c *call) bye(reason string) {
	if c.dlg == nil || c.dlg.remoteTag == "" {
		return
	}
	req := c.dlg.newRequest(sip.BYE)
	if reason != "" {
		req.AppendHeader(sip.NewHeader("Reason", fmt.Sprintf("SIP;cause=200;text=%q", reason)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), sipTimeout)
	defer cancel()
	if _, err := c.g.sip.do(ctx, req, nil); err != nil {
		c.log.Debug("BYE unanswered", "error", err)
	}
}

// end hangs up an answered call from our side: the browser hears why,
// the SIP party gets a BYE.
func (c *call) end(code, msg string) {
	c.fail(code, msg)
	c.bye(msg)
	c.setState(stateEnded, 0, msg)
}

// established handles a call after it was answered until it ends.
func (c *call) established() {
	for {
		select {
		case ev := <-c.events:
			if c.handleEstablished(ev) {
				return
			}
		case <-c.ice.C:
			c.end(c.iceExpired())
			return
		case <-c.ok2xx.C:
			if c.ok2xx.fire() {
				c.fail(errSIP, "the SIP side did not acknowledge the answer")
				c.bye("no ACK")
				c.setState(stateEnded, 408, "no ACK")
				return
			}
		}
	}
}

// handleEstablished handles one event of an answered call; it returns true
// when the call is over.
func (c *call) handleEstablished(ev event) bool {
	switch ev.kind {
	case evBrowser:
		return c.browserInCall(ev)
	case evTabGone:
		if ev.tab != c.tab {
			return false
		}
		c.bye("browser gone")
		c.state = stateEnded
		return true
	case evShutdown:
		c.bye("gateway shutting down")
		c.setState(stateEnded, 0, "the gateway is shutting down")
		return true
	case evPeerState:
		if code, msg := c.peerState(ev.peer, ev.pcState); code != "" {
			c.end(code, msg)
			return true
		}
	case evDTMF:
		c.notify(serverMsg{Type: msgDTMF, Digit: ev.digit})
	case evReinvite:
		return c.reinviteDone(ev)
	case evRequest:
		return c.requestInCall(ev)
	}
	return false
}

// browserInCall handles a tab's message during an answered call.
func (c *call) browserInCall(ev event) bool {
	m := ev.msg
	if ev.tab != c.tab {
		ev.tab.send(serverMsg{Type: msgError, Code: errWrongState, Call: c.id, ID: m.ID, Message: "the call was answered elsewhere"})
		return false
	}
	switch m.Type {
	case msgHangup:
		c.bye("")
		c.setState(stateEnded, 0, "hung up")
		return true
	case msgICE:
		if m.Candidate != nil && c.peer != nil {
			_ = c.peer.addICE(*m.Candidate)
		}
	case msgHold, msgResume:
		c.holdAsked(m.Type == msgHold)
	default:
		ev.tab.send(serverMsg{Type: msgError, Code: errWrongState, Call: c.id, ID: m.ID, Message: m.Type + " is not possible in an answered call"})
	}
	return false
}

// requestInCall handles a SIP request in an answered call's dialog.
func (c *call) requestInCall(ev event) bool {
	req, tx := ev.req, ev.tx
	defer func() {
		if ev.done != nil {
			close(ev.done)
		}
	}()
	switch req.Method {
	case sip.ACK:
		if c.ok2xx.acked(req.CSeq().SeqNo) {
			c.applyRemoteBody(req.Body())
		}
		return false
	case sip.BYE:
		_ = respond(tx, req, 200, "OK", nil)
		c.setState(stateEnded, 0, "the other party hung up")
		return true
	case sip.INVITE:
		c.reinviteIn(req, tx)
		return false
	case sip.INFO:
		c.infoDTMF(req)
		_ = respond(tx, req, 200, "OK", nil)
		return false
	case sip.OPTIONS:
		_ = respond(tx, req, 200, "OK", nil, sip.NewHeader("Allow", allowHeader))
		return false
	}
	_ = respond(tx, req, 405, "Method Not Allowed", nil, sip.NewHeader("Allow", allowHeader))
	return false
}

// infoDTMF reports a digit sent with SIP INFO (application/dtmf-relay).
func (c *call) infoDTMF(req *sip.Request) {
	ct := req.ContentType()
	if ct == nil || !strings.Contains(strings.ToLower(ct.Value()), "dtmf") {
		return
	}
	for _, line := range strings.Split(string(req.Body()), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if ok && strings.EqualFold(strings.TrimSpace(k), "signal") {
			if d := strings.TrimSpace(v); len(d) == 1 && strings.Contains(dtmfDigits, strings.ToUpper(d)) {
				c.notify(serverMsg{Type: msgDTMF, Digit: strings.ToUpper(d)})
			}
		}
	}
}

// respondInvite sends the final response to an incoming INVITE (with our
// To tag), once.
func (c *call) respondInvite(code int, reason string, body []byte, hdrs ...sip.Header) error {
	return c.invite.final(c.inviteResponse(code, reason, body, hdrs...))
}

// inviteResponse builds a response to the incoming INVITE with our To tag.
func (c *call) inviteResponse(code int, reason string, body []byte, hdrs ...sip.Header) *sip.Response {
	return c.invite.response(c.dlg.localTag, code, reason, body, hdrs...)
}

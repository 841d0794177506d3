package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
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

	mediaMu     sync.Mutex
	mediaClosed bool
	media       sync.WaitGroup // packet loops and helper goroutines

	finalSent chan struct{} // incoming: closed once the INVITE has its final response

	// --- owned by run ---
	tab        *tab           // the tab in the call
	peer       *peer          // the peer connection in use
	rings      map[*tab]*peer // incoming: the tabs ringing
	streams    []*stream      // by SIP m-line; nil where nothing is relayed
	dlg        *dialog
	registered bool // dlg is in the gateway's dialog table
	state      string
	remoteURI  string
	remoteName string
	video      bool

	sipOffer   *session   // incoming: the SIP party's offer
	webOffer   *session   // outgoing: the browser's offer
	localMedia []sipMedia // the SDP we last sent to the SIP side
	sdpID      uint64
	sdpVersion uint64

	answeredAt  time.Time
	localHold   bool
	remoteHold  bool
	reinviting  bool
	wantHold    int // -1: nothing queued; 0 resume; 1 hold
	pendingICE  []webrtc.ICECandidateInit
	iceTimer    *time.Timer
	iceC        <-chan time.Time
	ok2xx       *sip.Response // a 2xx we retransmit until its ACK (RFC 3261 §13.3.1.4)
	ok2xxTx     sip.ServerTransaction
	ok2xxCSeq   uint32
	resendTimer *time.Timer
	resendC     <-chan time.Time
	resendGap   time.Duration
	resendUntil time.Time
	inviteReq   *sip.Request
	inviteTx    sip.ServerTransaction
	finalDone   bool
}

func newCall(g *Gateway, id string, out bool, a *account) *call {
	ctx, cancel := context.WithCancel(g.ctx)
	c := &call{
		g: g, id: id, out: out, acct: a,
		log:       g.log.With("call", id, "user", a.user),
		events:    make(chan event, 64),
		quit:      make(chan struct{}),
		finalSent: make(chan struct{}),
		ctx:       ctx, cancel: cancel,
		wantHold: -1,
		sdpID:    uint64(randUint32()),
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

// goMedia runs f as one of the call's media goroutines, unless the call's
// media is already closed.
func (c *call) goMedia(f func()) {
	c.mediaMu.Lock()
	defer c.mediaMu.Unlock()
	if c.mediaClosed {
		return
	}
	c.media.Add(1)
	go func() {
		defer c.media.Done()
		f()
	}()
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
	c.stopTimers()
	c.mediaMu.Lock()
	c.mediaClosed = true
	c.mediaMu.Unlock()
	c.media.Wait()
	if c.inviteTx != nil && !c.finalDone {
		// An incoming call that ends before any final response (shutdown).
		_ = c.respondInvite(500, "Server Internal Error", nil)
	}
	c.log.Debug("call finished", "state", c.state)
}

func (c *call) stopTimers() {
	if c.iceTimer != nil {
		c.iceTimer.Stop()
	}
	if c.resendTimer != nil {
		c.resendTimer.Stop()
	}
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

// allocStreams opens the RTP/RTCP sockets of the m-lines the gateway
// relays: the first audio and the first video line with a usable codec
// (and, on the SIP side, plain RTP: the SIP leg has no SRTP). The result is
// indexed like media; nil where nothing is relayed.
func (c *call) allocStreams(media []mediaDesc, sipSide bool) ([]*stream, error) {
	out := make([]*stream, len(media))
	seen := map[string]bool{}
	for i, m := range media {
		if (m.Kind != "audio" && m.Kind != "video") || m.Port == 0 || seen[m.Kind] || len(usable(m.Kind, m.Codecs)) == 0 {
			continue
		}
		if sipSide && !plainRTP(m.Proto) {
			continue
		}
		rtpC, rtcpC, err := c.g.ports.pair()
		if err != nil {
			for _, s := range out {
				if s != nil {
					s.close()
				}
			}
			return nil, err
		}
		seen[m.Kind] = true
		s := newStream(i, m.Kind, rtpC, rtcpC, c.log)
		s.onDTMF = func(d string) { c.post(event{kind: evDTMF, digit: d}) }
		out[i] = s
	}
	return out, nil
}

// plainRTP reports whether an m-line's transport is RTP without SRTP
// (RFC 3551 RTP/AVP, RFC 4585 RTP/AVPF).
func plainRTP(proto string) bool {
	return strings.EqualFold(proto, "RTP/AVP") || strings.EqualFold(proto, "RTP/AVPF")
}

func (c *call) startStreams() {
	for _, s := range c.streams {
		if s != nil {
			st := s
			c.goMedia(func() {
				var wg sync.WaitGroup
				st.start(&wg)
				wg.Wait()
			})
		}
	}
}

// sdpBody renders localMedia with the next SDP version (RFC 3264 §8: each
// new offer or answer increments it).
func (c *call) sdpBody() []byte {
	c.sdpVersion++
	return sipSDP(c.sdpID, c.sdpVersion, c.g.sipIP, c.localMedia)
}

// armICE starts (or restarts) the timer that ends the call when the
// browser's media connection does not come up.
func (c *call) armICE() {
	if c.iceTimer != nil {
		c.iceTimer.Stop()
	}
	c.iceTimer = time.NewTimer(c.g.cfg.ICETimeout)
	c.iceC = c.iceTimer.C
}

func (c *call) disarmICE() {
	if c.iceTimer != nil {
		c.iceTimer.Stop()
	}
	c.iceC = nil
}

// peerState handles a peer connection's state change. It returns an error
// code and message when the call must end.
func (c *call) peerState(p *peer, s webrtc.PeerConnectionState) (string, string) {
	if p != c.peer {
		return "", ""
	}
	switch s {
	case webrtc.PeerConnectionStateConnected:
		c.disarmICE()
		if !p.up {
			p.up = true
			c.log.Debug("browser media connected")
			for _, st := range c.streams {
				if st != nil {
					st.keyframeToSIP()
				}
			}
		}
	case webrtc.PeerConnectionStateDisconnected:
		c.armICE()
	case webrtc.PeerConnectionStateFailed:
		if p.pc.ICEConnectionState() == webrtc.ICEConnectionStateConnected ||
			p.pc.ICEConnectionState() == webrtc.ICEConnectionStateCompleted {
			return errDTLSFailed, "the browser's DTLS-SRTP handshake failed"
		}
		if p.up {
			return errICEFailed, "lost the media connection to the browser"
		}
		return errICEFailed, "the browser's media connection (ICE) could not be established"
	case webrtc.PeerConnectionStateClosed:
		if !p.up {
			// pion closes the connection itself when the DTLS handshake
			// fails (a wrong fingerprint), racing its own move to Failed;
			// an ICE failure ends in Failed, never in Closed.
			return errDTLSFailed, "the browser's DTLS-SRTP handshake failed"
		}
		return errICEFailed, "the browser's media connection closed"
	}
	return "", ""
}

// iceExpired is the error for an ICE timer that fired.
func (c *call) iceExpired() (string, string) {
	if c.peer != nil && c.peer.up {
		return errICEFailed, "lost the media connection to the browser"
	}
	return errICEFailed, fmt.Sprintf("the browser's media connection did not come up within %s", c.g.cfg.ICETimeout)
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

// established handles a call after it was answered until it ends.
func (c *call) established() {
	for {
		select {
		case ev := <-c.events:
			if c.handleEstablished(ev) {
				return
			}
		case <-c.iceC:
			code, msg := c.iceExpired()
			c.fail(code, msg)
			c.bye(msg)
			c.setState(stateEnded, 0, msg)
			return
		case <-c.resendC:
			if c.resend2xx() {
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
			c.fail(code, msg)
			c.bye(msg)
			c.setState(stateEnded, 0, msg)
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
		want := 0
		if m.Type == msgHold {
			want = 1
		}
		if c.reinviting {
			c.wantHold = want
			return false
		}
		if (want == 1) == c.localHold {
			c.notify(serverMsg{Type: msgHoldState, Held: boolp(c.localHold), By: "local"})
			return false
		}
		c.sendReinvite(want == 1)
	default:
		ev.tab.send(serverMsg{Type: msgError, Code: errWrongState, Call: c.id, ID: m.ID, Message: m.Type + " is not possible in an answered call"})
	}
	return false
}

// sendReinvite puts the SIP party on hold (a=sendonly) or takes it off
// (a=sendrecv) with a re-INVITE (RFC 3264 §8.4), in a helper goroutine
// that posts the outcome.
func (c *call) sendReinvite(hold bool) {
	dir := dirSendRecv
	if hold {
		dir = dirSendOnly
	}
	for i := range c.localMedia {
		if c.localMedia[i].Port != 0 {
			c.localMedia[i].Dir = c.combineDir(i, dir)
		}
	}
	req := c.dlg.newRequest(sip.INVITE)
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.AppendHeader(sip.NewHeader("Allow", allowHeader))
	req.SetBody(c.sdpBody())
	cseq := req.CSeq().SeqNo
	c.reinviting = true
	c.goMedia(func() {
		ctx, cancel := context.WithTimeout(c.ctx, 32*time.Second)
		defer cancel()
		res, err := c.g.sip.roundTrip(ctx, req)
		c.post(event{kind: evReinvite, res: res, err: err, hold: hold, cseq: cseq})
	})
}

// combineDir is the direction we write for m-line i when we want dir: the
// browser's own direction for that line limits it.
func (c *call) combineDir(i int, dir string) string {
	base := dirSendRecv
	if c.webOffer != nil && i < len(c.streams) && c.streams[i] != nil {
		base = c.webDirFor(c.streams[i].kind)
	}
	return intersectDir(base, dir)
}

// webDirFor returns the browser's direction for the m-line of kind.
func (c *call) webDirFor(kind string) string {
	if c.webOffer == nil {
		return dirSendRecv
	}
	for _, m := range c.webOffer.Media {
		if m.Kind == kind && m.Port != 0 {
			return m.Dir
		}
	}
	return dirSendRecv
}

// intersectDir keeps what both directions allow.
func intersectDir(a, b string) string {
	s, r := sends(a) && sends(b), receives(a) && receives(b)
	switch {
	case s && r:
		return dirSendRecv
	case s:
		return dirSendOnly
	case r:
		return dirRecvOnly
	}
	return dirInactive
}

// reinviteDone handles the final response to our re-INVITE.
func (c *call) reinviteDone(ev event) bool {
	c.reinviting = false
	if ev.err != nil {
		c.fail(errSIP, "hold/resume got no answer: "+ev.err.Error())
		c.bye("re-INVITE timeout")
		c.setState(stateEnded, 408, "the SIP side stopped answering")
		return true
	}
	res := ev.res
	if res.IsSuccess() {
		_ = c.g.sip.write(ackFor(c.dlg, ev.cseq))
		if body := res.Body(); len(body) > 0 {
			if s, err := parseSDP(string(body)); err == nil {
				c.applyRemote(s)
			}
		}
		c.localHold = ev.hold
		c.notify(serverMsg{Type: msgHoldState, Held: boolp(c.localHold), By: "local"})
	} else {
		if res.StatusCode == 481 || res.StatusCode == 408 {
			c.fail(errSIP, fmt.Sprintf("hold/resume: %d %s", res.StatusCode, res.Reason))
			c.bye("")
			c.setState(stateEnded, res.StatusCode, res.Reason)
			return true
		}
		// RFC 3261 §14.1: the session is unchanged.
		c.fail(errSIP, fmt.Sprintf("hold/resume refused: %d %s", res.StatusCode, res.Reason))
		c.restoreDirs()
	}
	if c.wantHold >= 0 {
		want := c.wantHold == 1
		c.wantHold = -1
		if want != c.localHold {
			c.sendReinvite(want)
		}
	}
	return false
}

// restoreDirs sets localMedia's directions back to our current hold state.
func (c *call) restoreDirs() {
	dir := dirSendRecv
	if c.localHold {
		dir = dirSendOnly
	}
	for i := range c.localMedia {
		if c.localMedia[i].Port != 0 {
			c.localMedia[i].Dir = c.combineDir(i, dir)
		}
	}
}

// applyRemote takes the SIP party's new SDP (in a re-INVITE or an answer to
// ours): where it wants media and whether it sends and receives.
func (c *call) applyRemote(s *session) {
	for i, m := range s.Media {
		if i >= len(c.streams) || c.streams[i] == nil || i >= len(c.localMedia) {
			continue
		}
		st := c.streams[i]
		if m.Port == 0 {
			st.setDirection(false, false)
			continue
		}
		st.setRemote(m)
		ours := c.localMedia[i].Dir
		remoteDir := m.Dir
		if !m.Addr.IsValid() || m.Addr.IsUnspecified() {
			remoteDir = intersectDir(remoteDir, dirRecvOnly) // RFC 3264 §8.4: c=0.0.0.0 is old-style hold
		}
		st.setDirection(sends(remoteDir) && receives(ours), receives(remoteDir) && sends(ours))
	}
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
		if c.ok2xx != nil && req.CSeq().SeqNo == c.ok2xxCSeq {
			c.ok2xx, c.ok2xxTx, c.resendC = nil, nil, nil
			if c.resendTimer != nil {
				c.resendTimer.Stop()
			}
			if body := req.Body(); len(body) > 0 {
				if s, err := parseSDP(string(body)); err == nil {
					c.applyRemote(s)
				}
			}
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

// reinviteIn answers a re-INVITE from the SIP side: hold (sendonly or
// inactive, answered recvonly or inactive, RFC 3264 §8.4), resume, or a
// new address.
func (c *call) reinviteIn(req *sip.Request, tx sip.ServerTransaction) {
	if c.reinviting || c.ok2xx != nil {
		// RFC 3261 §14.2: an offer is pending on our side.
		_ = respond(tx, req, 491, "Request Pending", nil)
		return
	}
	if seq := req.CSeq().SeqNo; seq <= c.dlg.remoteCSeq {
		_ = respond(tx, req, 500, "Server Internal Error", nil, sip.NewHeader("Retry-After", "1"))
		return
	} else {
		c.dlg.remoteCSeq = seq
	}
	if ct := req.Contact(); ct != nil {
		c.dlg.remoteTarget = *ct.Address.Clone()
	}
	ours := dirSendRecv
	if c.localHold {
		ours = dirSendOnly
	}
	wasHeld := c.remoteHold
	if body := req.Body(); len(body) > 0 {
		s, err := parseSDP(string(body))
		if err != nil || len(s.Media) != len(c.localMedia) {
			_ = respond(tx, req, 488, "Not Acceptable Here", nil)
			return
		}
		held := true
		for i, m := range s.Media {
			if c.localMedia[i].Port == 0 {
				continue
			}
			offered := m.Dir
			if !m.Addr.IsValid() || m.Addr.IsUnspecified() {
				offered = intersectDir(offered, dirRecvOnly)
			}
			if m.Port != 0 && receives(offered) {
				held = false
			}
			c.localMedia[i].Dir = intersectDir(c.combineDir(i, ours), reverseDir(offered))
			if m.Port == 0 {
				c.localMedia[i].Dir = dirInactive
			}
		}
		c.applyRemote(s)
		c.remoteHold = held
	} else {
		c.restoreDirs()
	}
	res := sip.NewResponseFromRequest(req, 200, "OK", c.sdpBody())
	res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	res.AppendHeader(&sip.ContactHeader{Address: *c.dlg.contact.Clone()})
	res.AppendHeader(sip.NewHeader("Allow", allowHeader))
	if err := tx.Respond(res); err != nil {
		c.log.Debug("re-INVITE answer not sent", "error", err)
		return
	}
	c.await2xx(res, tx, req.CSeq().SeqNo)
	if c.remoteHold != wasHeld {
		c.notify(serverMsg{Type: msgHoldState, Held: boolp(c.remoteHold), By: "remote"})
	}
}

// await2xx retransmits a 2xx we sent to an INVITE until its ACK comes
// (RFC 3261 §13.3.1.4: T1 doubling to T2, for 64*T1).
func (c *call) await2xx(res *sip.Response, tx sip.ServerTransaction, cseq uint32) {
	c.ok2xx, c.ok2xxTx, c.ok2xxCSeq = res, tx, cseq
	c.resendGap = sip.T1
	c.resendUntil = time.Now().Add(64 * sip.T1)
	if c.resendTimer != nil {
		c.resendTimer.Stop()
	}
	c.resendTimer = time.NewTimer(c.resendGap)
	c.resendC = c.resendTimer.C
}

// resend2xx retransmits the pending 2xx; it returns true when the ACK is
// overdue and the call must end (RFC 3261 §13.3.1.4).
func (c *call) resend2xx() bool {
	if c.ok2xx == nil {
		c.resendC = nil
		return false
	}
	if time.Now().After(c.resendUntil) {
		c.ok2xx, c.resendC = nil, nil
		return true
	}
	_ = c.ok2xxTx.Respond(c.ok2xx)
	c.resendGap *= 2
	if c.resendGap > sip.T2 {
		c.resendGap = sip.T2
	}
	c.resendTimer.Reset(c.resendGap)
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
	if c.finalDone {
		return errors.New("INVITE already answered")
	}
	c.finalDone = true
	defer close(c.finalSent)
	res := c.inviteResponse(code, reason, body, hdrs...)
	return c.inviteTx.Respond(res)
}

func (c *call) inviteResponse(code int, reason string, body []byte, hdrs ...sip.Header) *sip.Response {
	res := sip.NewResponseFromRequest(c.inviteReq, code, reason, body)
	if to := res.To(); to != nil {
		// sipgo puts a random tag on a response to a request without one;
		// ours identifies the dialog (RFC 3261 §12.1.1).
		to.Params.Add("tag", c.dlg.localTag)
	}
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	return res
}

// sdpAddrValid reports whether an SDP address can receive media.
func sdpAddrValid(a netip.Addr) bool { return a.IsValid() && !a.IsUnspecified() }

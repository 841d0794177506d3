package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/switchboard/switchboard/internal/userpart"
)

// parseTarget turns what the browser dialled into a Request-URI: a SIP URI
// as it is, user@host, or a user name or number in our domain.
func parseTarget(to, domain string) (sip.Uri, error) {
	to = strings.TrimSpace(to)
	if to == "" || len(to) > 256 {
		return sip.Uri{}, errors.New("empty or too long")
	}
	low := strings.ToLower(to)
	if !strings.HasPrefix(low, "sip:") && !strings.HasPrefix(low, "sips:") {
		if !strings.Contains(to, "@") {
			user := to
			// A number as people write it: "+1 (555) 123-4567".
			if digits := strings.NewReplacer(" ", "", "-", "", "(", "", ")", "", ".", "").Replace(to); isNumber(digits) {
				user = digits
			}
			if !validUser(user) {
				return sip.Uri{}, fmt.Errorf("%q is not a user name or number", to)
			}
			to = user + "@" + domain
		}
		to = "sip:" + to
	}
	var u sip.Uri
	if err := sip.ParseUri(to, &u); err != nil {
		return sip.Uri{}, err
	}
	if u.Host == "" || u.User == "" {
		return sip.Uri{}, errors.New("needs a user and a host")
	}
	if u.Scheme == "sips" {
		u.Scheme = "sip" // the gateway's leg to the proxy is UDP
	}
	u.Headers = nil
	return u, nil
}

func isNumber(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if !(r >= '0' && r <= '9' || r == '*' || r == '#' || r == '+' && i == 0) {
			return false
		}
	}
	return true
}

// validUser accepts the user part of a SIP URI a person would type: a user
// name or a number (RFC 3261 §25.1 unreserved characters and a few marks).
func validUser(s string) bool {
	return userpart.Valid(s, "-_.!~*'+#")
}

// startOutgoing places the call the browser asked for: it parses the
// browser's offer, sends the INVITE and follows it until the call is
// answered or has failed. It runs in the call's goroutine.
func (c *call) startOutgoing(target sip.Uri, offer string) {
	c.state = stateTrying
	c.remoteURI = target.String()
	web, err := parseSDP(offer)
	if err != nil {
		c.fail(errBadSDP, err.Error())
		c.setState(stateFailed, 0, "bad offer")
		return
	}
	c.webOffer = web
	streams, err := c.allocStreams(web.Media, false)
	if err != nil {
		c.fail(errInternal, err.Error())
		c.setState(stateFailed, 0, "no media ports")
		return
	}
	// The SIP offer carries the m-lines we relay, with the browser's
	// codecs and payload types.
	var sipStreams []*stream
	for i, s := range streams {
		if s == nil {
			continue
		}
		rtpPort, rtcpPort := s.localPorts()
		c.localMedia = append(c.localMedia, sipMedia{Kind: s.kind, Port: rtpPort, RTCPPort: rtcpPort,
			Codecs: usable(s.kind, web.Media[i].Codecs), Dir: web.Media[i].Dir})
		s.webIdx = i
		s.index = len(sipStreams)
		sipStreams = append(sipStreams, s)
		if s.kind == "video" {
			c.video = true
		}
	}
	c.streams = sipStreams
	if len(sipStreams) == 0 {
		c.fail(errNoCodec, "the browser offered no codec the gateway can relay (PCMU, PCMA, G722, opus, VP8, H264)")
		c.setState(stateFailed, 488, "no common codec")
		return
	}
	c.startStreams()

	a := c.acct
	c.dlg = newUACDialog(sip.Uri{Scheme: "sip", User: a.user, Host: c.g.cfg.Domain}, target, a.contact)
	c.g.addDialog(c.dlg.key(), c)
	c.registered = true
	body := c.sdpBody()
	inv := c.newInvite(body)
	tx, err := c.g.sip.transaction(c.ctx, inv)
	if err != nil {
		c.sendFailed(err)
		return
	}
	c.setState(stateTrying, 0, "")
	c.inviteLoop(inv, tx)
}

func (c *call) newInvite(body []byte) *sip.Request {
	inv := c.dlg.newRequest(sip.INVITE)
	inv.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	inv.SetBody(body)
	return inv
}

// uacInvite is our INVITE in progress (RFC 3261 §13.2.2): the request and
// its transaction (a new one after a digest challenge), and the CANCEL the
// browser or a timer asked for (§9.1).
type uacInvite struct {
	inv          *sip.Request
	tx           sip.ClientTransaction
	keep         bool // a 2xx'd transaction lives on to absorb retransmissions (RFC 6026)
	provisional  bool // a provisional response came: a CANCEL may be sent
	authTries    int
	cancelWanted bool
	cancelled    bool   // our CANCEL is sent
	cancelState  string // the call's final state once the INVITE ends cancelled
	cancelReason string
	// With no final response 64*T1 after our CANCEL, the INVITE is
	// considered cancelled (§9.1).
	giveUp <-chan time.Time
}

// inviteLoop follows our INVITE transaction: provisional responses, digest
// challenges, the final answer, and the browser's cancel.
func (c *call) inviteLoop(inv *sip.Request, tx sip.ClientTransaction) {
	answerTimer := time.NewTimer(c.g.cfg.AnswerTimeout)
	defer answerTimer.Stop()
	u := &uacInvite{inv: inv, tx: tx, cancelState: stateCancelled}
	defer func() {
		if !u.keep {
			u.tx.Terminate()
		}
	}()
	for {
		select {
		case res := <-u.tx.Responses():
			if c.inviteAnswered(u, res) {
				return
			}
		case <-u.tx.Done():
			if u.cancelWanted {
				c.setState(u.cancelState, cancelStatus(u.cancelState), u.cancelReason)
			} else {
				c.setState(stateUnavailable, 408, "no answer from the switch")
			}
			return
		case <-u.giveUp:
			c.setState(u.cancelState, cancelStatus(u.cancelState), u.cancelReason)
			return
		case <-answerTimer.C:
			c.cancelInvite(u, stateUnavailable, "no answer")
			if !u.provisional {
				// Nothing to CANCEL yet (RFC 3261 §9.1): give up on the
				// transaction; a late 2xx is then never acknowledged.
				c.setState(stateUnavailable, 408, "no answer")
				return
			}
		case <-c.ice.C:
			_, msg := c.iceExpired()
			c.fail(errICEFailed, msg)
			c.ice.disarm()
			c.cancelInvite(u, stateFailed, msg)
		case ev := <-c.events:
			c.eventWhileInviting(u, ev)
		}
	}
}

// inviteAnswered handles a response to our INVITE (RFC 3261 §13.2.2); it
// reports true when the INVITE is over.
func (c *call) inviteAnswered(u *uacInvite, res *sip.Response) bool {
	switch {
	case res.StatusCode == 100:
		// Trying: only stops INVITE retransmissions.
	case res.IsProvisional():
		c.provisionalIn(u, res)
	case res.IsSuccess():
		u.keep = true
		c.answered(u, res)
		return true
	case (res.StatusCode == 401 || res.StatusCode == 407) && u.authTries < 2 && !u.cancelWanted:
		return c.reauthorize(u, res)
	default:
		c.inviteFailed(u, res)
		return true
	}
	return false
}

// provisionalIn handles a 1xx other than 100 (RFC 3261 §13.2.2.1): the
// CANCEL that was waiting for it goes out, or the tab hears the call
// rings, with early media when it carries SDP.
func (c *call) provisionalIn(u *uacInvite, res *sip.Response) {
	u.provisional = true
	if u.cancelWanted && !u.cancelled {
		c.cancelNow(u)
		return
	}
	if len(res.Body()) > 0 && c.peer == nil {
		if code, msg := c.setupOutgoingMedia(string(res.Body())); code != "" {
			c.fail(code, msg)
			c.cancelInvite(u, stateFailed, msg)
			return
		}
		c.notify(serverMsg{Type: msgCallState, State: stateRinging, Status: res.StatusCode, Reason: res.Reason, EarlyMedia: true})
		c.state = stateRinging
	} else if c.state != stateRinging {
		c.setState(stateRinging, res.StatusCode, res.Reason)
	}
}

// reauthorize answers the proxy's digest challenge to our INVITE with a new
// INVITE carrying the user's credentials (RFC 3261 §22.2). It reports true
// when the call ended instead.
func (c *call) reauthorize(u *uacInvite, res *sip.Response) bool {
	u.authTries++
	next := c.newInvite(u.inv.Body())
	if err := authorize(next, res, c.acct.creds()); err != nil {
		c.setState(stateFailed, res.StatusCode, res.Reason)
		return true
	}
	ntx, err := c.g.sip.transaction(c.ctx, next)
	if err != nil {
		c.sendFailed(err)
		return true
	}
	u.tx.Terminate()
	u.inv, u.tx = next, ntx
	u.provisional = false
	return false
}

// inviteFailed ends the call on a final non-2xx response: the state the
// status means, or the one our CANCEL asked for (a 487 answers it).
func (c *call) inviteFailed(u *uacInvite, res *sip.Response) {
	state, status := stateForStatus(res.StatusCode), res.StatusCode
	if u.cancelWanted && res.StatusCode == 487 {
		state, status = u.cancelState, cancelStatus(u.cancelState)
	}
	if res.StatusCode == 488 || res.StatusCode == 606 {
		c.fail(errNoCodec, "the called party accepts none of the browser's codecs")
	}
	reason := res.Reason
	if u.cancelWanted && u.cancelReason != "" {
		reason = u.cancelReason
	}
	c.setState(state, status, reason)
}

// cancelInvite ends the attempt with a CANCEL (RFC 3261 §9.1), sent at
// once when a provisional response came, else with the first one; the
// call ends in state with reason when the INVITE's final response comes.
// The first wish decides state and reason.
func (c *call) cancelInvite(u *uacInvite, state, reason string) {
	if !u.cancelWanted {
		u.cancelState, u.cancelReason = state, reason
	}
	u.cancelWanted = true
	if u.provisional && !u.cancelled {
		c.cancelNow(u)
	}
}

// cancelNow sends our CANCEL and starts the 64*T1 wait for the INVITE's
// final response (RFC 3261 §9.1).
func (c *call) cancelNow(u *uacInvite) {
	u.cancelled = true
	c.sendCancel(u.inv)
	u.giveUp = time.After(64 * sip.T1)
}

// eventWhileInviting handles an event of the call while our INVITE has no
// final response.
func (c *call) eventWhileInviting(u *uacInvite, ev event) {
	switch ev.kind {
	case evBrowser:
		switch ev.msg.Type {
		case msgHangup:
			// The CANCEL goes out with the first provisional response;
			// until then the call is "trying".
			c.cancelInvite(u, stateCancelled, "cancelled")
		case msgICE:
			c.browserICE(ev.msg)
		default:
			ev.tab.send(serverMsg{Type: msgError, Code: errWrongState, Call: c.id, ID: ev.msg.ID, Message: ev.msg.Type + " is not possible before the call is answered"})
		}
	case evTabGone, evShutdown:
		c.tab = nil
		c.cancelInvite(u, stateCancelled, "browser gone")
	case evPeerState:
		if code, msg := c.peerState(ev.peer, ev.pcState); code != "" {
			c.fail(code, msg)
			c.cancelInvite(u, stateFailed, msg)
		}
	case evDTMF:
		c.notify(serverMsg{Type: msgDTMF, Digit: ev.digit})
	case evRequest:
		if ev.req.Method == sip.BYE {
			_ = respond(ev.tx, ev.req, 200, "OK", nil)
		} else if !ev.req.IsAck() {
			_ = respond(ev.tx, ev.req, 481, "Call/Transaction Does Not Exist", nil)
		}
		close(ev.done)
	}
}

// sendFailed ends a call whose INVITE could not be sent.
func (c *call) sendFailed(err error) {
	if errors.Is(err, sip.ErrUDPMTUCongestion) {
		c.fail(errSIP, "the call's SIP INVITE is too large for UDP (RFC 3261 §18.1.1); offer fewer codecs")
		c.setState(stateFailed, 513, "message too large")
		return
	}
	c.fail(errUnavailable, "cannot reach the switch: "+err.Error())
	c.setState(stateUnavailable, 503, "switch unreachable")
}

// cancelStatus is the status reported for a call we cancelled: 487 when
// the browser hung up, 408 when nobody answered in time.
func cancelStatus(state string) int {
	if state == stateUnavailable {
		return 408
	}
	return 487
}

// browserICE adds a trickled candidate, or keeps it until there is a peer.
func (c *call) browserICE(m *clientMsg) {
	if m.Candidate == nil {
		return
	}
	if c.peer != nil {
		_ = c.peer.addICE(*m.Candidate)
		return
	}
	if len(c.pendingICE) < 64 {
		c.pendingICE = append(c.pendingICE, *m.Candidate)
	}
}

// sendCancel cancels our INVITE (RFC 3261 §9.1): same Request-URI, Call-ID,
// From, To, CSeq number and top Via; the 487 ends the INVITE transaction.
func (c *call) sendCancel(inv *sip.Request) {
	cancel := sip.NewRequest(sip.CANCEL, *inv.Recipient.Clone())
	cancel.AppendHeader(sip.HeaderClone(inv.Via()))
	cancel.AppendHeader(sip.HeaderClone(inv.From()))
	cancel.AppendHeader(sip.HeaderClone(inv.To()))
	cancel.AppendHeader(sip.HeaderClone(inv.CallID()))
	cancel.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.CANCEL})
	for _, r := range inv.GetHeaders("Route") {
		cancel.AppendHeader(sip.HeaderClone(r))
	}
	mf := sip.MaxForwardsHeader(70)
	cancel.AppendHeader(&mf)
	cancel.SetBody(nil)
	cancel.SetTransport("UDP")
	cancel.SetDestination(c.g.sip.proxy)
	cancel.Laddr = c.g.sip.laddr
	c.media.spawn(func() {
		ctx, stop := context.WithTimeout(context.Background(), sipTimeout)
		defer stop()
		tx, err := c.g.sip.client.TransactionRequest(ctx, cancel, noBuild)
		if err != nil {
			return
		}
		defer tx.Terminate()
		select {
		case <-tx.Responses():
		case <-tx.Done():
		case <-ctx.Done():
		}
	})
}

// answered handles the 2xx to our INVITE: ACK it (RFC 3261 §13.2.2.4), and
// set up the browser's media unless early media did already.
func (c *call) answered(u *uacInvite, res *sip.Response) {
	c.dlg.confirmUAC(res)
	c.dlg.ack2xx(c.g.sip, u.inv.CSeq().SeqNo, u.tx)
	if u.cancelWanted {
		// The 2xx crossed our CANCEL (RFC 3261 §9.1): end the call.
		c.bye(u.cancelReason)
		c.setState(u.cancelState, cancelStatus(u.cancelState), u.cancelReason)
		return
	}
	if to := res.To(); to != nil && to.DisplayName != "" {
		c.remoteName = to.DisplayName
	}
	if c.peer == nil {
		if len(res.Body()) == 0 {
			c.fail(errSIP, "the called party answered without SDP")
			c.bye("no SDP")
			c.setState(stateFailed, 488, "answer without SDP")
			return
		}
		if code, msg := c.setupOutgoingMedia(string(res.Body())); code != "" {
			c.fail(code, msg)
			c.bye(msg)
			c.setState(stateFailed, 488, msg)
			return
		}
	} else {
		// The final answer may differ from the early one (RFC 3261
		// §13.2.1 leaves it to the UAS): take its addresses.
		c.applyRemoteBody(res.Body())
	}
	c.answeredAt = time.Now()
	c.setState(stateAnswered, res.StatusCode, res.Reason)
}

// setupOutgoingMedia takes the SIP answer to our offer, agrees the codecs
// of every m-line, builds the peer connection with exactly those and
// answers the browser's offer. It returns an error code and message when
// that fails.
func (c *call) setupOutgoingMedia(answer string) (string, string) {
	ans, err := parseSDP(answer)
	if err != nil {
		return errSIP, "the called party's SDP is unusable: " + err.Error()
	}
	if len(ans.Media) != len(c.streams) {
		return errSIP, "the called party's SDP does not answer our offer"
	}
	var media []peerMedia
	for i, s := range c.streams {
		m := ans.Media[i]
		webM := c.webOffer.Media[c.webIndex(s)]
		pairs := agree(usable(s.kind, webM.Codecs), m.Codecs, true)
		if m.Port == 0 || len(pairs) == 0 {
			s.setDirection(false, false)
			c.localMedia[i].Port = 0
			c.localMedia[i].Formats = m.Formats
			continue
		}
		s.setCodecs(pairs)
		s.setRemote(m)
		remoteDir := sdpDir(m)
		s.setDirection(sends(remoteDir), receives(remoteDir))
		// The SDP we sent stays what it was, with the codecs now agreed, so
		// that a later re-INVITE offers only those (RFC 3264 §8.3.2).
		c.localMedia[i].Codecs = sipCodecs(pairs)
		var webCodecs []codec
		for _, p := range pairs {
			webCodecs = append(webCodecs, p.Web)
		}
		media = append(media, peerMedia{stream: s, codecs: webCodecs})
	}
	if len(media) == 0 {
		return errNoCodec, "the called party accepts none of the browser's codecs"
	}
	p, err := c.g.newPeer(c, c.tab, media)
	if err != nil {
		return errInternal, err.Error()
	}
	c.peer = p
	sdp, err := p.answer(c, c.webOffer.raw)
	if err != nil {
		return errBadSDP, err.Error()
	}
	p.use()
	for _, cand := range c.pendingICE {
		_ = p.addICE(cand)
	}
	c.pendingICE = nil
	video := false
	for _, m := range media {
		if m.stream.kind == "video" {
			video = true
		}
	}
	c.video = video
	c.notify(serverMsg{Type: msgAnswer, SDP: sdp, Video: boolp(video)})
	c.armICE()
	return "", ""
}

// webIndex is the browser m-line a stream relays.
func (c *call) webIndex(s *stream) int { return s.webIdx }

func sipCodecs(pairs []codecPair) []codec {
	out := make([]codec, 0, len(pairs))
	for _, p := range pairs {
		out = append(out, p.SIP)
	}
	return out
}

package gateway

import (
	"errors"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/pion/webrtc/v4"
)

// pionDir is the direction of the gateway's transceiver toward the browser
// for an m-line the SIP party offered with dir: the gateway stands in for
// the SIP party, so it is the same.
func pionDir(dir string) webrtc.RTPTransceiverDirection {
	switch dir {
	case dirSendOnly:
		return webrtc.RTPTransceiverDirectionSendonly
	case dirRecvOnly:
		return webrtc.RTPTransceiverDirectionRecvonly
	case dirInactive:
		return webrtc.RTPTransceiverDirectionInactive
	}
	return webrtc.RTPTransceiverDirectionSendrecv
}

// startIncoming rings every given tab with an offer built from the SIP
// party's codecs, and waits for one of them to answer. It runs in the
// call's goroutine; the INVITE's final response is sent from here.
func (c *call) startIncoming(tabs []*tab) {
	c.state = stateRinging
	offer := c.sipOffer
	streams, err := c.allocStreams(offer.Media, true)
	if err != nil {
		c.log.Warn("incoming call refused", "error", err)
		_ = c.respondInvite(503, "Service Unavailable", nil)
		return
	}
	c.streams = streams
	c.localMedia = make([]sipMedia, len(offer.Media))
	any := false
	for i, m := range offer.Media {
		c.localMedia[i] = sipMedia{Kind: m.Kind, Proto: m.Proto, Formats: m.Formats}
		if streams[i] != nil {
			any = true
			if m.Kind == "video" {
				c.video = true
			}
		}
	}
	if !any {
		_ = c.respondInvite(488, "Not Acceptable Here", nil, sip.NewHeader("Warning", `399 gateway "no common codec over plain RTP"`))
		return
	}
	c.startStreams()

	c.rings = map[*tab]*peer{}
	for _, t := range tabs {
		var media []peerMedia
		for i, s := range streams {
			if s != nil {
				media = append(media, peerMedia{stream: s, codecs: usable(s.kind, offer.Media[i].Codecs), dir: pionDir(offer.Media[i].Dir)})
			}
		}
		p, err := c.g.newPeer(c, t, media)
		if err != nil {
			c.log.Warn("peer for ringing tab", "error", err)
			continue
		}
		sdp, err := p.offer(c)
		if err != nil || !t.addCall(c) {
			p.close()
			continue
		}
		c.rings[t] = p
		t.send(serverMsg{Type: msgIncoming, Call: c.id, From: c.remoteURI, FromName: c.remoteName,
			To: c.acct.aor(), SDP: sdp, Video: boolp(c.video)})
	}
	if len(c.rings) == 0 {
		_ = c.respondInvite(480, "Temporarily Unavailable", nil)
		return
	}
	ringing := c.inviteResponse(180, "Ringing", nil, &sip.ContactHeader{Address: *c.dlg.contact.Clone()})
	_ = c.invite.tx.Respond(ringing)
	c.ringLoop()
}

// ringLoop waits for a tab to answer or decline, the caller to cancel, or
// the ring timeout.
func (c *call) ringLoop() {
	timer := time.NewTimer(c.g.cfg.RingTimeout)
	defer timer.Stop()
	for {
		select {
		case <-timer.C:
			c.stopRinging(stateCancelled, 0, "not answered")
			_ = c.respondInvite(480, "Temporarily Unavailable", nil, sip.NewHeader("Reason", `SIP;cause=480;text="no answer"`))
			c.state = stateUnavailable
			return
		case ev := <-c.events:
			switch ev.kind {
			case evCancel:
				// sipgo answered the CANCEL and the INVITE (487) already.
				c.invite.answeredBySIPGo()
				c.stopRinging(stateCancelled, 487, "the caller hung up")
				c.state = stateCancelled
				return
			case evShutdown:
				c.stopRinging(stateCancelled, 0, "the gateway is shutting down")
				_ = c.respondInvite(480, "Temporarily Unavailable", nil)
				c.state = stateCancelled
				return
			case evTabGone:
				if p := c.rings[ev.tab]; p != nil {
					p.close()
					delete(c.rings, ev.tab)
				}
				if len(c.rings) == 0 {
					_ = c.respondInvite(480, "Temporarily Unavailable", nil)
					c.state = stateUnavailable
					return
				}
			case evRequest:
				if !ev.req.IsAck() {
					_ = respond(ev.tx, ev.req, 481, "Call/Transaction Does Not Exist", nil)
				}
				close(ev.done)
			case evBrowser:
				if c.ringBrowser(ev) {
					return
				}
			}
		}
	}
}

// ringBrowser handles a tab's message while the call rings; it returns
// true when ringing is over (answered or declined).
func (c *call) ringBrowser(ev event) bool {
	t, m := ev.tab, ev.msg
	p := c.rings[t]
	if p == nil {
		t.send(serverMsg{Type: msgError, Code: errUnknownCall, Call: c.id, ID: m.ID, Message: "this call no longer rings here"})
		return false
	}
	switch m.Type {
	case msgICE:
		if m.Candidate != nil {
			_ = p.addICE(*m.Candidate)
		}
	case msgAnswer:
		return c.answerFrom(t, p, m)
	case msgDecline, msgHangup:
		code, reason := 603, "Decline"
		if m.Reason == "busy" {
			code, reason = 486, "Busy Here"
		}
		// The tab is free before the caller hears of it (a new call may
		// follow at once).
		delete(c.rings, t)
		t.dropCall(c.id, c)
		c.stopRinging(stateDeclined, code, "declined in another tab")
		_ = c.respondInvite(code, reason, nil)
		t.send(serverMsg{Type: msgCallState, Call: c.id, State: stateDeclined, Status: code, Reason: reason})
		p.close()
		c.state = stateDeclined
		return true
	default:
		t.send(serverMsg{Type: msgError, Code: errWrongState, Call: c.id, ID: m.ID, Message: m.Type + " is not possible while the call rings"})
	}
	return false
}

// stopRinging ends the call in every tab still ringing.
func (c *call) stopRinging(state string, status int, reason string) {
	for t, p := range c.rings {
		t.dropCall(c.id, c)
		t.send(serverMsg{Type: msgCallState, Call: c.id, State: state, Status: status, Reason: reason})
		p.close()
	}
	c.rings = nil
}

// answerFrom completes the call with the tab that answered: its answer
// decides the codecs of every m-line, the SIP party gets them in a 200 OK,
// and the other tabs stop ringing.
func (c *call) answerFrom(t *tab, p *peer, m *clientMsg) bool {
	refuse := func(code, msg string) bool {
		t.send(serverMsg{Type: msgError, Code: code, Call: c.id, ID: m.ID, Message: msg})
		t.send(serverMsg{Type: msgCallState, Call: c.id, State: stateFailed, Reason: msg})
		p.close()
		delete(c.rings, t)
		t.dropCall(c.id, c)
		if len(c.rings) == 0 {
			_ = c.respondInvite(488, "Not Acceptable Here", nil)
			c.state = stateFailed
			return true
		}
		return false
	}
	ans, err := parseSDP(m.SDP)
	if err != nil {
		return refuse(errBadSDP, err.Error())
	}
	if len(ans.Media) < len(p.media) {
		return refuse(errBadSDP, "the answer has fewer m-lines than the offer")
	}
	if err := p.accept(m.SDP); err != nil {
		return refuse(errBadSDP, err.Error())
	}
	agreed, video := c.agreeAnswer(p, ans)
	if !agreed {
		return refuse(errNoCodec, "the browser accepted none of the caller's codecs")
	}
	c.webOffer = ans
	c.video = video
	c.peer, c.tab = p, t
	delete(c.rings, t)
	p.use()
	c.stopRinging(stateAnsweredElsewhere, 200, "answered in another tab")
	return c.sendOK()
}

// agreeAnswer sets up every stream of p from the browser's answer: the
// codecs both the SIP party's offer and the answer have, and the
// directions of our answer to the SIP party (RFC 3264 §6.1). It reports
// whether any line agreed, and whether a video line did.
func (c *call) agreeAnswer(p *peer, ans *session) (agreed, video bool) {
	offer := c.sipOffer
	for k, pm := range p.media {
		s := pm.stream
		wm := ans.Media[k]
		sipM := offer.Media[s.index]
		pairs := agree(usable(s.kind, sipM.Codecs), wm.Codecs, false)
		if wm.Port == 0 || len(pairs) == 0 {
			s.setDirection(false, false)
			continue
		}
		agreed = true
		if s.kind == "video" {
			video = true
		}
		s.setCodecs(pairs)
		s.setRemote(sipM)
		offered := sdpDir(sipM)
		ansDir := intersectDir(wm.Dir, reverseDir(offered))
		rtpPort, rtcpPort := s.localPorts()
		c.localMedia[s.index] = sipMedia{Kind: s.kind, Proto: sipM.Proto, Port: rtpPort, RTCPPort: rtcpPort, Codecs: sipCodecs(pairs), Dir: ansDir}
		s.setDirection(sends(offered) && receives(ansDir), receives(offered) && sends(ansDir))
	}
	return agreed, video
}

// sendOK answers the INVITE with our SDP, retransmitted until the ACK
// (RFC 3261 §13.3.1.4), and tells the tab the call is answered. It
// reports true: ringing is over either way.
func (c *call) sendOK() bool {
	res := c.inviteResponse(200, "OK", c.sdpBody(),
		sip.NewHeader("Content-Type", "application/sdp"),
		&sip.ContactHeader{Address: *c.dlg.contact.Clone()},
		sip.NewHeader("Allow", allowHeader))
	if err := c.invite.final(res); err != nil {
		if errors.Is(err, sip.ErrUDPMTUCongestion) {
			c.fail(errSIP, "the SIP answer is too large for UDP (RFC 3261 §18.1.1)")
			c.setState(stateFailed, 513, "message too large")
			return true
		}
		c.fail(errSIP, "the caller is gone")
		c.setState(stateCancelled, 487, "the caller hung up")
		return true
	}
	c.ok2xx.start(res, c.invite.tx, c.invite.req.CSeq().SeqNo)
	c.answeredAt = time.Now()
	c.setState(stateAnswered, 200, "OK")
	if !c.peer.up {
		c.armICE()
	}
	return true
}

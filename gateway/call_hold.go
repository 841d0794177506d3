package gateway

import (
	"context"
	"fmt"
	"time"

	"github.com/emiago/sipgo/sip"
)

// holdState is where an answered call stands on hold (RFC 3264 §8.4), and
// our re-INVITE in progress.
type holdState struct {
	local      bool // we hold the SIP party (our a=sendonly)
	remote     bool // the SIP party holds us
	reinviting bool // our re-INVITE awaits its final response
	want       int  // asked for during our re-INVITE: -1 nothing, 0 resume, 1 hold
}

// holdDir is the direction we want while we hold the SIP party or not.
func holdDir(hold bool) string {
	if hold {
		return dirSendOnly
	}
	return dirSendRecv
}

// holdAsked handles a tab's hold or resume: one re-INVITE at a time, the
// last wish queued while one is in progress.
func (c *call) holdAsked(hold bool) {
	want := 0
	if hold {
		want = 1
	}
	if c.hold.reinviting {
		c.hold.want = want
		return
	}
	if hold == c.hold.local {
		c.notify(serverMsg{Type: msgHoldState, Held: boolp(c.hold.local), By: "local"})
		return
	}
	c.sendReinvite(hold)
}

// sendReinvite puts the SIP party on hold (a=sendonly) or takes it off
// (a=sendrecv) with a re-INVITE (RFC 3264 §8.4), in a helper goroutine
// that posts the outcome.
func (c *call) sendReinvite(hold bool) {
	c.setLocalDirs(hold)
	req := c.dlg.newRequest(sip.INVITE)
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.AppendHeader(sip.NewHeader("Allow", allowHeader))
	req.SetBody(c.sdpBody())
	cseq := req.CSeq().SeqNo
	c.hold.reinviting = true
	c.media.spawn(func() {
		ctx, cancel := context.WithTimeout(c.ctx, 32*time.Second)
		defer cancel()
		res, err := c.g.sip.roundTrip(ctx, req)
		c.post(event{kind: evReinvite, res: res, err: err, hold: hold, cseq: cseq})
	})
}

// setLocalDirs writes the directions of localMedia for our hold state.
func (c *call) setLocalDirs(hold bool) {
	dir := holdDir(hold)
	for i := range c.localMedia {
		if c.localMedia[i].Port != 0 {
			c.localMedia[i].Dir = c.combineDir(i, dir)
		}
	}
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

// reinviteDone handles the final response to our re-INVITE.
func (c *call) reinviteDone(ev event) bool {
	c.hold.reinviting = false
	if ev.err != nil {
		c.fail(errSIP, "hold/resume got no answer: "+ev.err.Error())
		c.bye("re-INVITE timeout")
		c.setState(stateEnded, 408, "the SIP side stopped answering")
		return true
	}
	res := ev.res
	if res.IsSuccess() {
		c.dlg.ack2xx(c.g.sip, ev.cseq, nil)
		c.applyRemoteBody(res.Body())
		c.hold.local = ev.hold
		c.notify(serverMsg{Type: msgHoldState, Held: boolp(c.hold.local), By: "local"})
	} else {
		if res.StatusCode == 481 || res.StatusCode == 408 {
			c.fail(errSIP, fmt.Sprintf("hold/resume: %d %s", res.StatusCode, res.Reason))
			c.bye("")
			c.setState(stateEnded, res.StatusCode, res.Reason)
			return true
		}
		// RFC 3261 §14.1: the session is unchanged.
		c.fail(errSIP, fmt.Sprintf("hold/resume refused: %d %s", res.StatusCode, res.Reason))
		c.setLocalDirs(c.hold.local)
	}
	if c.hold.want >= 0 {
		want := c.hold.want == 1
		c.hold.want = -1
		if want != c.hold.local {
			c.sendReinvite(want)
		}
	}
	return false
}

// reinviteIn answers a re-INVITE from the SIP side (RFC 3261 §14.2): hold
// (sendonly or inactive, answered recvonly or inactive, RFC 3264 §8.4),
// resume, or a new address. Its 2xx is retransmitted until the ACK.
func (c *call) reinviteIn(req *sip.Request, tx sip.ServerTransaction) {
	if c.hold.reinviting || c.ok2xx.pending() {
		// RFC 3261 §14.2: an offer is pending on our side.
		_ = respond(tx, req, 491, "Request Pending", nil)
		return
	}
	seq := req.CSeq().SeqNo
	if seq <= c.dlg.remoteCSeq {
		_ = respond(tx, req, 500, "Server Internal Error", nil, sip.NewHeader("Retry-After", "1"))
		return
	}
	c.dlg.remoteCSeq = seq
	c.dlg.targetRefresh(req)
	wasHeld := c.hold.remote
	if body := req.Body(); len(body) > 0 {
		if !c.answerReoffer(body) {
			_ = respond(tx, req, 488, "Not Acceptable Here", nil)
			return
		}
	} else {
		c.setLocalDirs(c.hold.local)
	}
	res := sip.NewResponseFromRequest(req, 200, "OK", c.sdpBody())
	res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	res.AppendHeader(&sip.ContactHeader{Address: *c.dlg.contact.Clone()})
	res.AppendHeader(sip.NewHeader("Allow", allowHeader))
	if err := tx.Respond(res); err != nil {
		c.log.Debug("re-INVITE answer not sent", "error", err)
		return
	}
	c.ok2xx.start(res, tx, seq)
	if c.hold.remote != wasHeld {
		c.notify(serverMsg{Type: msgHoldState, Held: boolp(c.hold.remote), By: "remote"})
	}
}

// answerReoffer takes the SIP party's new offer (RFC 3264 §8): every line
// we relay is answered with what both we and the offer allow, a rejected
// line inactive. The party holds us when no line it keeps receives. It
// reports false when the offer cannot be answered (its m-lines must be
// ours, RFC 3264 §8.1).
func (c *call) answerReoffer(body []byte) bool {
	s, err := parseSDP(string(body))
	if err != nil || len(s.Media) != len(c.localMedia) {
		return false
	}
	ours := holdDir(c.hold.local)
	held := true
	for i, m := range s.Media {
		if c.localMedia[i].Port == 0 {
			continue
		}
		offered := sdpDir(m)
		if m.Port != 0 && receives(offered) {
			held = false
		}
		c.localMedia[i].Dir = intersectDir(c.combineDir(i, ours), reverseDir(offered))
		if m.Port == 0 {
			c.localMedia[i].Dir = dirInactive
		}
	}
	c.applyRemote(s)
	c.hold.remote = held
	return true
}

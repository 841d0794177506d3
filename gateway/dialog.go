package gateway

import (
	"errors"
	"time"

	"github.com/emiago/sipgo/sip"
)

// This file is the gateway's dialog layer (RFC 3261 §12, §13): dialog
// state and requests inside a dialog, the final response to an INVITE we
// received, the retransmission of our 2xx until its ACK and the ACK of the
// 2xx we receive. sipgo's DialogClientSession and DialogServerSession
// (v1.7.2) are not used: docs/decisions.md, "Gateway", says why.

// dialog is the state of one SIP dialog of the gateway (RFC 3261 §12): the
// identifiers, the remote target, the route set and the sequence numbers.
// It is owned by its call's goroutine.
type dialog struct {
	callID       string
	local        sip.Uri // From of our requests
	localName    string
	localTag     string
	remote       sip.Uri // To of our requests
	remoteName   string
	remoteTag    string
	contact      sip.Uri // our Contact
	remoteTarget sip.Uri
	routes       []string // Route header values, in the order they are sent
	cseq         uint32   // last local CSeq number
	remoteCSeq   uint32
}

// key identifies a dialog among the gateway's: its Call-ID and our tag. A
// call between two browsers of one gateway has two dialogs with one Call-ID.
func (d *dialog) key() string { return dialogKey(d.callID, d.localTag) }

func dialogKey(callID, localTag string) string { return callID + "\x00" + localTag }

// newRequest builds a request inside the dialog (RFC 3261 §12.2.1.1). ACK
// and CANCEL do not take a new CSeq number.
func (d *dialog) newRequest(method sip.RequestMethod) *sip.Request {
	req := sip.NewRequest(method, *d.remoteTarget.Clone())
	from := &sip.FromHeader{DisplayName: d.localName, Address: *d.local.Clone(), Params: sip.NewParams()}
	from.Params.Add("tag", d.localTag)
	to := &sip.ToHeader{DisplayName: d.remoteName, Address: *d.remote.Clone(), Params: sip.NewParams()}
	if d.remoteTag != "" {
		to.Params.Add("tag", d.remoteTag)
	}
	cid := sip.CallIDHeader(d.callID)
	if method != sip.ACK && method != sip.CANCEL {
		d.cseq++
	}
	req.AppendHeader(from)
	req.AppendHeader(to)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: d.cseq, MethodName: method})
	for _, r := range d.routes {
		req.AppendHeader(sip.NewHeader("Route", r))
	}
	if method == sip.INVITE || method == sip.ACK {
		req.AppendHeader(&sip.ContactHeader{Address: *d.contact.Clone()})
	}
	return req
}

// confirmUAC completes a dialog we started from the 2xx (or 1xx with a To
// tag) that answered our INVITE (RFC 3261 §12.1.2): the route set is the
// Record-Route list reversed, the remote target its Contact.
func (d *dialog) confirmUAC(res *sip.Response) {
	if to := res.To(); to != nil {
		d.remoteTag, _ = to.Params.Get("tag")
	}
	if c := res.Contact(); c != nil {
		d.remoteTarget = *c.Address.Clone()
	}
	rr := res.GetHeaders("Record-Route")
	d.routes = d.routes[:0]
	for i := len(rr) - 1; i >= 0; i-- {
		d.routes = append(d.routes, rr[i].Value())
	}
}

// newUACDialog starts the dialog of an INVITE we send from local to target
// (RFC 3261 §12.1.2): a new Call-ID and tag, the target as remote URI and
// remote target until a response with a To tag confirms the dialog.
func newUACDialog(local, target, contact sip.Uri) *dialog {
	return &dialog{
		callID:       sip.GenerateTagN(24),
		local:        local,
		localTag:     sip.GenerateTagN(16),
		remote:       sip.Uri{Scheme: target.Scheme, User: target.User, Host: target.Host, Port: target.Port},
		contact:      contact,
		remoteTarget: target,
	}
}

// newUASDialog builds the dialog of an INVITE we received (RFC 3261
// §12.1.1): the route set is its Record-Route list in order.
func newUASDialog(req *sip.Request, contact sip.Uri) *dialog {
	from, to := req.From(), req.To()
	d := &dialog{
		callID:     req.CallID().Value(),
		local:      *to.Address.Clone(),
		localName:  to.DisplayName,
		localTag:   sip.GenerateTagN(16),
		remote:     *from.Address.Clone(),
		remoteName: from.DisplayName,
		contact:    contact,
		remoteCSeq: req.CSeq().SeqNo,
		cseq:       1,
	}
	d.remoteTag, _ = from.Params.Get("tag")
	if c := req.Contact(); c != nil {
		d.remoteTarget = *c.Address.Clone()
	} else {
		d.remoteTarget = *from.Address.Clone()
	}
	for _, h := range req.GetHeaders("Record-Route") {
		d.routes = append(d.routes, h.Value())
	}
	return d
}

// targetRefresh takes a new remote target from a request in the dialog
// (RFC 3261 §12.2.2: a re-INVITE's Contact replaces it).
func (d *dialog) targetRefresh(req *sip.Request) {
	if ct := req.Contact(); ct != nil {
		d.remoteTarget = *ct.Address.Clone()
	}
}

// --- UAC: the 2xx that answers our INVITE ---

// ackFor builds the ACK for a 2xx to an INVITE sent in dialog d (RFC 3261
// §13.2.2.4): in the dialog, with the INVITE's CSeq number.
func ackFor(d *dialog, cseq uint32) *sip.Request {
	ack := d.newRequest(sip.ACK)
	ack.CSeq().SeqNo = cseq
	return ack
}

// ack2xx acknowledges the 2xx that answered our INVITE of CSeq number cseq
// (RFC 3261 §13.2.2.4). The ACK goes straight to the transport; with tx
// given (the INVITE's transaction, kept alive after its 2xx, RFC 6026), it
// is sent again for each retransmission of that 2xx, as our ACK was lost:
// the UAC core, not the transaction, retransmits an ACK.
func (d *dialog) ack2xx(u *sipUA, cseq uint32, tx sip.ClientTransaction) {
	ack := ackFor(d, cseq)
	_ = u.write(ack) // prepares ack: clones of it are sent again as they are
	if tx == nil {
		return
	}
	tag := d.remoteTag
	tx.OnRetransmission(func(r *sip.Response) {
		// Only the 2xx of our dialog: one with another tag comes from
		// another fork.
		if t, _ := r.To().Params.Get("tag"); t == tag {
			_ = u.client.WriteRequest(ack.Clone(), noBuild)
		}
	})
}

// --- UAS: the INVITE we answer ---

// uasInvite is an INVITE the gateway received and answers (RFC 3261
// §13.3.1): its request and server transaction, and whether its final
// response went out. sent is closed then; onInvite waits for it, as sipgo
// ends the transaction when the handler returns.
type uasInvite struct {
	req  *sip.Request
	tx   sip.ServerTransaction
	done bool          // the final response is sent, or sipgo sent 487
	sent chan struct{} // closed once done
}

// pending reports whether an INVITE awaits its final response.
func (u *uasInvite) pending() bool { return u.tx != nil && !u.done }

// response builds a response to the INVITE with our To tag, the dialog's
// identifier (RFC 3261 §12.1.1): sipgo puts a random tag on a response to a
// request without one.
func (u *uasInvite) response(tag string, code int, reason string, body []byte, hdrs ...sip.Header) *sip.Response {
	res := sip.NewResponseFromRequest(u.req, code, reason, body)
	if to := res.To(); to != nil {
		to.Params.Add("tag", tag)
	}
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	return res
}

// final sends the INVITE's final response, once.
func (u *uasInvite) final(res *sip.Response) error {
	if u.done {
		return errors.New("INVITE already answered")
	}
	u.done = true
	defer close(u.sent)
	return u.tx.Respond(res)
}

// answeredBySIPGo records that sipgo answered the INVITE itself (487 after
// a CANCEL, RFC 3261 §9.2).
func (u *uasInvite) answeredBySIPGo() {
	u.done = true
	close(u.sent)
}

// okRetransmit is a 2xx we sent to an INVITE (the first one or a
// re-INVITE), passed to the transport again until its ACK comes (RFC 3261
// §13.3.1.4): after T1, then at intervals doubling up to T2, for 64*T1 in
// all. The call's goroutine owns it and selects on C.
type okRetransmit struct {
	res   *sip.Response
	tx    sip.ServerTransaction
	cseq  uint32
	timer *time.Timer
	C     <-chan time.Time // the next retransmission is due; nil when none is pending
	gap   time.Duration
	until time.Time
}

// start retransmits res, sent on tx to the INVITE of CSeq number cseq,
// until acked.
func (o *okRetransmit) start(res *sip.Response, tx sip.ServerTransaction, cseq uint32) {
	o.res, o.tx, o.cseq = res, tx, cseq
	o.gap = sip.T1
	o.until = time.Now().Add(64 * sip.T1)
	if o.timer != nil {
		o.timer.Stop()
	}
	o.timer = time.NewTimer(o.gap)
	o.C = o.timer.C
}

// pending reports whether a 2xx awaits its ACK.
func (o *okRetransmit) pending() bool { return o.res != nil }

// acked reports whether an ACK with CSeq number cseq acknowledges the
// pending 2xx (RFC 3261 §13.3.1.4), and stops retransmitting it if so.
func (o *okRetransmit) acked(cseq uint32) bool {
	if o.res == nil || cseq != o.cseq {
		return false
	}
	o.res, o.tx, o.C = nil, nil, nil
	o.stop()
	return true
}

// fire retransmits the pending 2xx when C fires. It reports true when the
// ACK is overdue: the session SHOULD then end with a BYE (§13.3.1.4).
func (o *okRetransmit) fire() (overdue bool) {
	if o.res == nil {
		o.C = nil
		return false
	}
	if time.Now().After(o.until) {
		o.res, o.C = nil, nil
		return true
	}
	_ = o.tx.Respond(o.res)
	o.gap = min(2*o.gap, sip.T2)
	o.timer.Reset(o.gap)
	return false
}

// stop stops the timer.
func (o *okRetransmit) stop() {
	if o.timer != nil {
		o.timer.Stop()
	}
}

package gateway

import (
	"github.com/emiago/sipgo/sip"
)

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

package siptest

import (
	"strconv"

	gosip "github.com/emiago/sipgo/sip"
)

// Dialog is one side of a dialog (RFC 3261 §12), enough to build in-dialog
// requests as text.
type Dialog struct {
	p      *Phone
	CallID string
	Local  string // our From value, with our tag
	Remote string // the peer's To value, with its tag
	Target string // the peer's Contact URI: the Request-URI
	Routes []string
	CSeq   int // last CSeq we used
	invite int // CSeq of the INVITE, for the ACK of a 2xx
}

// UACDialog is the caller's dialog made by the 2xx res to the INVITE inv it
// sent: the route set is the Record-Route of res reversed (§12.1.2).
func (p *Phone) UACDialog(inv *Msg, res *gosip.Response) *Dialog {
	p.t.Helper()
	d := &Dialog{p: p, CallID: inv.Get("Call-ID"), Local: inv.Get("From"), Remote: res.To().Value(), CSeq: inv.CSeq(), invite: inv.CSeq()}
	c := res.Contact()
	if c == nil {
		p.t.Fatalf("phone %s: %d response has no Contact", p.cfg.Name, res.StatusCode)
	}
	d.Target = c.Address.String()
	rr := res.GetHeaders("Record-Route")
	for i := len(rr) - 1; i >= 0; i-- {
		d.Routes = append(d.Routes, rr[i].Value())
	}
	return d
}

// UASDialog is the callee's dialog for the INVITE req it answered with To
// tag p.Tag(Call-ID): the route set is the Record-Route of req in order
// (§12.1.1).
func (p *Phone) UASDialog(req *gosip.Request) *Dialog {
	p.t.Helper()
	callID := req.CallID().Value()
	to := gosip.HeaderClone(req.To()).(*gosip.ToHeader)
	to.Params.Add("tag", p.Tag(callID))
	d := &Dialog{p: p, CallID: callID, Local: to.Value(), Remote: req.From().Value(), CSeq: 100}
	c := req.Contact()
	if c == nil {
		p.t.Fatalf("phone %s: INVITE has no Contact", p.cfg.Name)
	}
	d.Target = c.Address.String()
	for _, h := range req.GetHeaders("Record-Route") {
		d.Routes = append(d.Routes, h.Value())
	}
	return d
}

// Request returns the next in-dialog request of method; an ACK takes the
// CSeq number of the INVITE, anything else the next number.
func (d *Dialog) Request(method string) *Msg {
	cseq := d.invite
	if method != "ACK" {
		d.CSeq++
		cseq = d.CSeq
	}
	m := &Msg{Start: method + " " + d.Target + " SIP/2.0"}
	m.Add("Via", d.p.Via(NewBranch()))
	for _, r := range d.Routes {
		m.Add("Route", r)
	}
	m.Add("Max-Forwards", "70")
	m.Add("From", d.Local)
	m.Add("To", d.Remote)
	m.Add("Call-ID", d.CallID)
	m.Add("CSeq", strconv.Itoa(cseq)+" "+method)
	return m
}

// Package sipstatus is the error form of a SIP final response, shared by the
// packages that answer SIP requests (sip, registrar): a handler returns an
// error, and one function (Response) turns any error into the one response
// to send. It must not import any other package of the switch.
package sipstatus

import (
	"errors"
	"net"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Error is an error with the SIP response it should be answered with.
type Error struct {
	Code    int
	Reason  string
	Headers []sip.Header // the response must carry these (challenges, Min-Expires, Retry-After)
	Err     error        // the cause, for logs
}

// New returns an Error answering code and reason, caused by err (may be nil).
func New(code int, reason string, err error, hdrs ...sip.Header) *Error {
	return &Error{Code: code, Reason: reason, Err: err, Headers: hdrs}
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Reason + ": " + e.Err.Error()
	}
	return e.Reason
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// SIPStatus returns the response code and reason phrase.
func (e *Error) SIPStatus() (int, string) { return e.Code, e.Reason }

// SIPHeaders returns the headers the response must carry.
func (e *Error) SIPHeaders() []sip.Header { return e.Headers }

// Of returns the status err maps to: that of the first Error in its chain,
// or 500 for anything else.
func Of(err error) (int, string) {
	var e *Error
	if errors.As(err, &e) {
		return e.Code, e.Reason
	}
	return 500, "Server Internal Error"
}

// Response is the one place an error becomes a SIP response to req.
func Response(req *sip.Request, err error) *sip.Response {
	code, reason, hdrs := Parts(err)
	res := NewResponse(req, code, reason)
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	return res
}

// Parts is what Response makes of err: the status, and the headers the
// response carries besides those copied from the request; for an answer
// written without a sipgo message (sip's stateless answers from a
// request's bytes).
func Parts(err error) (code int, reason string, hdrs []sip.Header) {
	code, reason = Of(err)
	var e *Error
	if errors.As(err, &e) {
		hdrs = e.Headers
	}
	return code, reason, hdrs
}

// NewResponse returns a response to req without a body, with the headers
// RFC 3261 §8.2.6 copies from the request: what sipgo's
// NewResponseFromRequest builds, for less. sipgo clones each copied header
// and gives a To without a tag a UUID from crypto/rand; in profiles of the
// REGISTER fast path that was 7 % of the CPU of a registration
// (bench/sip/RESULTS.md), most of it for copies nobody changes, and the
// UUID was then replaced by the stateless tag.
//
// So the response shares the request's Vias, From, Call-ID, CSeq (and its
// Record-Routes, on a 18x or 2xx to a request other than REGISTER and ACK,
// §12.1.1; a 100's Timestamp, §8.2.6.1) with the request: neither message
// changes them in place once parsed (what the proxy forwards is a copy,
// sip.requestCopy). It has a To of its own, which takes a tag, and a top
// Via of its own when RFC 3581's received and rport are filled in (§4).
// A To without a tag gets a random one on every response but a 100
// (§8.2.6.2; §19.3: sipgo's GenerateTagN, 16 letters and digits from
// math/rand's generator, which the runtime seeds from the system); who
// answers statelessly replaces it with its own.
func NewResponse(req *sip.Request, code int, reason string) *sip.Response {
	res := sip.NewResponse(code, reason)
	res.SipVersion = req.SipVersion
	if req.Method != sip.REGISTER && req.Method != sip.ACK && (code >= 180 && code < 190 || code >= 200 && code < 300 || req.Method == sip.INVITE && code > 100 && code < 200) {
		for _, h := range req.Headers() {
			if rr, ok := h.(*sip.RecordRouteHeader); ok {
				res.AppendHeader(rr)
			}
		}
	}
	top := true
	for _, h := range req.Headers() {
		v, ok := h.(*sip.ViaHeader)
		if !ok {
			continue
		}
		if top {
			top = false
			if rport, has := v.Params.Get("rport"); has && rport == "" {
				if host, port, err := net.SplitHostPort(req.Source()); err == nil {
					v = v.Clone()
					v.Params.Add("rport", port)
					v.Params.Add("received", host)
				}
			}
		}
		res.AppendHeader(v)
	}
	if h := req.From(); h != nil {
		res.AppendHeader(h)
	}
	if h := req.To(); h != nil {
		to := &sip.ToHeader{DisplayName: h.DisplayName, Address: h.Address, Params: make(sip.HeaderParams, len(h.Params), len(h.Params)+1)}
		copy(to.Params, h.Params)
		if code != 100 && !to.Params.Has("tag") {
			to.Params.Add("tag", sip.GenerateTagN(16))
		}
		res.AppendHeader(to)
	}
	if h := req.CallID(); h != nil {
		res.AppendHeader(h)
	}
	if h := req.CSeq(); h != nil {
		res.AppendHeader(h)
	}
	if code == 100 {
		for _, h := range req.Headers() {
			if strings.EqualFold(h.Name(), "Timestamp") {
				res.AppendHeader(h)
			}
		}
	}
	res.SetBody(nil)
	res.SetTransport(req.Transport())
	res.SetDestination(req.Source())
	return res
}

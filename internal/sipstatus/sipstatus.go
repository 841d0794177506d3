// Package sipstatus is the error form of a SIP final response, shared by the
// packages that answer SIP requests (sip, registrar): a handler returns an
// error, and one function (Response) turns any error into the one response
// to send. It must not import any other package of the switch.
package sipstatus

import (
	"errors"

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
	code, reason := Of(err)
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	var e *Error
	if errors.As(err, &e) {
		for _, h := range e.Headers {
			res.AppendHeader(h)
		}
	}
	return res
}

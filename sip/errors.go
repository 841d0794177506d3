package sip

import (
	"context"
	"errors"
	"log/slog"

	gosip "github.com/emiago/sipgo/sip"
)

// statusError is the error form of a SIP final response.
type statusError struct {
	code    int
	reason  string
	headers []gosip.Header
	err     error
}

func (e *statusError) Error() string {
	if e.err != nil {
		return e.reason + ": " + e.err.Error()
	}
	return e.reason
}

func (e *statusError) Unwrap() error              { return e.err }
func (e *statusError) SIPStatus() (int, string)   { return e.code, e.reason }
func (e *statusError) SIPHeaders() []gosip.Header { return e.headers }
func status(code int, reason string, err error, h ...gosip.Header) error {
	return &statusError{code: code, reason: reason, err: err, headers: h}
}

// sipStatuser is implemented by errors that know their SIP response
// (this package's and the registrar's).
type sipStatuser interface {
	SIPStatus() (int, string)
}

type sipHeaderer interface {
	SIPHeaders() []gosip.Header
}

// errNoTarget is returned when a request cannot be sent anywhere.
var errNoTarget = errors.New("no route to target")

// responseFor is the one place an error becomes a SIP response: errors that
// carry a status give it, anything else is a 500.
func responseFor(req *gosip.Request, err error) *gosip.Response {
	code, reason := 500, "Server Internal Error"
	var st sipStatuser
	if errors.As(err, &st) {
		code, reason = st.SIPStatus()
	}
	res := gosip.NewResponseFromRequest(req, code, reason, nil)
	var hh sipHeaderer
	if errors.As(err, &hh) {
		for _, h := range hh.SIPHeaders() {
			res.AppendHeader(h)
		}
	}
	return res
}

// respondError answers req on tx with the response for err and logs it once:
// client errors at debug, server errors at warn.
func respondError(log *slog.Logger, req *gosip.Request, tx gosip.ServerTransaction, err error) {
	res := responseFor(req, err)
	lvl := slog.LevelDebug
	if res.StatusCode >= 500 {
		lvl = slog.LevelWarn
	}
	log.Log(context.Background(), lvl, "request refused", "method", string(req.Method), "status", res.StatusCode,
		"source", req.Source(), "error", err)
	if err := tx.Respond(res); err != nil {
		log.Debug("response not sent", "status", res.StatusCode, "error", err)
	}
}

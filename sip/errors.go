package sip

import (
	"context"
	"errors"
	"log/slog"

	gosip "github.com/emiago/sipgo/sip"

	"github.com/switchboard/switchboard/internal/sipstatus"
)

// status returns the error form of a SIP final response (the switch's one
// status-error type, shared with the registrar).
func status(code int, reason string, err error, h ...gosip.Header) error {
	return sipstatus.New(code, reason, err, h...)
}

// errNoTarget is returned when a request cannot be sent anywhere.
var errNoTarget = errors.New("no route to target")

// respondError answers req on tx with the response for err (the one mapping
// of errors to responses, sipstatus.Response) and logs it once: client
// errors at debug, server errors at warn.
func respondError(log *slog.Logger, req *gosip.Request, tx gosip.ServerTransaction, err error) {
	res := sipstatus.Response(req, err)
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

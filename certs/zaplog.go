package certs

import (
	"context"
	"log/slog"

	"go.uber.org/zap/zapcore"
)

// zapToSlog is a zapcore.Core that hands certmagic's zap logs to slog.
// certmagic logs every step of its work at info; those go to debug, its
// warnings and errors to warn (the outcomes that matter are logged once by
// acmeManager.onEvent), except the ones that only repeat a failed attempt's
// error, which onEvent's line already carries: those go to debug too.
type zapToSlog struct {
	h     slog.Handler
	attrs []slog.Attr
}

func level(l zapcore.Level) slog.Level {
	if l >= zapcore.WarnLevel {
		return slog.LevelWarn
	}
	return slog.LevelDebug
}

// repeats are certmagic's (and its ACME client's) messages about one
// failed issuance attempt that onEvent's "certificate not obtained" line
// reports with the same error. certmagic's "will retry" stays: it says when.
var repeats = map[string]bool{
	"could not get certificate from issuer": true,
	"HTTP request failed; retrying":         true, // acmez: three tries a request
}

// entryLevel is level(e.Level), or debug for the repeats.
func entryLevel(e zapcore.Entry) slog.Level {
	if repeats[e.Message] {
		return slog.LevelDebug
	}
	return level(e.Level)
}

// Enabled implements zapcore.LevelEnabler.
func (z *zapToSlog) Enabled(l zapcore.Level) bool {
	return z.h.Enabled(context.Background(), level(l))
}

// With implements zapcore.Core.
func (z *zapToSlog) With(fields []zapcore.Field) zapcore.Core {
	return &zapToSlog{h: z.h, attrs: append(append([]slog.Attr{}, z.attrs...), attrsOf(fields)...)}
}

// Check implements zapcore.Core.
func (z *zapToSlog) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if z.Enabled(e.Level) {
		return ce.AddCore(e, z)
	}
	return ce
}

// Write implements zapcore.Core.
func (z *zapToSlog) Write(e zapcore.Entry, fields []zapcore.Field) error {
	lvl := entryLevel(e)
	if !z.h.Enabled(context.Background(), lvl) {
		return nil
	}
	r := slog.NewRecord(e.Time, lvl, "certmagic: "+e.Message, 0)
	r.AddAttrs(z.attrs...)
	r.AddAttrs(attrsOf(fields)...)
	if e.LoggerName != "" {
		r.AddAttrs(slog.String("logger", e.LoggerName))
	}
	return z.h.Handle(context.Background(), r)
}

// Sync implements zapcore.Core.
func (z *zapToSlog) Sync() error { return nil }

func attrsOf(fields []zapcore.Field) []slog.Attr {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fields {
		f.AddTo(enc)
	}
	out := make([]slog.Attr, 0, len(enc.Fields))
	for k, v := range enc.Fields {
		out = append(out, slog.Any(k, v))
	}
	return out
}

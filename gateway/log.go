package gateway

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// pionLogs sends pion's logs into slog with component=pion and the pion
// scope. pion's Info is chatty (every ICE candidate pair), so it is logged
// at debug level; warnings and errors stay what they are.
type pionLogs struct{ log *slog.Logger }

func (f pionLogs) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{log: f.log.With("component", "pion", "scope", scope)}
}

type pionLogger struct{ log *slog.Logger }

func (l pionLogger) logf(level slog.Level, format string, args ...any) {
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	l.log.Log(context.Background(), level, fmt.Sprintf(format, args...))
}

func (l pionLogger) Trace(msg string)                  {}
func (l pionLogger) Tracef(format string, args ...any) {}
func (l pionLogger) Debug(msg string)                  { l.logf(slog.LevelDebug-4, "%s", msg) }
func (l pionLogger) Debugf(format string, args ...any) { l.logf(slog.LevelDebug-4, format, args...) }
func (l pionLogger) Info(msg string)                   { l.logf(slog.LevelDebug, "%s", msg) }
func (l pionLogger) Infof(format string, args ...any)  { l.logf(slog.LevelDebug, format, args...) }
func (l pionLogger) Warn(msg string)                   { l.logf(slog.LevelWarn, "%s", msg) }
func (l pionLogger) Warnf(format string, args ...any)  { l.logf(slog.LevelWarn, format, args...) }
func (l pionLogger) Error(msg string)                  { l.logf(slog.LevelError, "%s", msg) }
func (l pionLogger) Errorf(format string, args ...any) { l.logf(slog.LevelError, format, args...) }

// sipgoLogs keeps sipgo's debug chatter out and passes its warnings on
// with component=sipgo.
type sipgoLogs struct{ next slog.Handler }

func (h sipgoLogs) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && h.next.Enabled(ctx, l)
}

func (h sipgoLogs) Handle(ctx context.Context, r slog.Record) error {
	r.AddAttrs(slog.String("component", "sipgo"))
	return h.next.Handle(ctx, r)
}

func (h sipgoLogs) WithAttrs(as []slog.Attr) slog.Handler {
	return sipgoLogs{next: h.next.WithAttrs(as)}
}
func (h sipgoLogs) WithGroup(n string) slog.Handler { return sipgoLogs{next: h.next.WithGroup(n)} }

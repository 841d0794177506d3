package turn

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// levelTrace is the slog level pion's Debug and Trace messages are logged at:
// they are per packet, below switchboard's own Debug.
const levelTrace = slog.LevelDebug - 4

// slogFactory adapts pion's logging.LoggerFactory to a *slog.Logger.
//
// pion's levels map as: Error → Error, Warn → Warn, Info → Debug (pion logs
// at Info things a remote party can trigger per packet, such as a datagram
// from a peer without permission), Debug and Trace → levelTrace.
type slogFactory struct{ log *slog.Logger }

// NewLogger implements logging.LoggerFactory.
func (f slogFactory) NewLogger(scope string) logging.LeveledLogger {
	return slogLogger{log: f.log.With("scope", "pion/"+scope)}
}

// slogLogger is one pion scope logging into slog. Messages are formatted only
// when their level is enabled.
type slogLogger struct{ log *slog.Logger }

func (l slogLogger) logf(level slog.Level, format string, args ...any) {
	ctx := context.Background()
	if !l.log.Enabled(ctx, level) {
		return
	}
	l.log.Log(ctx, level, fmt.Sprintf(format, args...))
}

func (l slogLogger) logs(level slog.Level, msg string) {
	ctx := context.Background()
	if !l.log.Enabled(ctx, level) {
		return
	}
	l.log.Log(ctx, level, msg)
}

func (l slogLogger) Trace(msg string)                  { l.logs(levelTrace, msg) }
func (l slogLogger) Tracef(format string, args ...any) { l.logf(levelTrace, format, args...) }
func (l slogLogger) Debug(msg string)                  { l.logs(levelTrace, msg) }
func (l slogLogger) Debugf(format string, args ...any) { l.logf(levelTrace, format, args...) }
func (l slogLogger) Info(msg string)                   { l.logs(slog.LevelDebug, msg) }
func (l slogLogger) Infof(format string, args ...any)  { l.logf(slog.LevelDebug, format, args...) }
func (l slogLogger) Warn(msg string)                   { l.logs(slog.LevelWarn, msg) }
func (l slogLogger) Warnf(format string, args ...any)  { l.logf(slog.LevelWarn, format, args...) }
func (l slogLogger) Error(msg string)                  { l.logs(slog.LevelError, msg) }
func (l slogLogger) Errorf(format string, args ...any) { l.logf(slog.LevelError, format, args...) }

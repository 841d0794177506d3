package siptest

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"
)

// Trace collects what a test's phones send and receive and what the server
// logs. It is printed when the test fails (or always with SIPTEST_VERBOSE=1),
// so a failure comes with its message trace. It is safe for concurrent use
// and may still be written to after the test has ended.
type Trace struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	start time.Time
}

// NewTrace returns a Trace that is printed at the end of t if t failed.
func NewTrace(t testing.TB) *Trace {
	t.Helper()
	tr := &Trace{start: time.Now()}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("SIPTEST_VERBOSE") != "" {
			t.Logf("trace:\n%s", tr.String())
		}
	})
	return tr
}

// Write appends p as is (the server's log lines).
func (tr *Trace) Write(p []byte) (int, error) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.buf.Write(p)
}

// Printf appends one entry stamped with the time since the trace began.
func (tr *Trace) Printf(format string, args ...any) {
	if tr == nil {
		return
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	fmt.Fprintf(&tr.buf, "[%7.3fs] ", time.Since(tr.start).Seconds())
	fmt.Fprintf(&tr.buf, format, args...)
	if b := tr.buf.Bytes(); len(b) > 0 && b[len(b)-1] != '\n' {
		tr.buf.WriteByte('\n')
	}
}

// String returns everything traced so far.
func (tr *Trace) String() string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.buf.String()
}

// Logger returns a debug-level slog.Logger that writes into the trace.
func (tr *Trace) Logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(tr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

package ratelog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"golang.org/x/time/rate"
)

func TestHandlerDropsBeyondRateAndReportsSuppressed(t *testing.T) {
	var buf bytes.Buffer
	base := slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})
	h := New(base, 0.000001, 3, slog.LevelInfo)
	log := slog.New(h).With("component", "x")
	for i := 0; i < 1000; i++ {
		log.Error("parse failure", "i", i)
	}
	log.Debug("debug is not limited")
	lines := strings.Count(buf.String(), "\n")
	if lines != 4 {
		t.Fatalf("got %d lines, want 3 limited + 1 debug:\n%s", lines, buf.String())
	}
	if h.Dropped() != 997 {
		t.Fatalf("dropped %d, want 997", h.Dropped())
	}
}

func TestHandlerSuppressedCountOnNextRecord(t *testing.T) {
	var buf bytes.Buffer
	h := New(slog.NewTextHandler(&buf, nil), 0.000001, 1, slog.LevelInfo)
	log := slog.New(h)
	log.Warn("a")
	log.Warn("b")
	log.Warn("c")
	h.st.lim.SetLimit(rate.Inf) // let the next one through
	log.Warn("d")
	if !strings.Contains(buf.String(), "msg=d suppressed=2") {
		t.Fatalf("want suppressed=2 on the next record:\n%s", buf.String())
	}
}

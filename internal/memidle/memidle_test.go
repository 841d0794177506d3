package memidle

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestReleaseAfterBurst(t *testing.T) {
	var alloc, live uint64 = 0, 400
	released := 0
	r := New(Config{MinGarbage: 50, QuietRate: 10, Quiet: 3 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	r.read = func() (uint64, uint64) { return alloc, live }
	r.release = func() { released++ }
	r.last = 0
	step := func(add uint64) bool { alloc += add; return r.tick(time.Second) }

	// Quiet traffic that allocates less than max(MinGarbage, live/4) = 100
	// never releases.
	for i := 0; i < 10; i++ {
		if step(5) {
			t.Fatal("released without enough garbage")
		}
	}
	// A burst, then quiet: one release after 3 quiet seconds.
	step(1000)
	for i := 0; i < 2; i++ {
		if step(1) {
			t.Fatal("released before the quiet period")
		}
	}
	if !step(1) || released != 1 {
		t.Fatalf("no release after the quiet period (%d)", released)
	}
	// Still quiet: again once a quarter of the live heap was allocated.
	for i := 0; i < 19; i++ {
		if step(5) {
			t.Fatalf("released again after %d bytes", 5*(i+1))
		}
	}
	if !step(5) || released != 2 {
		t.Fatalf("no second release (%d)", released)
	}
	// Busy all along: no release.
	for i := 0; i < 10; i++ {
		if step(1000) {
			t.Fatal("released under load")
		}
	}
}

func TestServeStops(t *testing.T) {
	r := New(Config{})
	done := make(chan error)
	go func() { done <- r.Serve(context.Background()) }()
	if err := r.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	_ = r.Shutdown(context.Background())
}

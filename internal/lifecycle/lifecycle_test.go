package lifecycle

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestLoopRunsUntilStopped(t *testing.T) {
	var l Loop
	flushed := make(chan struct{})
	served := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		served <- l.Run(context.Background(), func(ctx context.Context) {
			close(started)
			<-ctx.Done()
			close(flushed)
		})
	}()
	<-started
	if err := l.Run(context.Background(), func(context.Context) {}); !errors.Is(err, ErrServing) {
		t.Fatalf("second Run: %v, want ErrServing", err)
	}
	if err := l.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-flushed:
	default:
		t.Fatal("Stop returned before the work returned")
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}

func TestLoopStopBeforeRun(t *testing.T) {
	var l Loop
	if err := l.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	ran := false
	if err := l.Run(context.Background(), func(context.Context) { ran = true }); err != nil || ran {
		t.Fatalf("Run after Stop: ran %v, err %v", ran, err)
	}
}

func TestLoopStopBounded(t *testing.T) {
	var l Loop
	started := make(chan struct{})
	release := make(chan struct{})
	go l.Run(context.Background(), func(context.Context) { close(started); <-release })
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := l.Stop(ctx); err == nil {
		t.Fatal("Stop did not give up when its context ended")
	}
	close(release)
}

func TestLoopEndsWithContext(t *testing.T) {
	var l Loop
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Run(ctx, func(ctx context.Context) { <-ctx.Done() }); err != nil {
		t.Fatal(err)
	}
}

func TestWait(t *testing.T) {
	done := make(chan struct{})
	close(done)
	if err := Wait(context.Background(), done); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Wait(ctx, make(chan struct{})); err != nil {
		t.Fatal(err)
	}
}

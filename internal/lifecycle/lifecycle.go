// Package lifecycle holds the one piece of the switch's component shape
// (New binds, Serve(ctx) runs, Shutdown(ctx) drains) that components whose
// work is a background loop share: running that loop from Serve and ending
// it from Shutdown. It must not import any other package of the switch.
package lifecycle

import (
	"context"
	"errors"
	"sync"
)

// ErrServing is returned by Serve when the component already runs.
var ErrServing = errors.New("already serving")

// Loop runs a component's background work from its Serve and stops it from
// its Shutdown. The zero value is ready.
type Loop struct {
	mu      sync.Mutex
	started bool
	stopped bool
	cancel  context.CancelFunc
	done    chan struct{}
}

// Run runs work until ctx ends or Stop is called, and returns when work
// has returned. Call it from Serve; a second call returns ErrServing, a
// call after Stop returns at once.
func (l *Loop) Run(ctx context.Context, work func(ctx context.Context)) error {
	l.mu.Lock()
	if l.started {
		l.mu.Unlock()
		return ErrServing
	}
	l.started = true
	if l.stopped {
		l.mu.Unlock()
		return nil
	}
	ctx, l.cancel = context.WithCancel(ctx)
	l.done = make(chan struct{})
	l.mu.Unlock()
	defer close(l.done)
	defer l.cancel()
	work(ctx)
	return nil
}

// Stop ends the work started by Run and waits until it has returned (it
// flushes what it holds), or until ctx ends. Stopping a Loop that never ran
// is immediate, and stops it from running later.
func (l *Loop) Stop(ctx context.Context) error {
	l.mu.Lock()
	l.stopped = true
	cancel, done := l.cancel, l.done
	l.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Wait is the Serve of a component whose work runs from its New (sockets a
// library reads as soon as they are handed over, streams that must work
// for callers that never call Serve): it returns nil when ctx ends or done
// is closed (by the component's Close).
func Wait(ctx context.Context, done <-chan struct{}) error {
	select {
	case <-ctx.Done():
	case <-done:
	}
	return nil
}

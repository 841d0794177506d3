package cdr

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/sqldb"
)

func openStore(t *testing.T, path string) (*Store, func()) {
	t.Helper()
	ctx := context.Background()
	db, err := sqldb.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(ctx, Config{DB: db})
	if err != nil {
		t.Fatal(err)
	}
	return s, func() { db.Close() }
}

// TestRecordsOfACall: a call's events make one record, closed at its end.
func TestRecordsOfACall(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cdr.db")
	s, closeDB := openStore(t, path)
	defer closeDB()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Serve(ctx) }()
	t0 := time.UnixMilli(1_700_000_000_000)
	s.Started("c1", "alice@x", "bob@x", t0)
	s.Answered("c1", 200, t0.Add(time.Second))
	s.Ended("c1", 200, "BYE", "caller", "", t0.Add(5*time.Second))
	s.Started("c2", "alice@x", "carol@x", t0)
	s.Ended("c2", 486, "Busy Here", "callee", "", t0.Add(time.Second))
	cancel()
	<-done
	rs, err := List(context.Background(), s.db, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 {
		t.Fatalf("%d records, want 2: %+v", len(rs), rs)
	}
	for _, r := range rs {
		switch r.CallID {
		case "c1":
			if r.Status != 200 || r.Duration() != 4*time.Second || r.HangupBy != "caller" {
				t.Errorf("c1: %+v", r)
			}
		case "c2":
			if r.Status != 486 || !r.Answered.IsZero() || r.HangupBy != "callee" {
				t.Errorf("c2: %+v", r)
			}
		}
	}
}

// TestCrashLeavesNoOpenRecord: records a switch left open (killed) are
// closed by the next Open with reason "crash", at the last time the switch
// was known alive and never before the call started or was answered.
func TestCrashLeavesNoOpenRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cdr.db")
	s, closeDB := openStore(t, path)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Serve(ctx) }()
	now := time.Now()
	s.Started("up", "alice@x", "bob@x", now.Add(-time.Minute))
	s.Answered("up", 200, now.Add(-50*time.Second))
	s.Started("ringing", "alice@x", "carol@x", now.Add(time.Hour)) // after the last heartbeat
	cancel()
	<-done // flushed, as a crash right after the writes would have left it
	closeDB()

	s2, closeDB2 := openStore(t, path)
	defer closeDB2()
	rs, err := List(context.Background(), s2.db, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.Ended.IsZero() {
			t.Fatalf("record still open after restart: %+v", r)
		}
		if r.Reason != "crash" || r.HangupBy != "switch" {
			t.Errorf("%s: reason %q by %q, want crash by switch", r.CallID, r.Reason, r.HangupBy)
		}
		switch r.CallID {
		case "up":
			if r.Status != 200 || r.Ended.Before(r.Answered) || r.Ended.Before(now.Add(-time.Second)) {
				t.Errorf("up: %+v: want status 200, ended at the last heartbeat (about now)", r)
			}
		case "ringing":
			if r.Status != 500 || !r.Ended.Equal(r.Started) {
				t.Errorf("ringing: %+v: want status 500, ended when it started", r)
			}
		}
	}
	if n, err := CloseOrphans(context.Background(), s2.db); err != nil || n != 0 {
		t.Fatalf("CloseOrphans again: %d, %v; want 0", n, err)
	}
}

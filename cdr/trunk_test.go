package cdr

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// TestRoutedCall: a call over a trunk records the trunk (the last one
// tried), the number as dialled and normalised, and the route.
func TestRoutedCall(t *testing.T) {
	s, closeDB := openStore(t, filepath.Join(t.TempDir(), "cdr.db"))
	defer closeDB()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Serve(ctx) }()
	t0 := time.UnixMilli(1_700_000_000_000)
	s.Started("c1", "alice@x", "030 1234567@x", t0)
	s.Routed("c1", "carrier1", "030 1234567", "+49301234567", `^\+49`)
	s.Routed("c1", "carrier2", "030 1234567", "+49301234567", `^\+49`) // failed over
	s.Answered("c1", 200, t0.Add(time.Second))
	s.Ended("c1", 200, "BYE", "caller", "", t0.Add(3*time.Second))
	s.Started("c2", "alice@x", "bob@x", t0)
	s.Ended("c2", 486, "Busy Here", "callee", "", t0.Add(time.Second))
	cancel()
	<-done
	rs, err := List(context.Background(), s.db, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		switch r.CallID {
		case "c1":
			if r.Trunk != "carrier2" || r.Dialled != "030 1234567" || r.Number != "+49301234567" || r.Route != `^\+49` {
				t.Errorf("trunk call: %+v", r)
			}
		case "c2":
			if r.Trunk != "" || r.Number != "" {
				t.Errorf("local call with trunk fields: %+v", r)
			}
		}
	}
	recs, _, err := Query(context.Background(), s.db, Filter{Limit: 10})
	if err != nil || len(recs) != 2 {
		t.Fatalf("Query: %v, %v", recs, err)
	}
}

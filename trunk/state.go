package trunk

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/switchboard/switchboard/internal/sqldb"
)

// Registration states of a trunk (State.State).
const (
	StateOff         = ""             // the trunk does not register
	StateRegistering = "registering"  // the first REGISTER is under way
	StateRegistered  = "registered"   // in force until State.Expires
	StateFailed      = "failed"       // the last attempt failed (LastError); retried with backoff
	StateStopped     = "unregistered" // the switch stopped and took its registration back
)

// State is a trunk's outbound registration as last known.
type State struct {
	Trunk     string
	State     string    // one of the State* constants
	Expires   time.Time // while registered: when the registration ends
	LastError string    // the last failure ("" after a success)
	Updated   time.Time // when this was last written
}

// Registered reports whether the registration is in force.
func (s State) Registered() bool {
	return s.State == StateRegistered && time.Now().Before(s.Expires)
}

var schema = []string{
	`CREATE TABLE trunk_state (
		name TEXT PRIMARY KEY,
		state TEXT NOT NULL DEFAULT '',
		expires_ms INTEGER NOT NULL DEFAULT 0,
		last_error TEXT NOT NULL DEFAULT '',
		updated_ms INTEGER NOT NULL DEFAULT 0
	)`,
}

// Migrate creates the trunk_state table if needed, for readers such as
// the CLI.
func Migrate(ctx context.Context, db *sql.DB) error { return sqldb.Migrate(ctx, db, "trunk", schema) }

// States returns the registration states the running switch last wrote,
// by trunk name.
func States(ctx context.Context, db *sql.DB) (map[string]State, error) {
	list, err := sqldb.Collect(ctx, db, "list trunk states", func(rows *sql.Rows) (State, error) {
		var s State
		var exp, upd int64
		err := rows.Scan(&s.Trunk, &s.State, &exp, &s.LastError, &upd)
		if exp > 0 {
			s.Expires = time.UnixMilli(exp)
		}
		s.Updated = time.UnixMilli(upd)
		return s, err
	}, `SELECT name, state, expires_ms, last_error, updated_ms FROM trunk_state`)
	if err != nil {
		return nil, err
	}
	m := make(map[string]State, len(list))
	for _, s := range list {
		m[s.Trunk] = s
	}
	return m, nil
}

// stateStore writes trunk states; a nil db keeps nothing.
type stateStore struct{ db *sql.DB }

// reset forgets the states of trunks no longer configured and marks the
// others as registering (or off), before the registrations start.
func (st stateStore) reset(ctx context.Context, p *plan) error {
	if st.db == nil {
		return nil
	}
	if err := Migrate(ctx, st.db); err != nil {
		return err
	}
	names := map[string]bool{}
	for _, t := range p.trunks {
		names[t.cfg.Name] = true
		s := State{Trunk: t.cfg.Name, State: StateOff, Updated: time.Now()}
		if t.cfg.Register {
			s.State = StateRegistering
		}
		if err := st.write(ctx, s); err != nil {
			return err
		}
	}
	old, err := States(ctx, st.db)
	if err != nil {
		return err
	}
	for n := range old {
		if !names[n] {
			if _, err := st.db.ExecContext(ctx, `DELETE FROM trunk_state WHERE name = ?`, n); err != nil {
				return fmt.Errorf("forget trunk %s: %w", n, err)
			}
		}
	}
	return nil
}

func (st stateStore) write(ctx context.Context, s State) error {
	if st.db == nil {
		return nil
	}
	var exp int64
	if !s.Expires.IsZero() {
		exp = s.Expires.UnixMilli()
	}
	_, err := st.db.ExecContext(ctx, `INSERT INTO trunk_state (name, state, expires_ms, last_error, updated_ms) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET state = excluded.state, expires_ms = excluded.expires_ms,
		last_error = excluded.last_error, updated_ms = excluded.updated_ms`,
		s.Trunk, s.State, exp, s.LastError, s.Updated.UnixMilli())
	if err != nil {
		return fmt.Errorf("store state of trunk %s: %w", s.Trunk, err)
	}
	return nil
}

package cdr

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/switchboard/switchboard/internal/lifecycle"
	"github.com/switchboard/switchboard/internal/sqldb"
)

// Record is one call.
type Record struct {
	ID       int64
	CallID   string
	Caller   string // From URI user@host
	Callee   string // Request-URI user@host as dialled
	Started  time.Time
	Answered time.Time // zero if never answered
	Ended    time.Time // zero while the call is up
	Status   int       // final SIP status of the INVITE (0 while ringing)
	Reason   string    // reason phrase, or why the call ended
	HangupBy string    // "caller", "callee", "switch" or "" while up
	Media    string    // per-leg media statistics, free text ("" when not relayed)
	// Calls over trunks: the trunk that carried it (the last one tried),
	// the number as dialled and normalised (E.164), and the route that
	// matched ("inbound" for a trunk's call to us). Empty otherwise.
	Trunk, Dialled, Number, Route string
}

// Duration returns the answered time of the call.
func (r Record) Duration() time.Duration {
	if r.Answered.IsZero() || r.Ended.IsZero() {
		return 0
	}
	return r.Ended.Sub(r.Answered)
}

var schema = []string{
	`CREATE TABLE calls (
		id INTEGER PRIMARY KEY AUTOINCREMENT,
		call_id TEXT NOT NULL,
		caller TEXT NOT NULL,
		callee TEXT NOT NULL,
		started_ms INTEGER NOT NULL,
		answered_ms INTEGER,
		ended_ms INTEGER,
		status INTEGER NOT NULL DEFAULT 0,
		reason TEXT NOT NULL DEFAULT '',
		hangup_by TEXT NOT NULL DEFAULT '',
		media TEXT NOT NULL DEFAULT ''
	);
	CREATE INDEX calls_call_id ON calls (call_id);
	CREATE INDEX calls_started ON calls (started_ms);`,
	// The last time a running switch was known to be alive: the end given
	// to the records a crash left open.
	`CREATE TABLE cdr_alive (id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL)`,
	// Calls over trunks.
	`ALTER TABLE calls ADD COLUMN trunk TEXT NOT NULL DEFAULT '';
	ALTER TABLE calls ADD COLUMN dialled TEXT NOT NULL DEFAULT '';
	ALTER TABLE calls ADD COLUMN number TEXT NOT NULL DEFAULT '';
	ALTER TABLE calls ADD COLUMN route TEXT NOT NULL DEFAULT '';`,
}

// heartbeat is how often a running switch notes that it is alive.
const heartbeat = 10 * time.Second

// Config configures a Store.
type Config struct {
	// DB holds the records (its calls table is migrated by New). Required.
	DB *sql.DB
	// Logger receives the store's logs; nil is slog.Default().
	Logger *slog.Logger
}

// Store keeps call records in SQL.
type Store struct {
	db   *sql.DB
	w    *sqldb.BatchWriter
	loop lifecycle.Loop
}

// New migrates the calls table, closes the records a crash left open (see
// CloseOrphans) and returns the store. Serve writes what is recorded;
// Shutdown flushes it.
func New(ctx context.Context, cfg Config) (*Store, error) {
	db, log := cfg.DB, cfg.Logger
	if db == nil {
		return nil, errors.New("cdr: no database")
	}
	if err := sqldb.Migrate(ctx, db, "cdr", schema); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "cdr")
	n, err := CloseOrphans(ctx, db)
	if err != nil {
		return nil, err
	}
	if n > 0 {
		log.Warn("closed call records left open by a crash", "records", n)
	}
	return &Store{db: db, w: sqldb.NewBatchWriter(db, "cdr", 65536, log)}, nil
}

// Serve writes queued records until ctx ends or Shutdown is called, then
// flushes. While it runs it notes every few seconds that the switch is
// alive.
func (s *Store) Serve(ctx context.Context) error {
	return s.loop.Run(ctx, func(ctx context.Context) {
		// The first note is queued before the writer runs, so that it is
		// written even if ctx ends at once (the writer flushes its queue).
		s.alive(time.Now())
		done := make(chan struct{})
		go func() {
			defer close(done)
			t := time.NewTicker(heartbeat)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case now := <-t.C:
					s.alive(now)
				}
			}
		}()
		s.w.Run(ctx)
		<-done
	})
}

// Shutdown stops Serve and waits, at most until ctx ends, for the queued
// records to be written.
func (s *Store) Shutdown(ctx context.Context) error { return s.loop.Stop(ctx) }

func (s *Store) alive(at time.Time) {
	s.w.Enqueue(func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO cdr_alive (id, at_ms) VALUES (1, ?)
			ON CONFLICT (id) DO UPDATE SET at_ms = excluded.at_ms`, at.UnixMilli())
		return err
	})
}

// CloseOrphans closes the records of calls that were up or ringing when
// the switch last stopped without closing them (a crash, a kill -9): their
// end is the last time the switch was known to be alive (never before the
// call's own start or answer), their reason "crash". It returns how many it
// closed. Call it only while no switch is running on the database.
func CloseOrphans(ctx context.Context, db *sql.DB) (int, error) {
	var alive sql.NullInt64
	if err := db.QueryRowContext(ctx, `SELECT at_ms FROM cdr_alive WHERE id = 1`).Scan(&alive); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("read last alive time: %w", err)
	}
	rows, err := db.QueryContext(ctx, `SELECT id, started_ms, answered_ms FROM calls WHERE ended_ms IS NULL`)
	if err != nil {
		return 0, fmt.Errorf("find open call records: %w", err)
	}
	type orphan struct{ id, end int64 }
	var open []orphan
	for rows.Next() {
		var id, started int64
		var answered sql.NullInt64
		if err := rows.Scan(&id, &started, &answered); err != nil {
			rows.Close()
			return 0, fmt.Errorf("find open call records: %w", err)
		}
		end := started
		if answered.Valid && answered.Int64 > end {
			end = answered.Int64
		}
		if alive.Valid && alive.Int64 > end {
			end = alive.Int64
		}
		open = append(open, orphan{id, end})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("find open call records: %w", err)
	}
	for _, o := range open {
		if _, err := db.ExecContext(ctx, `UPDATE calls SET ended_ms = ?, reason = 'crash', hangup_by = 'switch',
			status = CASE WHEN answered_ms IS NULL AND status = 0 THEN 500 ELSE status END
			WHERE id = ? AND ended_ms IS NULL`, o.end, o.id); err != nil {
			return 0, fmt.Errorf("close call record %d: %w", o.id, err)
		}
	}
	return len(open), nil
}

// Started records a new call attempt.
func (s *Store) Started(callID, caller, callee string, at time.Time) {
	s.w.Enqueue(func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO calls (call_id, caller, callee, started_ms) VALUES (?, ?, ?, ?)`,
			callID, caller, callee, at.UnixMilli())
		return err
	})
}

// Answered records the 2xx of the call's INVITE.
func (s *Store) Answered(callID string, status int, at time.Time) {
	s.w.Enqueue(func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE calls SET answered_ms = ?, status = ? WHERE call_id = ? AND ended_ms IS NULL AND answered_ms IS NULL`,
			at.UnixMilli(), status, callID)
		return err
	})
}

// Ended records the end of a call: its final status when it failed, or the
// BYE (by "caller", "callee" or "switch"); media is a summary of the relayed
// media, possibly empty.
func (s *Store) Ended(callID string, status int, reason, by, media string, at time.Time) {
	s.w.Enqueue(func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE calls SET ended_ms = ?,
			status = CASE WHEN answered_ms IS NULL THEN ? ELSE status END,
			reason = ?, hangup_by = ?, media = ? WHERE call_id = ? AND ended_ms IS NULL`,
			at.UnixMilli(), status, reason, by, media, callID)
		return err
	})
}

// Routed records the trunk side of a call (sip.TrunkRecorder): called
// again when the call fails over to another trunk.
func (s *Store) Routed(callID, trunk, dialled, number, route string) {
	s.w.Enqueue(func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE calls SET trunk = ?, dialled = ?, number = ?, route = ? WHERE call_id = ? AND ended_ms IS NULL`,
			trunk, dialled, number, route, callID)
		return err
	})
}

// List returns up to limit records, newest first.
func List(ctx context.Context, db *sql.DB, limit int) ([]Record, error) {
	return sqldb.Collect(ctx, db, "list calls", scanRecord,
		`SELECT `+recordColumns+` FROM calls ORDER BY started_ms DESC, id DESC LIMIT ?`, limit)
}

// recordColumns are the columns scanRecord reads, in its order.
const recordColumns = `id, call_id, caller, callee, started_ms, answered_ms, ended_ms, status, reason, hangup_by, media,
	trunk, dialled, number, route`

func scanRecord(rows *sql.Rows) (Record, error) {
	var r Record
	var started int64
	var answered, ended sql.NullInt64
	if err := rows.Scan(&r.ID, &r.CallID, &r.Caller, &r.Callee, &started, &answered, &ended, &r.Status, &r.Reason, &r.HangupBy, &r.Media,
		&r.Trunk, &r.Dialled, &r.Number, &r.Route); err != nil {
		return r, err
	}
	r.Started = time.UnixMilli(started)
	if answered.Valid {
		r.Answered = time.UnixMilli(answered.Int64)
	}
	if ended.Valid {
		r.Ended = time.UnixMilli(ended.Int64)
	}
	return r, nil
}

// Migrate creates the calls table if needed, for readers such as the CLI.
func Migrate(ctx context.Context, db *sql.DB) error { return sqldb.Migrate(ctx, db, "cdr", schema) }

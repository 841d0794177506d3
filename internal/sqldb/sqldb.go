// Package sqldb opens the switch's SQL database and applies each package's
// schema migrations.
//
// It is the one place that knows the SQL driver. SQLite (github.com/mattn/go-sqlite3)
// is the embedded default; the SQL the packages write is kept portable (no
// SQLite-only syntax beyond INSERT ... ON CONFLICT, which PostgreSQL shares) so
// that a PostgreSQL backend can be added here later.
package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "github.com/mattn/go-sqlite3" // registers the "sqlite3" driver
)

// ErrCorrupt is returned by Open when the file exists but is not a healthy
// SQLite database.
var ErrCorrupt = errors.New("database file is corrupt or not a SQLite database")

// Open opens (creating if needed) the SQLite database at path, checks that it
// is readable, healthy and writable, and returns it. Nothing already stored is
// modified by Open itself.
func Open(ctx context.Context, path string) (*sql.DB, error) {
	if path == "" {
		return nil, errors.New("database path is empty")
	}
	if dir := filepath.Dir(path); dir != "." {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("database directory %q does not exist", dir)
		}
	}
	// WAL lets the CLI read and write while the server runs; synchronous=NORMAL
	// is durable across process crashes in WAL mode; busy_timeout makes
	// concurrent writers (server and CLI) wait instead of failing at once.
	// _stmt_cache_size keeps each connection's recently used statements
	// prepared: the request path and the batched writer run the same few
	// statements over and over, and parsing their SQL anew each time was
	// two thirds of the writer's CPU.
	dsn := "file:" + path + "?_journal_mode=WAL&_synchronous=NORMAL&_busy_timeout=5000&_foreign_keys=1&_txlock=immediate&_stmt_cache_size=64"
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return nil, fmt.Errorf("open database %q: %w", path, err)
	}
	// One writer at a time is SQLite's model; a few readers help the CLI and
	// lookups run beside the batched writer.
	db.SetMaxOpenConns(4)
	db.SetConnMaxIdleTime(5 * time.Minute)

	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var res string
	if err := db.QueryRowContext(ctx, "PRAGMA quick_check").Scan(&res); err != nil {
		db.Close()
		if isCorrupt(err) {
			return nil, fmt.Errorf("database %q: %w: %v", path, ErrCorrupt, err)
		}
		return nil, fmt.Errorf("database %q: %w", path, err)
	}
	if res != "ok" {
		db.Close()
		return nil, fmt.Errorf("database %q: %w: quick_check says %q", path, ErrCorrupt, res)
	}
	// Prove the file is writable before the server accepts anything it would
	// then be unable to store.
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		component TEXT NOT NULL,
		version INTEGER NOT NULL,
		applied_at INTEGER NOT NULL,
		PRIMARY KEY (component, version))`); err != nil {
		db.Close()
		return nil, fmt.Errorf("database %q is not writable: %w", path, err)
	}
	return db, nil
}

func isCorrupt(err error) bool {
	s := err.Error()
	return strings.Contains(s, "not a database") || strings.Contains(s, "malformed") || strings.Contains(s, "corrupt")
}

// Migrate applies, in order and each in its own transaction, the statements of
// steps that component has not applied yet. Step i is schema version i+1;
// steps are append-only: never edit one that has shipped.
func Migrate(ctx context.Context, db *sql.DB, component string, steps []string) error {
	var have int
	if err := db.QueryRowContext(ctx,
		`SELECT COALESCE(MAX(version), 0) FROM schema_migrations WHERE component = ?`, component).Scan(&have); err != nil {
		return fmt.Errorf("read schema version of %s: %w", component, err)
	}
	if have > len(steps) {
		return fmt.Errorf("database schema of %s is version %d, newer than this binary knows (%d)", component, have, len(steps))
	}
	for v := have + 1; v <= len(steps); v++ {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("migrate %s to %d: %w", component, v, err)
		}
		if _, err := tx.ExecContext(ctx, steps[v-1]); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate %s to %d: %w", component, v, err)
		}
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO schema_migrations (component, version, applied_at) VALUES (?, ?, ?)`,
			component, v, time.Now().Unix()); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate %s to %d: %w", component, v, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migrate %s to %d: %w", component, v, err)
		}
	}
	return nil
}

var settingsSchema = []string{
	`CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)`,
}

// Setting returns the stored value of key, creating it with gen() the first
// time (for generated secrets that must survive restarts).
func Setting(ctx context.Context, db *sql.DB, key string, gen func() (string, error)) (string, error) {
	if err := Migrate(ctx, db, "settings", settingsSchema); err != nil {
		return "", err
	}
	var v string
	err := db.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = ?`, key).Scan(&v)
	if err == nil {
		return v, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("read setting %s: %w", key, err)
	}
	if v, err = gen(); err != nil {
		return "", err
	}
	// Another process may have raced us: keep whichever value landed first.
	if _, err := db.ExecContext(ctx, `INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING`, key, v); err != nil {
		return "", fmt.Errorf("store setting %s: %w", key, err)
	}
	err = db.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = ?`, key).Scan(&v)
	return v, err
}

// Collect runs query and returns what scan makes of each row; what names
// the query in errors ("list users").
func Collect[T any](ctx context.Context, db *sql.DB, what string, scan func(*sql.Rows) (T, error), query string, args ...any) ([]T, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

func openTest(t *testing.T) (*sql.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "t.db")
	db, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, path
}

// TestMigrateOnce: each step of a component runs once, in order, and a
// later run applies only the new steps.
func TestMigrateOnce(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	steps := []string{`CREATE TABLE a (x INTEGER)`}
	for range 2 {
		if err := Migrate(ctx, db, "c", steps); err != nil {
			t.Fatal(err)
		}
	}
	steps = append(steps, `ALTER TABLE a ADD COLUMN y INTEGER`)
	if err := Migrate(ctx, db, "c", steps); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO a (x, y) VALUES (1, 2)`); err != nil {
		t.Fatalf("second step not applied: %v", err)
	}
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM schema_migrations WHERE component = 'c'`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("%d migrations recorded (%v), want 2", n, err)
	}
}

// TestSettingGeneratedOnce: a setting is generated the first time and read
// back after.
func TestSettingGeneratedOnce(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	calls := 0
	gen := func() (string, error) { calls++; return "v1", nil }
	for range 3 {
		v, err := Setting(ctx, db, "k", gen)
		if err != nil || v != "v1" {
			t.Fatalf("Setting = %q, %v", v, err)
		}
	}
	if calls != 1 {
		t.Fatalf("generated %d times, want 1", calls)
	}
	if _, err := Setting(ctx, db, "other", func() (string, error) { return "", errors.New("no entropy") }); err == nil {
		t.Fatal("a failing generator gave a setting")
	}
}

// TestCorruptFileRefused: a file that is not SQLite is refused with
// ErrCorrupt, and left as it was.
func TestCorruptFileRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.db")
	junk := []byte("this is not a database, just text that happens to be long enough to look like a page")
	if err := os.WriteFile(path, junk, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), path); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open: %v, want ErrCorrupt", err)
	}
	if b, _ := os.ReadFile(path); string(b) != string(junk) {
		t.Fatal("the corrupt file was changed")
	}
	if _, err := Open(context.Background(), filepath.Join(t.TempDir(), "missing", "x.db")); err == nil {
		t.Fatal("Open in a missing directory succeeded")
	}
}

// TestBatchWriterFlushes: queued writes land in batches, and what is
// queued when Run's context ends is written before Run returns; a failing
// batch does not stop later ones.
func TestBatchWriterFlushes(t *testing.T) {
	db, _ := openTest(t)
	if _, err := db.Exec(`CREATE TABLE w (n INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	w := NewBatchWriter(db, "test", 10000, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	for i := range 5000 {
		w.Enqueue(func(ctx context.Context, tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO w (n) VALUES (?)`, i)
			return err
		})
	}
	w.Enqueue(func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO nowhere (n) VALUES (1)`)
		return err
	})
	w.Enqueue(func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO w (n) VALUES (-1)`)
		return err
	})
	cancel()
	w.Run(ctx) // ctx already ended: Run flushes what is queued and returns
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM w`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 5001 {
		t.Fatalf("%d rows written, want 5001 (every op but the failing one)", n)
	}
	var last int
	if err := db.QueryRow(`SELECT COUNT(*) FROM w WHERE n = -1`).Scan(&last); err != nil || last != 1 {
		t.Fatalf("the write after a failing one is missing (%d, %v)", last, err)
	}
}

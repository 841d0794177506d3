package registrar

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/switchboard/switchboard/internal/sqldb"
)

// TestCallingClass: users are national unless set otherwise; only the
// three classes are accepted; users stored before the column existed get
// the default by migration.
func TestCallingClass(t *testing.T) {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, filepath.Join(t.TempDir(), "u.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// A database of the version before calling classes, with a user.
	if err := sqldb.Migrate(ctx, db, "users", userSchema[:1]); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO users (name, ha1_md5, ha1_sha256, created_at) VALUES ('old', 'x', 'y', 0)`); err != nil {
		t.Fatal(err)
	}
	users, err := NewUsers(ctx, db, "switchboard.local", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := users.CallingClass(ctx, "old"); err != nil || c != DefaultClass {
		t.Errorf("migrated user: %q, %v", c, err)
	}
	if err := users.Add(ctx, "alice", "pw"); err != nil {
		t.Fatal(err)
	}
	if c, _ := users.CallingClass(ctx, "alice"); c != ClassNational {
		t.Errorf("new user: %q", c)
	}
	if err := users.SetCallingClass(ctx, "alice", ClassInternational); err != nil {
		t.Fatal(err)
	}
	if c, _ := users.CallingClass(ctx, "alice"); c != ClassInternational {
		t.Errorf("after set (cache dropped): %q", c)
	}
	if err := users.SetCallingClass(ctx, "alice", "galactic"); !errors.Is(err, ErrInvalidClass) {
		t.Errorf("bad class: %v", err)
	}
	if err := users.SetCallingClass(ctx, "nobody", ClassInternal); !errors.Is(err, ErrUnknownUser) {
		t.Errorf("unknown user: %v", err)
	}
	if _, err := users.CallingClass(ctx, "nobody"); !errors.Is(err, ErrUnknownUser) {
		t.Errorf("class of an unknown user: %v", err)
	}
	list, err := users.List(ctx)
	if err != nil || len(list) != 2 || list[0].Calls != ClassInternational || list[1].Calls != ClassNational {
		t.Errorf("List: %+v, %v", list, err)
	}
}

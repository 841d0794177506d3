package registrar

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/switchboard/switchboard/internal/sqldb"
	"github.com/switchboard/switchboard/internal/userpart"
)

// User is a SIP user as the registrar knows it. Only the digest HA1 values
// (H(username:realm:password)) are stored, never the password.
type User struct {
	Name      string
	HA1MD5    string // hex MD5(name:realm:password)
	HA1SHA256 string // hex SHA-256(name:realm:password)
	Created   time.Time
	// Calls is the user's calling class: what it may call over trunks
	// (ClassInternal, ClassNational, ClassInternational).
	Calls string
}

// Calling classes (User.Calls). The trunk package gives them their
// meaning; the registrar stores them.
const (
	ClassInternal      = "internal"      // nothing outside the switch
	ClassNational      = "national"      // numbers of the switch's country
	ClassInternational = "international" // any number
	// DefaultClass is the class of a user added without one.
	DefaultClass = ClassNational
)

// ErrInvalidClass means a calling class is not one of the three.
var ErrInvalidClass = errors.New("calling class must be internal, national or international")

// ValidClass reports whether class is a calling class.
func ValidClass(class string) bool {
	switch class {
	case ClassInternal, ClassNational, ClassInternational:
		return true
	}
	return false
}

// HA1 returns the stored HA1 for a digest algorithm ("MD5" or "SHA-256").
func (u User) HA1(algorithm string) (string, bool) {
	switch strings.ToUpper(algorithm) {
	case "", "MD5":
		return u.HA1MD5, u.HA1MD5 != ""
	case "SHA-256":
		return u.HA1SHA256, u.HA1SHA256 != ""
	}
	return "", false
}

// ComputeHA1 returns hex H(name:realm:password) for MD5 and SHA-256.
func ComputeHA1(name, realm, password string) (md5hex, sha256hex string) {
	s := name + ":" + realm + ":" + password
	m := md5.Sum([]byte(s))
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(m[:]), hex.EncodeToString(h[:])
}

var userSchema = []string{
	`CREATE TABLE users (
		name TEXT PRIMARY KEY,
		ha1_md5 TEXT NOT NULL,
		ha1_sha256 TEXT NOT NULL,
		created_at INTEGER NOT NULL
	);
	CREATE TABLE users_version (id INTEGER PRIMARY KEY, v INTEGER NOT NULL);
	INSERT INTO users_version (id, v) VALUES (1, 0);
	CREATE TRIGGER users_ins AFTER INSERT ON users BEGIN UPDATE users_version SET v = v + 1 WHERE id = 1; END;
	CREATE TRIGGER users_upd AFTER UPDATE ON users BEGIN UPDATE users_version SET v = v + 1 WHERE id = 1; END;
	CREATE TRIGGER users_del AFTER DELETE ON users BEGIN UPDATE users_version SET v = v + 1 WHERE id = 1; END;`,
	// The calling class (trunks): what the user may call outside the switch.
	`ALTER TABLE users ADD COLUMN calls TEXT NOT NULL DEFAULT 'national'`,
}

// Users is the user store: SQL underneath, with an in-memory cache in front
// for the request path. The cache is dropped whenever another connection (for
// example `switchboard user add` run beside the server) changes the database.
type Users struct {
	db    *sql.DB
	realm string
	log   *slog.Logger

	mu    sync.RWMutex
	cache map[string]cachedUser
	gen   uint64 // bumped whenever entries are dropped; guarded by mu
}

type cachedUser struct {
	u      User
	exists bool
}

// NewUsers migrates the users schema and returns the store. realm is the SIP
// domain used in HA1.
func NewUsers(ctx context.Context, db *sql.DB, realm string, log *slog.Logger) (*Users, error) {
	if err := sqldb.Migrate(ctx, db, "users", userSchema); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	return &Users{db: db, realm: realm, log: log, cache: make(map[string]cachedUser)}, nil
}

// ValidName reports whether name can be a SIP user part we store: 1 to 64
// characters of letters, digits and -_.!~*'()+ (RFC 3261 §25.1 unreserved
// plus a few user-unreserved characters), so it needs no escaping anywhere.
func ValidName(name string) bool {
	return userpart.Valid(name, "-_.!~*'()+")
}

// Add creates a user. It fails with ErrUserExists if the name is taken.
func (s *Users) Add(ctx context.Context, name, password string) error {
	if !ValidName(name) {
		return fmt.Errorf("%w: %q", ErrInvalidName, name)
	}
	if password == "" {
		return errors.New("password is empty")
	}
	m, h := ComputeHA1(name, s.realm, password)
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO users (name, ha1_md5, ha1_sha256, created_at) VALUES (?, ?, ?, ?)`,
		name, m, h, time.Now().Unix())
	if err != nil {
		if strings.Contains(err.Error(), "UNIQUE") {
			return fmt.Errorf("%w: %s", ErrUserExists, name)
		}
		return fmt.Errorf("add user %s: %w", name, err)
	}
	s.forget(name)
	return nil
}

// SetCallingClass sets what a user may call over trunks (ValidClass).
func (s *Users) SetCallingClass(ctx context.Context, name, class string) error {
	if !ValidClass(class) {
		return fmt.Errorf("%w: %q", ErrInvalidClass, class)
	}
	return s.change(ctx, name, "set calling class of "+name, `UPDATE users SET calls = ? WHERE name = ?`, class, name)
}

// CallingClass returns a user's calling class (from the cache when
// possible), or ErrUnknownUser.
func (s *Users) CallingClass(ctx context.Context, name string) (string, error) {
	u, err := s.Lookup(ctx, name)
	if err != nil {
		return "", err
	}
	return u.Calls, nil
}

// SetPassword replaces a user's password.
func (s *Users) SetPassword(ctx context.Context, name, password string) error {
	if password == "" {
		return errors.New("password is empty")
	}
	m, h := ComputeHA1(name, s.realm, password)
	return s.change(ctx, name, "set password of "+name,
		`UPDATE users SET ha1_md5 = ?, ha1_sha256 = ? WHERE name = ?`, m, h, name)
}

// Delete removes a user.
func (s *Users) Delete(ctx context.Context, name string) error {
	return s.change(ctx, name, "delete user "+name, `DELETE FROM users WHERE name = ?`, name)
}

// change runs query, a change to the row of user name (what says which, in
// errors), and drops the name from the cache. It fails with ErrUnknownUser
// when there is no such row.
func (s *Users) change(ctx context.Context, name, what, query string, args ...any) error {
	res, err := s.db.ExecContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: %s", ErrUnknownUser, name)
	}
	s.forget(name)
	return nil
}

// List returns all users ordered by name.
func (s *Users) List(ctx context.Context) ([]User, error) {
	return sqldb.Collect(ctx, s.db, "list users", func(rows *sql.Rows) (User, error) {
		var u User
		var created int64
		err := rows.Scan(&u.Name, &u.HA1MD5, &u.HA1SHA256, &created, &u.Calls)
		u.Created = time.Unix(created, 0)
		return u, err
	}, `SELECT name, ha1_md5, ha1_sha256, created_at, calls FROM users ORDER BY name`)
}

// Lookup returns the user called name, or ErrUnknownUser. Answers come from
// the cache when possible (both hits and misses are cached).
func (s *Users) Lookup(ctx context.Context, name string) (User, error) {
	s.mu.RLock()
	c, ok := s.cache[name]
	s.mu.RUnlock()
	if ok {
		if !c.exists {
			return User{}, ErrUnknownUser
		}
		return c.u, nil
	}
	s.mu.RLock()
	gen := s.gen
	s.mu.RUnlock()
	var u User
	var created int64
	err := s.db.QueryRowContext(ctx, `SELECT name, ha1_md5, ha1_sha256, created_at, calls FROM users WHERE name = ?`, name).
		Scan(&u.Name, &u.HA1MD5, &u.HA1SHA256, &created, &u.Calls)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		s.store(name, gen, cachedUser{})
		return User{}, ErrUnknownUser
	case err != nil:
		return User{}, fmt.Errorf("look up user %s: %w", name, err)
	}
	u.Created = time.Unix(created, 0)
	s.store(name, gen, cachedUser{u: u, exists: true})
	return u, nil
}

// LongTermKey returns the 16-byte MD5 HA1 of a user: the TURN long-term
// credential key (RFC 8656 §9.2) is the same H(user:realm:password).
func (s *Users) LongTermKey(username string) ([]byte, bool) {
	u, err := s.Lookup(context.Background(), username)
	if err != nil {
		return nil, false
	}
	b, err := hex.DecodeString(u.HA1MD5)
	if err != nil {
		return nil, false
	}
	return b, true
}

// CheckPassword reports whether password is the user's password. It is for
// HTTP Basic authentication of the switch's own APIs.
func (s *Users) CheckPassword(ctx context.Context, name, password string) bool {
	u, err := s.Lookup(ctx, name)
	if err != nil {
		return false
	}
	_, h := ComputeHA1(name, s.realm, password)
	return constantTimeEqual(h, u.HA1SHA256)
}

const maxCachedUsers = 200000

// store caches c unless entries were dropped since gen was read: a row read
// before a change must not outlive the change in the cache.
func (s *Users) store(name string, gen uint64, c cachedUser) {
	s.mu.Lock()
	if s.gen != gen {
		s.mu.Unlock()
		return
	}
	if len(s.cache) >= maxCachedUsers {
		// Bound memory against floods of lookups for made-up names.
		s.cache = make(map[string]cachedUser)
	}
	// A copy: name may be part of a larger string (a parsed header) that
	// the cache must not keep alive.
	s.cache[strings.Clone(name)] = c
	s.mu.Unlock()
}

func (s *Users) forget(name string) {
	s.mu.Lock()
	delete(s.cache, name)
	s.gen++
	s.mu.Unlock()
}

// Watch drops the cache whenever the users table changes, whoever changed it
// (for example `switchboard user add` run beside the server), checking a
// version row kept by triggers every interval until ctx ends. The caller runs
// it in a goroutine it owns.
func (s *Users) Watch(ctx context.Context, interval time.Duration) {
	version := func() int64 {
		var v int64
		if err := s.db.QueryRowContext(ctx, `SELECT v FROM users_version WHERE id = 1`).Scan(&v); err != nil && ctx.Err() == nil {
			s.log.Warn("user cache watcher", "error", err)
		}
		return v
	}
	last := version()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if v := version(); v != last {
			last = v
			s.mu.Lock()
			s.cache = make(map[string]cachedUser)
			s.gen++
			s.mu.Unlock()
		}
	}
}

package admin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/switchboard/switchboard/internal/sqldb"
	"github.com/switchboard/switchboard/registrar"
)

// Admin accounts are not SIP users: they sign in to the console and own
// API tokens, and live in tables of their own. Passwords are stored as
// bcrypt hashes; tokens as the SHA-256 of the token (a token is 32 random
// bytes: a fast hash is enough, and lets a request be checked with one
// lookup).
var accountSchema = []string{
	`CREATE TABLE admin_accounts (
		name TEXT PRIMARY KEY,
		password_hash TEXT NOT NULL,
		created_at INTEGER NOT NULL
	);
	CREATE TABLE admin_tokens (
		token_hash TEXT PRIMARY KEY,
		admin TEXT NOT NULL,
		created_at INTEGER NOT NULL,
		expires_at INTEGER NOT NULL DEFAULT 0
	);
	CREATE INDEX admin_tokens_admin ON admin_tokens (admin);`,
	// Where the running switch serves the API, for the CLI beside it
	// (http.listen may name port 0).
	`CREATE TABLE admin_server (id INTEGER PRIMARY KEY, url TEXT NOT NULL, updated_at INTEGER NOT NULL)`,
}

// Errors of the account store.
var (
	ErrExists      = errors.New("admin account exists")
	ErrNoAccount   = errors.New("no such admin account")
	ErrInvalidName = errors.New("invalid admin name")
	ErrNoPassword  = errors.New("password is empty")
)

// tokenPrefix starts every API token, so that one pasted somewhere is
// recognisable.
const tokenPrefix = "sbt_"

// Account is an admin account.
type Account struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
	Tokens  int       `json:"tokens"`
}

// Accounts is the admin account and token store.
type Accounts struct {
	db   *sql.DB
	cost int
	now  func() time.Time
}

// OpenAccounts migrates the account tables of db and returns the store.
func OpenAccounts(ctx context.Context, db *sql.DB) (*Accounts, error) {
	if err := sqldb.Migrate(ctx, db, "admin", accountSchema); err != nil {
		return nil, err
	}
	return &Accounts{db: db, cost: bcrypt.DefaultCost, now: time.Now}, nil
}

// ValidName reports whether name can be an admin account's name: the rules
// of SIP user names (registrar.ValidName).
func ValidName(name string) bool { return registrar.ValidName(name) }

// Add creates an account.
func (a *Accounts) Add(ctx context.Context, name, password string) error {
	if !ValidName(name) {
		return fmt.Errorf("%w: %q", ErrInvalidName, name)
	}
	hash, err := a.hash(password)
	if err != nil {
		return err
	}
	_, err = a.db.ExecContext(ctx, `INSERT INTO admin_accounts (name, password_hash, created_at) VALUES (?, ?, ?)`,
		name, hash, a.now().Unix())
	if err != nil {
		if strings.Contains(err.Error(), "UNIQUE") {
			return fmt.Errorf("%w: %s", ErrExists, name)
		}
		return fmt.Errorf("add admin %s: %w", name, err)
	}
	return nil
}

func (a *Accounts) hash(password string) (string, error) {
	if password == "" {
		return "", ErrNoPassword
	}
	if len(password) > 72 {
		return "", errors.New("password is longer than 72 bytes (bcrypt's limit)")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), a.cost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// SetPassword replaces an account's password. Its tokens stay valid.
func (a *Accounts) SetPassword(ctx context.Context, name, password string) error {
	hash, err := a.hash(password)
	if err != nil {
		return err
	}
	return a.change(ctx, name, `UPDATE admin_accounts SET password_hash = ? WHERE name = ?`, hash, name)
}

// Delete removes an account and its tokens.
func (a *Accounts) Delete(ctx context.Context, name string) error {
	if err := a.change(ctx, name, `DELETE FROM admin_accounts WHERE name = ?`, name); err != nil {
		return err
	}
	if _, err := a.db.ExecContext(ctx, `DELETE FROM admin_tokens WHERE admin = ?`, name); err != nil {
		return fmt.Errorf("delete tokens of %s: %w", name, err)
	}
	return nil
}

func (a *Accounts) change(ctx context.Context, name, query string, args ...any) error {
	res, err := a.db.ExecContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("admin %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: %s", ErrNoAccount, name)
	}
	return nil
}

// List returns the accounts by name.
func (a *Accounts) List(ctx context.Context) ([]Account, error) {
	return sqldb.Collect(ctx, a.db, "list admins", func(rows *sql.Rows) (Account, error) {
		var ac Account
		var created int64
		err := rows.Scan(&ac.Name, &created, &ac.Tokens)
		ac.Created = time.Unix(created, 0)
		return ac, err
	}, `SELECT a.name, a.created_at, (SELECT COUNT(*) FROM admin_tokens t WHERE t.admin = a.name)
		FROM admin_accounts a ORDER BY a.name`)
}

// dummyHash is checked against when the account does not exist, so that
// a sign-in takes as long whether or not the name is an account.
var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("not a password"), bcrypt.DefaultCost)

// Check reports whether password is the account's.
func (a *Accounts) Check(ctx context.Context, name, password string) bool {
	var hash string
	err := a.db.QueryRowContext(ctx, `SELECT password_hash FROM admin_accounts WHERE name = ?`, name).Scan(&hash)
	if err != nil {
		_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(password))
		return false
	}
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) == nil
}

// NewToken makes a new API token for the account; ttl 0 never expires. The
// token is returned once and only its hash is stored.
func (a *Accounts) NewToken(ctx context.Context, name string, ttl time.Duration) (string, error) {
	var exists int
	if err := a.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM admin_accounts WHERE name = ?`, name).Scan(&exists); err != nil {
		return "", fmt.Errorf("admin %s: %w", name, err)
	}
	if exists == 0 {
		return "", fmt.Errorf("%w: %s", ErrNoAccount, name)
	}
	return a.mint(ctx, name, ttl)
}

// LocalToken makes a short-lived token for the CLI on this host, which
// can read the database (and so is an operator already): it is owned by
// no account.
func (a *Accounts) LocalToken(ctx context.Context, ttl time.Duration) (string, error) {
	return a.mint(ctx, localAdmin, ttl)
}

// localAdmin owns LocalToken's tokens; it cannot be an account's name.
const localAdmin = "(local cli)"

func (a *Accounts) mint(ctx context.Context, owner string, ttl time.Duration) (string, error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	tok := tokenPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	now := a.now()
	exp := int64(0)
	if ttl > 0 {
		exp = now.Add(ttl).Unix()
		// Expired local tokens are forgotten as new ones are made.
		if _, err := a.db.ExecContext(ctx, `DELETE FROM admin_tokens WHERE expires_at > 0 AND expires_at < ?`, now.Unix()); err != nil {
			return "", fmt.Errorf("purge tokens: %w", err)
		}
	}
	if _, err := a.db.ExecContext(ctx, `INSERT INTO admin_tokens (token_hash, admin, created_at, expires_at) VALUES (?, ?, ?, ?)`,
		tokenHash(tok), owner, now.Unix(), exp); err != nil {
		return "", fmt.Errorf("store token: %w", err)
	}
	return tok, nil
}

func tokenHash(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}

// TokenOwner returns the account a token belongs to, if it is valid.
func (a *Accounts) TokenOwner(ctx context.Context, tok string) (string, bool) {
	if !strings.HasPrefix(tok, tokenPrefix) || len(tok) > 100 {
		return "", false
	}
	want := tokenHash(tok)
	var got, owner string
	var exp int64
	err := a.db.QueryRowContext(ctx, `SELECT token_hash, admin, expires_at FROM admin_tokens WHERE token_hash = ?`, want).
		Scan(&got, &owner, &exp)
	if err != nil || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		return "", false
	}
	if exp > 0 && a.now().Unix() > exp {
		return "", false
	}
	return owner, true
}

// SetServerURL records where the running switch serves the API.
func (a *Accounts) SetServerURL(ctx context.Context, url string) error {
	_, err := a.db.ExecContext(ctx, `INSERT INTO admin_server (id, url, updated_at) VALUES (1, ?, ?)
		ON CONFLICT (id) DO UPDATE SET url = excluded.url, updated_at = excluded.updated_at`, url, a.now().Unix())
	if err != nil {
		return fmt.Errorf("record the API address: %w", err)
	}
	return nil
}

// ServerURL returns where the switch last said it serves the API.
func (a *Accounts) ServerURL(ctx context.Context) (string, bool) {
	var url string
	if err := a.db.QueryRowContext(ctx, `SELECT url FROM admin_server WHERE id = 1`).Scan(&url); err != nil {
		return "", false
	}
	return url, true
}

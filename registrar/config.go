package registrar

import (
	"cmp"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Config configures the registrar. Zero values take the documented defaults.
type Config struct {
	// DB holds users and bindings (its tables are migrated by New).
	// Required.
	DB *sql.DB
	// Logger receives the registrar's logs; nil is slog.Default().
	Logger *slog.Logger
	// Realm is the digest realm: the switch's SIP domain. Required.
	Realm string
	// DefaultExpires applies when a REGISTER gives no expiry (default 3600s).
	DefaultExpires time.Duration
	// MinExpires is the shortest expiry accepted; shorter requests get
	// 423 Interval Too Brief (RFC 3261 §10.3 step 7). Default 60s.
	MinExpires time.Duration
	// MaxExpires caps the expiry granted (default 86400s).
	MaxExpires time.Duration
	// MaxContacts bounds the bindings of one AOR; a new contact beyond it
	// replaces the one updated longest ago. Default 10.
	MaxContacts int
	// NonceTTL is how long a digest nonce is accepted (default 5m).
	NonceTTL time.Duration
	// Algorithms are the digest algorithms offered, one challenge header
	// each, in this order (RFC 8760 §2.4). Default MD5 then SHA-256: many
	// deployed UAs (SIPp 3.6, older desk phones) read only the first
	// challenge and fail on SHA-256, while RFC 8760 clients pick the first
	// they support. Operators with modern phones can put SHA-256 first.
	Algorithms []string
	// MD5OnlyUserAgents lists User-Agent substrings (case-insensitive) of
	// UAs that give up on a challenge offering anything but MD5 (baresip
	// 1.0.0 does): they are challenged with MD5 alone.
	MD5OnlyUserAgents []string
	// AuthFailures wrong passwords from one source IP within AuthWindow get
	// the source refused for Ban. AuthFailures 0 means 10; negative disables.
	// The budget is shared by every password check of the switch (see
	// Guard): SIP digest, TURN, HTTP Basic and the web phone's sign-in.
	AuthFailures int
	// AuthFailuresPerUser wrong passwords for one user name within
	// AuthWindow, from any sources, get the user refused for Ban from every
	// source that has not signed in as that user in the last 24 hours.
	// 0 means 30; negative disables.
	AuthFailuresPerUser int
	AuthWindow          time.Duration // default 1m
	Ban                 time.Duration // default 5m
}

func (c *Config) setDefaults() {
	c.DefaultExpires = cmp.Or(c.DefaultExpires, time.Hour)
	c.MinExpires = cmp.Or(c.MinExpires, time.Minute)
	c.MaxExpires = cmp.Or(c.MaxExpires, 24*time.Hour)
	c.MaxContacts = cmp.Or(c.MaxContacts, 10)
	c.NonceTTL = cmp.Or(c.NonceTTL, 5*time.Minute)
	c.AuthFailures = cmp.Or(c.AuthFailures, 10)
	c.AuthFailuresPerUser = cmp.Or(c.AuthFailuresPerUser, 30)
	c.AuthWindow = cmp.Or(c.AuthWindow, time.Minute)
	c.Ban = cmp.Or(c.Ban, 5*time.Minute)
}

func (c *Config) validate() error {
	if c.Realm == "" {
		return errors.New("realm (domain) is empty")
	}
	if c.DB == nil {
		return errors.New("no database")
	}
	if c.MinExpires < 0 || c.DefaultExpires < 0 || c.MaxExpires < 0 {
		return errors.New("expiry settings must not be negative")
	}
	if c.MinExpires > c.MaxExpires {
		return fmt.Errorf("min_expires (%s) is greater than max_expires (%s)", c.MinExpires, c.MaxExpires)
	}
	if c.DefaultExpires < c.MinExpires || c.DefaultExpires > c.MaxExpires {
		return fmt.Errorf("default_expires (%s) is outside min_expires..max_expires", c.DefaultExpires)
	}
	if c.MaxContacts < 1 {
		return errors.New("max_contacts must be at least 1")
	}
	return nil
}

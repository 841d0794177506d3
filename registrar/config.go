package registrar

import (
	"cmp"
	"database/sql"
	"log/slog"
	"time"

	"github.com/switchboard/switchboard/internal/fielderr"
	"github.com/switchboard/switchboard/internal/natdetect"
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
	// SHA256UserAgents lists User-Agent substrings (case-insensitive) of
	// UAs known to choose correctly among several challenges: they are
	// offered SHA-256 first, then MD5, whatever Algorithms says (and
	// SHA-256 is accepted from them).
	SHA256UserAgents []string
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
	// NATDetect is the evidence that marks a binding as behind NAT (see
	// natdetect.Rule): such a UA is reached where its REGISTER came from,
	// others at their Contact. The zero value is natdetect.Default.
	NATDetect natdetect.Rule
	// FlowTimer is the Flow-Timer given to UAs that register an RFC 5626
	// flow: how often, in seconds, they send keep-alives on it (§4.4.1).
	// 0 gives none (the UA's own default applies); otherwise whole
	// seconds, at least 1s.
	FlowTimer time.Duration
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

// Validate checks c's values, its zero values taken as their defaults;
// New checks the same, and that a database is given. An error names the
// field at fault (fielderr.Error).
func (c Config) Validate() error {
	c.setDefaults()
	return c.validate()
}

func (c *Config) validate() error {
	if c.Realm == "" {
		return fielderr.New("Realm", "must not be empty")
	}
	for name, d := range map[string]time.Duration{"MinExpires": c.MinExpires, "DefaultExpires": c.DefaultExpires,
		"MaxExpires": c.MaxExpires, "NonceTTL": c.NonceTTL, "AuthWindow": c.AuthWindow, "Ban": c.Ban} {
		if d < 0 {
			return fielderr.New(name, "%s: must not be negative", d)
		}
	}
	// RFC 3261 §10.3 step 7: Min-Expires bounds what is granted.
	if c.MinExpires > c.MaxExpires {
		return fielderr.New("MinExpires", "%s is greater than the maximum (%s)", c.MinExpires, c.MaxExpires)
	}
	if c.DefaultExpires < c.MinExpires || c.DefaultExpires > c.MaxExpires {
		return fielderr.New("DefaultExpires", "%s is outside %s..%s", c.DefaultExpires, c.MinExpires, c.MaxExpires)
	}
	if c.FlowTimer < 0 || (c.FlowTimer > 0 && c.FlowTimer < time.Second) {
		return fielderr.New("FlowTimer", "%s: must be 0 or at least 1s", c.FlowTimer)
	}
	if c.MaxContacts < 1 {
		return fielderr.New("MaxContacts", "%d: must be at least 1", c.MaxContacts)
	}
	for i, a := range c.Algorithms {
		if a != AlgMD5 && a != AlgSHA256 {
			return fielderr.New("Algorithms", "[%d]: %q is not MD5 or SHA-256", i, a)
		}
	}
	return nil
}

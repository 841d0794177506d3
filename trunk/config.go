package trunk

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	gosip "github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard/switchboard/internal/fielderr"
	"github.com/switchboard/switchboard/internal/userpart"
	"github.com/switchboard/switchboard/registrar"
)

// Config configures the trunks, the dial plan and the limits. Its shape
// follows the configuration file (trunks, numbers, dialplan, limits), so a
// field named in an error (fielderr) maps to its key one to one. Zero
// values take the defaults given on each field.
type Config struct {
	// Trunks are the carriers calls go out to and come in from.
	Trunks []Trunk
	// Numbers maps each of our numbers (DIDs, in any form the dial plan
	// normalises) to the local users a call to it rings, all at once. A
	// user's first number (in E.164 order) is also what the carrier is
	// shown when that user calls out.
	Numbers map[string][]string
	// Dialplan normalises numbers and routes them to trunks.
	Dialplan Dialplan
	// Limits bound what users may call (toll fraud).
	Limits Limits

	// Domain names the switch in the Warning headers of refusals (RFC 3261
	// §20.43 warn-agent). Default "switchboard".
	Domain string
	// Classes tells each user's calling class. Required when there are
	// routes.
	Classes ClassLookup
	// Transport sends the outbound registrations from the switch's SIP
	// listeners (*sip.Server satisfies it). Required by Serve when a trunk
	// registers.
	Transport Transport
	// DB keeps the trunks' registration state for `switchboard trunk list`
	// (its trunk_state table is migrated by New); nil keeps it in memory.
	DB *sql.DB
	// Logger receives the trunks' logs; nil is slog.Default().
	Logger *slog.Logger
	// Metrics is where the trunk metrics are registered; nil registers
	// none.
	Metrics prometheus.Registerer
	// RegisterExpires is the registration lifetime asked of carriers
	// (default 1h); the carrier's grant is what counts.
	RegisterExpires time.Duration
}

// Trunk is one SIP trunk.
type Trunk struct {
	// Name identifies the trunk in routes, logs, metrics and call records.
	// Required: letters, digits, '-', '_', '.'.
	Name string
	// Address is where its calls (and its registration) go, a SIP URI:
	// sip:host[:port][;transport=udp|tcp|tls] (sips: means TLS). Required.
	Address string
	// Username and Password are the digest credentials the carrier
	// challenges us with (RFC 3261 §22.2).
	Username, Password string
	// Register keeps an outbound registration with the carrier (refreshed
	// before expiry, retried with backoff); needs Username. Requests that
	// arrive from the address registered with are the trunk's.
	Register bool
	// InboundFrom are the networks (CIDRs) the carrier's calls come from
	// (IP authentication).
	InboundFrom []string
	// CallerID is the number presented (From, P-Asserted-Identity) when
	// the caller has no number of its own.
	CallerID string
	// MaxCalls bounds the concurrent calls over the trunk, both ways; 0:
	// no limit.
	MaxCalls int
	// Timeout is how long the carrier has to answer anything (a call's
	// INVITE, a REGISTER) before it counts as down: the next trunk is
	// tried, the registration retried. Default 5s.
	Timeout time.Duration
}

// Dialplan normalises what users dial to E.164 and routes numbers.
type Dialplan struct {
	// CountryCode is our country's calling code (digits, "49"): national
	// numbers get it. Empty: only international forms are numbers.
	CountryCode string
	// InternationalPrefix is dialled before a country code ("00"; default
	// "00").
	InternationalPrefix string
	// NationalPrefix is dialled before an area code ("0"; default "0").
	NationalPrefix string
	// Routes are tried in order; the first whose Match matches the E.164
	// number carries the call, over its Trunks in order.
	Routes []Route
}

// Route sends the numbers matching Match (a regular expression, RE2, on
// the E.164 number: "^\\+49") over Trunks, tried in order.
type Route struct {
	Match  string
	Trunks []string
}

// Limits bound what users may call. They are counted per user across all
// calls in progress; reaching one refuses the call with 403 and a Warning
// that names it, is logged once per window and counted in metrics.
type Limits struct {
	// CallsPerUser bounds one user's concurrent calls over trunks; 0: no
	// limit.
	CallsPerUser int
	// ExternalCallsPerHour bounds one user's calls over trunks started in
	// any hour (a sliding window); 0: no limit.
	ExternalCallsPerHour int
	// Blocked are regular expressions on the E.164 number that nobody may
	// call (premium rate, satellite).
	Blocked []string
}

// Calling classes: what a user may call over the trunks (stored with the
// user by the registrar).
const (
	ClassInternal      = registrar.ClassInternal      // nothing outside the switch
	ClassNational      = registrar.ClassNational      // numbers of our country (+CountryCode)
	ClassInternational = registrar.ClassInternational // any number
)

// ClassLookup tells a user's calling class (*registrar.Users satisfies
// it).
type ClassLookup interface {
	CallingClass(ctx context.Context, user string) (string, error)
}

// DefaultTimeout is a trunk's Timeout when none is given.
const DefaultTimeout = 5 * time.Second

func (c *Config) setDefaults() {
	if c.Domain == "" {
		c.Domain = "switchboard"
	}
	if c.Dialplan.InternationalPrefix == "" {
		c.Dialplan.InternationalPrefix = "00"
	}
	if c.Dialplan.NationalPrefix == "" {
		c.Dialplan.NationalPrefix = "0"
	}
	if c.RegisterExpires == 0 {
		c.RegisterExpires = time.Hour
	}
	for i := range c.Trunks {
		if c.Trunks[i].Timeout == 0 {
			c.Trunks[i].Timeout = DefaultTimeout
		}
	}
}

// Validate checks c's values, its zero values taken as their defaults;
// New checks the same. An error names the field at fault (fielderr.Error),
// as "Trunks[1].InboundFrom[0]", "Numbers[+4930123456]",
// "Dialplan.Routes[0].Trunks[1]" or "Limits.Blocked[2]".
func (c Config) Validate() error {
	c.Trunks = slices.Clone(c.Trunks)
	c.setDefaults()
	_, err := c.compile()
	return err
}

// plan is a validated Config, compiled.
type plan struct {
	dial    Dialplan
	trunks  []*trunkInfo
	byName  map[string]*trunkInfo
	numbers map[string][]string // E.164 → users
	dids    map[string][]string // user → E.164 numbers, sorted
	routes  []route
	blocked []*regexp.Regexp
}

type route struct {
	re     *regexp.Regexp
	trunks []*trunkInfo
}

// trunkInfo is a trunk as compiled, with its live state.
type trunkInfo struct {
	cfg       Trunk
	uri       gosip.Uri // Address
	transport string    // UDP, TCP, TLS
	dest      string    // host:port
	inbound   []netip.Prefix
	callerID  string // E.164

	calls *slotCounter // calls over the trunk, both ways (max_calls)
	reg   *registration
}

func (c *Config) compile() (*plan, error) {
	p := &plan{dial: c.Dialplan, byName: map[string]*trunkInfo{}, numbers: map[string][]string{}, dids: map[string][]string{}}
	if err := c.Dialplan.validate(); err != nil {
		return nil, fielderr.In("Dialplan", err)
	}
	if c.RegisterExpires < 0 {
		return nil, fielderr.New("RegisterExpires", "%s: must not be negative", c.RegisterExpires)
	}
	for i, tc := range c.Trunks {
		ti, err := compileTrunk(tc, c.Dialplan)
		if err != nil {
			return nil, fielderr.In(fmt.Sprintf("Trunks[%d]", i), err)
		}
		if _, dup := p.byName[tc.Name]; dup {
			return nil, fielderr.New(fmt.Sprintf("Trunks[%d].Name", i), "trunk %q is defined twice", tc.Name)
		}
		p.byName[tc.Name] = ti
		p.trunks = append(p.trunks, ti)
	}
	if err := p.compileNumbers(c.Numbers); err != nil {
		return nil, err
	}
	for i, r := range c.Dialplan.Routes {
		field := fmt.Sprintf("Dialplan.Routes[%d]", i)
		re, err := regexp.Compile(r.Match)
		if err != nil {
			return nil, fielderr.New(field+".Match", "%q is not a regular expression: %w", r.Match, err)
		}
		if len(r.Trunks) == 0 {
			return nil, fielderr.New(field+".Trunks", "a route needs at least one trunk")
		}
		rt := route{re: re}
		for j, name := range r.Trunks {
			ti, ok := p.byName[name]
			if !ok {
				return nil, fielderr.New(fmt.Sprintf("%s.Trunks[%d]", field, j), "no trunk is named %q", name)
			}
			rt.trunks = append(rt.trunks, ti)
		}
		p.routes = append(p.routes, rt)
	}
	for i, b := range c.Limits.Blocked {
		re, err := regexp.Compile(b)
		if err != nil {
			return nil, fielderr.New(fmt.Sprintf("Limits.Blocked[%d]", i), "%q is not a regular expression: %w", b, err)
		}
		p.blocked = append(p.blocked, re)
	}
	switch {
	case c.Limits.CallsPerUser < 0:
		return nil, fielderr.New("Limits.CallsPerUser", "%d: must not be negative", c.Limits.CallsPerUser)
	case c.Limits.ExternalCallsPerHour < 0:
		return nil, fielderr.New("Limits.ExternalCallsPerHour", "%d: must not be negative", c.Limits.ExternalCallsPerHour)
	}
	return p, nil
}

// compileNumbers normalises the DIDs: each must be a number, and no two
// may be the same number in different forms.
func (p *plan) compileNumbers(numbers map[string][]string) error {
	keys := make([]string, 0, len(numbers))
	for k := range numbers {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	seen := map[string]string{}
	for _, k := range keys {
		field := "Numbers[" + k + "]"
		n, ok := p.dial.Normalize(k)
		if !ok {
			return fielderr.New(field, "%q is not a telephone number the dial plan can normalise", k)
		}
		if other, dup := seen[n]; dup {
			return fielderr.New(field, "%q is the same number as %q (%s)", k, other, n)
		}
		seen[n] = k
		users := numbers[k]
		if len(users) == 0 {
			return fielderr.New(field, "a number must ring at least one user")
		}
		for _, u := range users {
			if !userpart.Valid(u, "-_.!~*'()+") {
				return fielderr.New(field, "%q is not a user name", u)
			}
			if !slices.Contains(p.dids[u], n) {
				p.dids[u] = append(p.dids[u], n)
			}
		}
		p.numbers[n] = slices.Clone(users)
	}
	for u := range p.dids {
		slices.Sort(p.dids[u])
	}
	return nil
}

func (d Dialplan) validate() error {
	for _, f := range []struct{ name, v string }{{"CountryCode", d.CountryCode},
		{"InternationalPrefix", d.InternationalPrefix}, {"NationalPrefix", d.NationalPrefix}} {
		if strings.Trim(f.v, "0123456789") != "" {
			return fielderr.New(f.name, "%q: digits only", f.v)
		}
	}
	if len(d.CountryCode) > 3 || strings.HasPrefix(d.CountryCode, "0") {
		return fielderr.New("CountryCode", "%q is not a country calling code (1 to 3 digits, E.164)", d.CountryCode)
	}
	if d.InternationalPrefix == d.NationalPrefix {
		return fielderr.New("NationalPrefix", "%q is the international prefix too", d.NationalPrefix)
	}
	return nil
}

// compileTrunk checks one trunk and works out where it is reached.
func compileTrunk(tc Trunk, d Dialplan) (*trunkInfo, error) {
	if tc.Name == "" || strings.Trim(tc.Name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") != "" {
		return nil, fielderr.New("Name", "%q: want letters, digits, '-', '_' or '.'", tc.Name)
	}
	ti := &trunkInfo{cfg: tc, calls: newSlotCounter(tc.MaxCalls)}
	if err := gosip.ParseUri(tc.Address, &ti.uri); err != nil || ti.uri.Host == "" {
		return nil, fielderr.New("Address", "%q is not a SIP URI (sip:host[:port][;transport=udp|tcp|tls])", tc.Address)
	}
	switch ti.uri.Scheme {
	case "sip", "sips":
	default:
		return nil, fielderr.New("Address", "%q: scheme must be sip or sips", tc.Address)
	}
	ti.transport = "UDP"
	if v, ok := ti.uri.UriParams.Get("transport"); ok {
		ti.transport = strings.ToUpper(v)
	}
	if ti.uri.Scheme == "sips" {
		// RFC 3261 §26.2: sips is TLS all the way.
		if ti.transport == "UDP" && ti.uri.UriParams.Has("transport") {
			return nil, fielderr.New("Address", "%q: sips needs tls", tc.Address)
		}
		ti.transport = "TLS"
	}
	switch ti.transport {
	case "UDP", "TCP", "TLS":
	default:
		return nil, fielderr.New("Address", "%q: transport must be udp, tcp or tls", tc.Address)
	}
	port := ti.uri.Port
	if port == 0 {
		port = gosip.DefaultPort(ti.transport)
	}
	host := strings.Trim(ti.uri.Host, "[]")
	if ip, err := netip.ParseAddr(host); err == nil {
		ti.dest = netip.AddrPortFrom(ip, uint16(port)).String()
	} else {
		ti.dest = fmt.Sprintf("%s:%d", host, port)
	}
	for i, s := range tc.InboundFrom {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			ip, err2 := netip.ParseAddr(s)
			if err2 != nil {
				return nil, fielderr.New(fmt.Sprintf("InboundFrom[%d]", i), "%q is not a CIDR prefix", s)
			}
			pfx = netip.PrefixFrom(ip, ip.BitLen())
		}
		ti.inbound = append(ti.inbound, pfx.Masked())
	}
	if tc.CallerID != "" {
		n, ok := d.Normalize(tc.CallerID)
		if !ok {
			return nil, fielderr.New("CallerID", "%q is not a telephone number the dial plan can normalise", tc.CallerID)
		}
		ti.callerID = n
	}
	switch {
	case tc.MaxCalls < 0:
		return nil, fielderr.New("MaxCalls", "%d: must not be negative", tc.MaxCalls)
	case tc.Timeout < 0:
		return nil, fielderr.New("Timeout", "%s: must not be negative", tc.Timeout)
	case tc.Register && tc.Username == "":
		return nil, fielderr.New("Username", "a trunk that registers needs a username")
	case tc.Password != "" && tc.Username == "":
		return nil, fielderr.New("Username", "a password needs a username")
	}
	return ti, nil
}

package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard/switchboard/cdr"
	"github.com/switchboard/switchboard/registrar"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/trace"
)

// routes lays out /admin/ (the console) and /api/v1/ (the API).
func (c *Console) routes() {
	m := http.NewServeMux()
	api := func(path string, methods map[string]http.HandlerFunc) {
		allow := make([]string, 0, len(methods))
		for k := range methods {
			allow = append(allow, k)
		}
		m.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			h, ok := methods[r.Method]
			if !ok && r.Method == http.MethodHead {
				h, ok = methods[http.MethodGet]
			}
			if !ok {
				w.Header().Set("Allow", strings.Join(allow, ", "))
				writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed on "+r.URL.Path)
				return
			}
			h(w, r)
		})
	}
	a := c.authenticated
	api("/api/v1/health", map[string]http.HandlerFunc{http.MethodGet: c.health})
	api("/api/v1/registrations", map[string]http.HandlerFunc{http.MethodGet: a(c.registrations)})
	api("/api/v1/calls", map[string]http.HandlerFunc{http.MethodGet: a(c.calls)})
	api("/api/v1/calls/{id}", map[string]http.HandlerFunc{http.MethodDelete: a(c.hangup)})
	api("/api/v1/calls/{id}/trace", map[string]http.HandlerFunc{http.MethodGet: a(c.trace)})
	api("/api/v1/cdr", map[string]http.HandlerFunc{http.MethodGet: a(c.cdr)})
	api("/api/v1/users", map[string]http.HandlerFunc{http.MethodGet: a(c.users), http.MethodPost: a(c.addUser)})
	api("/api/v1/users/{name}", map[string]http.HandlerFunc{http.MethodDelete: a(c.deleteUser), http.MethodPut: a(c.setPassword)})
	api("/api/v1/bans", map[string]http.HandlerFunc{http.MethodGet: a(c.bans)})
	api("/api/v1/bans/{addr}", map[string]http.HandlerFunc{http.MethodDelete: a(c.liftBan)})
	api("/api/v1/turn/allocations", map[string]http.HandlerFunc{http.MethodGet: a(c.allocations)})
	api("/api/v1/stats", map[string]http.HandlerFunc{http.MethodGet: a(c.statsHandler)})
	m.HandleFunc("/api/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no API endpoint "+r.URL.Path)
	})
	m.HandleFunc("/admin/session", c.handleSession)
	m.HandleFunc("/admin/events", a(c.live.serveSSE))
	m.Handle("/admin/", c.static())
	c.mux = m
}

func (c *Console) health(w http.ResponseWriter, r *http.Request) {
	if c.cfg.Switch.Draining() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "draining"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "serving"})
}

// Registration is one registration as the API shows it.
type Registration struct {
	User      string    `json:"user"`
	Contact   string    `json:"contact"`
	Source    string    `json:"source"`
	Transport string    `json:"transport"`
	NAT       bool      `json:"nat"`
	UserAgent string    `json:"user_agent"`
	Expires   time.Time `json:"expires"`
	Updated   time.Time `json:"updated"`
}

func registrationOf(b registrar.Binding) Registration {
	r := Registration{User: b.AOR, Contact: b.Contact, Transport: b.Transport, NAT: b.NAT,
		UserAgent: b.UserAgent, Expires: b.Expires, Updated: b.Updated}
	if b.Source.IsValid() {
		r.Source = b.Source.String()
	}
	return r
}

// Registrations converts bindings for the API.
func Registrations(bs []registrar.Binding) []Registration {
	out := make([]Registration, 0, len(bs))
	for _, b := range bs {
		out = append(out, registrationOf(b))
	}
	return out
}

func (c *Console) registrations(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, Registrations(c.cfg.Registrations()))
}

// Call is a call in progress as the API shows it: the switch's snapshot
// with a quality estimate per leg.
type Call struct {
	sip.CallInfo
	Duration float64 `json:"duration_s"`
	Legs     []Leg   `json:"legs"`
}

// Leg is one party's media on one stream, with the loss and jitter of the
// last interval and a MOS estimate from them.
type Leg struct {
	sip.LegInfo
	JitterMS float64 `json:"jitter_ms"`
	// LossPct is the share of packets lost over the last interval (or
	// over the call, for the first).
	LossPct float64 `json:"loss_pct"`
	// MOS is the E-model estimate (ITU-T G.107) from LossPct and JitterMS;
	// 0 while no packet has come.
	MOS float64 `json:"mos"`
}

func (c *Console) calls(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, c.live.currentCalls())
}

func (c *Console) hangup(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	err := c.cfg.Switch.Hangup(ctx, id, "hung up by "+c.principal(r).admin)
	if errors.Is(err, sip.ErrNoCall) {
		writeError(w, http.StatusNotFound, "no_call", "no call in progress with Call-ID "+id)
		return
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	c.log.Info("call hung up from the console", "call_id", id, "admin", c.principal(r).admin)
	w.WriteHeader(http.StatusNoContent)
}

// Trace is a call's SIP messages, with the ladder's column of each.
type Trace struct {
	trace.Call
	// Caller and Callee are the parties' addresses as the messages show
	// them; From and To give, per message, the ladder column it goes from
	// and to (0 caller, 1 switch, 2 callee).
	Caller string `json:"caller"`
	Callee string `json:"callee"`
	From   []int  `json:"from"`
	To     []int  `json:"to"`
}

func (c *Console) trace(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	tc, ok := c.cfg.Traces.Get(id)
	if !ok {
		writeError(w, http.StatusNotFound, "no_trace", "no trace of Call-ID "+id+" (not seen, or evicted)")
		return
	}
	t := Trace{Call: tc}
	t.From, t.To, t.Caller, t.Callee = trace.Columns(tc)
	writeJSON(w, http.StatusOK, t)
}

// Record is a call record as the API shows it.
type Record struct {
	ID       int64      `json:"id"`
	CallID   string     `json:"call_id"`
	Caller   string     `json:"caller"`
	Callee   string     `json:"callee"`
	Started  time.Time  `json:"started"`
	Answered *time.Time `json:"answered"`
	Ended    *time.Time `json:"ended"`
	Duration float64    `json:"duration_s"`
	Status   int        `json:"status"`
	Reason   string     `json:"reason"`
	HangupBy string     `json:"hangup_by"`
	Media    string     `json:"media"`
	// Calls over trunks (cdr.Record): the trunk, the number as dialled
	// and normalised, the route; empty otherwise.
	Trunk   string `json:"trunk,omitempty"`
	Dialled string `json:"dialled,omitempty"`
	Number  string `json:"number,omitempty"`
	Route   string `json:"route,omitempty"`
}

// Records converts call records for the API.
func Records(rs []cdr.Record) []Record {
	out := make([]Record, 0, len(rs))
	for _, r := range rs {
		rec := Record{ID: r.ID, CallID: r.CallID, Caller: r.Caller, Callee: r.Callee, Started: r.Started,
			Duration: r.Duration().Seconds(), Status: r.Status, Reason: r.Reason, HangupBy: r.HangupBy, Media: r.Media,
			Trunk: r.Trunk, Dialled: r.Dialled, Number: r.Number, Route: r.Route}
		if !r.Answered.IsZero() {
			a := r.Answered
			rec.Answered = &a
		}
		if !r.Ended.IsZero() {
			e := r.Ended
			rec.Ended = &e
		}
		out = append(out, rec)
	}
	return out
}

// RecordPage is a page of GET cdr.
type RecordPage struct {
	Records []Record `json:"records"`
	// Next is the cursor of the next page; "" on the last.
	Next string `json:"next"`
}

// ParseTime reads a filter time: RFC 3339, a date (YYYY-MM-DD, local
// time), or Unix seconds.
func ParseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation("2006-01-02T15:04", s, time.Local); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation("2006-01-02", s, time.Local); err == nil {
		return t, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(n, 0), nil
	}
	return time.Time{}, errors.New("not RFC 3339, YYYY-MM-DD or Unix seconds")
}

func (c *Console) cdr(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := cdr.Filter{User: q.Get("user"), Status: q.Get("status"), Cursor: q.Get("cursor")}
	var err error
	for _, p := range []struct {
		key string
		to  *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if *p.to, err = ParseTime(q.Get(p.key)); err != nil {
			writeError(w, http.StatusBadRequest, "bad_filter", p.key+": "+err.Error())
			return
		}
	}
	if l := q.Get("limit"); l != "" {
		if f.Limit, err = strconv.Atoi(l); err != nil || f.Limit < 1 {
			writeError(w, http.StatusBadRequest, "bad_filter", "limit: want a number from 1 to "+strconv.Itoa(cdr.MaxLimit))
			return
		}
	}
	recs, next, err := cdr.Query(r.Context(), c.cfg.DB, f)
	if errors.Is(err, cdr.ErrBadFilter) {
		writeError(w, http.StatusBadRequest, "bad_filter", err.Error())
		return
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, RecordPage{Records: Records(recs), Next: next})
}

// User is a SIP user as the API shows it.
type User struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
}

func (c *Console) users(w http.ResponseWriter, r *http.Request) {
	list, err := c.cfg.Users.List(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	out := make([]User, 0, len(list))
	for _, u := range list {
		out = append(out, User{Name: u.Name, Created: u.Created})
	}
	writeJSON(w, http.StatusOK, out)
}

// readJSON decodes a small JSON body into v, answering 400 if it cannot.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 8192))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "bad JSON body: "+err.Error())
		return false
	}
	return true
}

func (c *Console) addUser(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name     string `json:"name"`
		Password string `json:"password"`
	}
	if !readJSON(w, r, &in) {
		return
	}
	if !registrar.ValidName(in.Name) {
		writeError(w, http.StatusBadRequest, "invalid_name", "a user name is 1 to 64 letters, digits or -_.!~*'()+")
		return
	}
	if in.Password == "" {
		writeError(w, http.StatusBadRequest, "no_password", "a password is required")
		return
	}
	err := c.cfg.Users.Add(r.Context(), in.Name, in.Password)
	if errors.Is(err, registrar.ErrUserExists) {
		writeError(w, http.StatusConflict, "exists", "user "+in.Name+" exists")
		return
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	c.log.Info("user added from the console", "user", in.Name, "admin", c.principal(r).admin)
	writeJSON(w, http.StatusCreated, User{Name: in.Name, Created: c.now()})
}

func (c *Console) setPassword(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Password string `json:"password"`
	}
	if !readJSON(w, r, &in) {
		return
	}
	if in.Password == "" {
		writeError(w, http.StatusBadRequest, "no_password", "a password is required")
		return
	}
	name := r.PathValue("name")
	if err := c.cfg.Users.SetPassword(r.Context(), name, in.Password); err != nil {
		c.userError(w, name, err)
		return
	}
	c.log.Info("user password changed from the console", "user", name, "admin", c.principal(r).admin)
	w.WriteHeader(http.StatusNoContent)
}

func (c *Console) deleteUser(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := c.cfg.Users.Delete(r.Context(), name); err != nil {
		c.userError(w, name, err)
		return
	}
	c.log.Info("user deleted from the console", "user", name, "admin", c.principal(r).admin)
	w.WriteHeader(http.StatusNoContent)
}

func (c *Console) userError(w http.ResponseWriter, name string, err error) {
	if errors.Is(err, registrar.ErrUnknownUser) {
		writeError(w, http.StatusNotFound, "no_user", "no user "+name)
		return
	}
	writeError(w, http.StatusInternalServerError, "internal", err.Error())
}

// Ban is a refusal in force: of the password ban (kind "source" or
// "user") or of the flood limit (kind "flood").
type Ban struct {
	Kind     string    `json:"kind"`
	Key      string    `json:"key"`
	Until    time.Time `json:"until"`
	Failures int       `json:"failures,omitempty"`
}

func (c *Console) bans(w http.ResponseWriter, r *http.Request) {
	out := []Ban{}
	for _, b := range c.cfg.Guard.Bans() {
		out = append(out, Ban{Kind: b.Kind, Key: b.Key, Until: b.Until, Failures: b.Failures})
	}
	for _, b := range c.cfg.Switch.FloodBanned() {
		out = append(out, Ban{Kind: "flood", Key: b.Addr.String(), Until: b.Until})
	}
	writeJSON(w, http.StatusOK, out)
}

func (c *Console) liftBan(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("addr")
	ip, err := netip.ParseAddr(key)
	if err != nil && !registrar.ValidName(key) {
		writeError(w, http.StatusBadRequest, "bad_address", key+" is neither an IP address nor a user name")
		return
	}
	lifted := c.cfg.Guard.Lift(key)
	if err == nil && c.cfg.Switch.LiftFloodBan(ip) {
		lifted = true
	}
	if !lifted {
		writeError(w, http.StatusNotFound, "no_ban", "no ban of "+key)
		return
	}
	c.log.Info("ban lifted from the console", "key", key, "admin", c.principal(r).admin)
	w.WriteHeader(http.StatusNoContent)
}

func (c *Console) allocations(w http.ResponseWriter, r *http.Request) {
	if c.cfg.Allocations == nil {
		writeError(w, http.StatusNotFound, "no_turn", "the TURN server is not enabled (turn.enabled)")
		return
	}
	writeJSON(w, http.StatusOK, c.cfg.Allocations())
}

func (c *Console) statsHandler(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, c.stats.snapshot())
}

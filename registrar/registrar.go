package registrar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard/switchboard/internal/lifecycle"
	"github.com/switchboard/switchboard/internal/natdetect"
	"github.com/switchboard/switchboard/internal/sipstatus"
)

// Registrar answers REGISTER requests and is the location service the proxy
// routes with.
type Registrar struct {
	cfg   Config
	log   *slog.Logger
	users *Users
	auth  *Authenticator
	guard *Guard
	loc   *Location
	now   func() time.Time
	loop  lifecycle.Loop
}

// New builds a Registrar over cfg.DB, migrating its tables and loading
// stored bindings. Serve persists changes; Shutdown flushes them.
func New(ctx context.Context, cfg Config) (*Registrar, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("registrar: %w", err)
	}
	db, log := cfg.DB, cfg.Logger
	if db == nil {
		return nil, errors.New("registrar: no database")
	}
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "registrar")
	users, err := NewUsers(ctx, db, cfg.Realm, log)
	if err != nil {
		return nil, err
	}
	guard := NewGuard(GuardConfig{
		PerSource: cfg.AuthFailures, PerUser: cfg.AuthFailuresPerUser, Window: cfg.AuthWindow, Ban: cfg.Ban,
	}, log)
	auth, err := NewAuthenticator(cfg.Realm, cfg.Algorithms, cfg.NonceTTL, users, guard)
	if err != nil {
		return nil, err
	}
	auth.SetMD5Only(cfg.MD5OnlyUserAgents)
	auth.SetSHA256UserAgents(cfg.SHA256UserAgents)
	loc, err := NewLocation(ctx, db, log)
	if err != nil {
		return nil, err
	}
	return &Registrar{cfg: cfg, log: log, users: users, auth: auth, guard: guard, loc: loc, now: time.Now}, nil
}

// Serve persists binding changes and watches the user table until ctx
// ends or Shutdown is called, then flushes what is queued.
func (r *Registrar) Serve(ctx context.Context) error {
	return r.loop.Run(ctx, func(ctx context.Context) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			r.users.Watch(ctx, time.Second)
		}()
		r.loc.Run(ctx)
		<-done
	})
}

// Shutdown stops Serve and waits, at most until ctx ends, for the queued
// binding changes to be written.
func (r *Registrar) Shutdown(ctx context.Context) error { return r.loop.Stop(ctx) }

// Users returns the user store.
func (r *Registrar) Users() *Users { return r.users }

// Authenticator returns the digest authenticator shared with the proxy.
func (r *Registrar) Authenticator() *Authenticator { return r.auth }

// Guard returns the authentication failure ban shared by every password
// check of the switch (SIP digest here; TURN, HTTP Basic and the web phone
// through their callers).
func (r *Registrar) Guard() *Guard { return r.guard }

// Location returns the location service.
func (r *Registrar) Location() *Location { return r.loc }

// Lookup returns the current bindings of user, best first, and whether the
// user exists at all (so the proxy can tell 480 from 404). Of several RFC
// 5626 flows of one instance only the most recently registered is
// returned: a request goes to an instance over one flow (§5.3), the others
// stand by.
func (r *Registrar) Lookup(ctx context.Context, user string) ([]Binding, bool, error) {
	bs := oneFlowPerInstance(r.loc.Lookup(user))
	if len(bs) > 0 {
		return bs, true, nil
	}
	if _, err := r.users.Lookup(ctx, user); err != nil {
		if errors.Is(err, ErrUnknownUser) {
			return nil, false, nil
		}
		return nil, false, err
	}
	return nil, true, nil
}

// DropFlow removes the bindings made over a connection that has closed.
func (r *Registrar) DropFlow(transport string, source netip.AddrPort) {
	if n := r.loc.DropFlow(transport, source); n > 0 {
		r.log.Info("connection closed, bindings removed", "transport", transport, "source", source.String(), "bindings", n)
	}
}

// HasFlow reports whether a binding was made over the connection from
// source on transport.
func (r *Registrar) HasFlow(transport string, source netip.AddrPort) bool {
	return r.loc.HasFlow(transport, source)
}

// Register processes a REGISTER (RFC 3261 §10.3) whose Request-URI names our
// domain, and returns the 200 OK to send. Any error carries the response
// status to answer with (a *StatusError: 400, 401 with a challenge, 403, 423,
// 500); the caller sends exactly one final response.
func (r *Registrar) Register(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	hdrs, err := r.Registration(ctx, RequestOf(req))
	if err != nil {
		return nil, err
	}
	res := sipstatus.NewResponse(req, 200, "OK")
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	return res, nil
}

// Registration is Register for a REGISTER as the registrar reads it: the
// headers of the 200 OK to send besides those copied from the request
// (RFC 3261 §10.3 step 8: the bindings; Date; RFC 5626's Require, Flow-Timer
// and Supported), or the error to answer with.
func (r *Registrar) Registration(ctx context.Context, q *Request) ([]sip.Header, error) {
	reg, err := r.parseRegister(ctx, q)
	if err != nil {
		if hdrs, ok := r.retransmitted(q, err); ok {
			return hdrs, nil // retransmit.go
		}
		return nil, err
	}
	if reg.wildcard || len(reg.contacts) > 0 {
		if err := r.loc.update(reg.aor, reg.apply); err != nil {
			if hdrs, ok := r.retransmitted(q, err); ok {
				return hdrs, nil
			}
			return nil, err
		}
	}
	return r.registered(q, reg.aor, reg.now, reg.flows()), nil
}

// register is one REGISTER as the registrar understood it.
type register struct {
	r         *Registrar
	aor       string
	callID    string
	cseq      uint32
	src       netip.AddrPort
	transport string
	via       *sip.ViaHeader // the top Via: NAT evidence
	local     netip.AddrPort // the listener it arrived on, if the proxy says
	ua        string
	now       time.Time
	contacts  []contactReq
	wildcard  bool
}

// parseRegister applies steps 2–7 of RFC 3261 §10.3 that need no bindings:
// authentication, the AOR, Call-ID and CSeq, and the contacts with their
// expiry.
func (r *Registrar) parseRegister(ctx context.Context, q *Request) (*register, error) {
	// Steps 2-3: authenticate (§22).
	user, err := r.auth.authorizeRequest(ctx, q)
	if err != nil {
		return nil, err
	}
	if !q.HasTo {
		return nil, statusErr(400, "Bad Request", errors.New("missing To"))
	}
	// Step 4: the authenticated user may only change its own bindings.
	aor := q.AOR
	if aor != user {
		return nil, statusErr(403, "Forbidden", fmt.Errorf("%w: %s registering %s", ErrIdentityMismatch, user, aor))
	}
	reg := &register{r: r, aor: aor, src: q.Source, now: r.now(), transport: q.Transport, via: q.Via, local: q.Local}
	reg.callID = q.ID.CallID
	if reg.callID == "" || !q.ID.HasCSeq {
		return nil, statusErr(400, "Bad Request", errors.New("missing Call-ID or CSeq"))
	}
	reg.cseq = q.ID.Seq
	reg.ua = q.UserAgent
	if len(reg.ua) > 128 {
		reg.ua = reg.ua[:128]
	}
	if err := r.parseContacts(q, reg); err != nil {
		return nil, err
	}
	return reg, nil
}

// parseContacts reads the Contact headers (§10.3 steps 6 and 7): each
// contact's expiry (its parameter, else Expires, else the default), bounded
// by Min-Expires (423) and the maximum, its q, and the "*" wildcard.
func (r *Registrar) parseContacts(q *Request, reg *register) error {
	defExp := r.cfg.DefaultExpires
	if q.HasExpires {
		n, err := strconv.ParseUint(strings.TrimSpace(q.Expires), 10, 32)
		if err != nil {
			return statusErr(400, "Bad Request", fmt.Errorf("bad Expires %q", q.Expires))
		}
		defExp = time.Duration(n) * time.Second
	}
	for _, h := range q.Contacts {
		ch, ok := h.(*sip.ContactHeader)
		if !ok {
			return statusErr(400, "Bad Request", errors.New("unparsable Contact"))
		}
		if ch.Address.Wildcard {
			reg.wildcard = true
			continue
		}
		c, err := r.contact(ch, defExp)
		if err != nil {
			return err
		}
		reg.contacts = append(reg.contacts, c)
	}
	// Step 6: "*" is only allowed alone and with Expires: 0.
	if reg.wildcard && (len(q.Contacts) != 1 || defExp != 0) {
		return statusErr(400, "Bad Request", errors.New("contact * needs Expires: 0 and no other contact"))
	}
	return checkOutbound(q, reg.contacts)
}

// contact reads one Contact's expiry and q.
func (r *Registrar) contact(ch *sip.ContactHeader, defExp time.Duration) (contactReq, error) {
	exp := defExp
	if v, ok := ch.Params.Get("expires"); ok {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return contactReq{}, statusErr(400, "Bad Request", fmt.Errorf("bad expires parameter %q", v))
		}
		exp = time.Duration(n) * time.Second
	}
	// Step 7: too brief is refused; too long is shortened.
	if exp > 0 && exp < r.cfg.MinExpires {
		return contactReq{}, statusErr(423, "Interval Too Brief", nil,
			sip.NewHeader("Min-Expires", strconv.Itoa(int(r.cfg.MinExpires/time.Second))))
	}
	if exp > r.cfg.MaxExpires {
		exp = r.cfg.MaxExpires
	}
	q := 1.0
	if v, ok := ch.Params.Get("q"); ok {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 || f > 1 {
			return contactReq{}, statusErr(400, "Bad Request", fmt.Errorf("bad q %q", v))
		}
		q = f
	}
	instance, regID, err := outboundParams(ch)
	if err != nil {
		return contactReq{}, err
	}
	return contactReq{uri: ch.Address, exp: exp, q: q, instance: instance, regID: regID}, nil
}

// errOutOfOrder refuses a REGISTER older than a binding it would change
// (§10.3 steps 6 and 7: same Call-ID needs a higher CSeq).
var errOutOfOrder = statusErr(500, "Server Internal Error", errors.New("out-of-order REGISTER"))

// apply computes the AOR's new bindings from its current ones (§10.3 steps
// 6-7) and returns them with those changed and those removed.
func (reg *register) apply(cur []*Binding) (next, changed, removed []*Binding, err error) {
	if reg.wildcard {
		// Step 6: remove all, unless a binding is newer.
		for _, b := range cur {
			if b.CallID == reg.callID && b.CSeq >= reg.cseq {
				return nil, nil, nil, errOutOfOrder
			}
		}
		return nil, nil, cur, nil
	}
	next = append([]*Binding(nil), cur...)
	for _, c := range reg.contacts {
		key := contactKey(c.uri)
		idx := c.match(next, key)
		if c.regID > 0 && c.exp > 0 {
			// A flow binding stands for this contact: an older binding
			// of the same URI without a flow would only fork the call.
			next = slices.DeleteFunc(next, func(b *Binding) bool {
				drop := b.RegID == 0 && b.Contact == key
				if drop {
					removed = append(removed, b)
				}
				return drop
			})
			idx = c.match(next, key)
		}
		if idx >= 0 {
			b := next[idx]
			// Step 7: same Call-ID needs a higher CSeq.
			if b.CallID == reg.callID && reg.cseq <= b.CSeq {
				return nil, nil, nil, errOutOfOrder
			}
			removed = append(removed, b) // re-indexed below when replaced
			if c.exp == 0 {
				next = append(next[:idx], next[idx+1:]...)
				continue
			}
			nb := reg.binding(key, c)
			next[idx] = nb
			changed = append(changed, nb)
			continue
		}
		if c.exp == 0 {
			continue
		}
		if len(next) >= reg.r.cfg.MaxContacts {
			// The oldest binding makes room for the new one.
			oldest := 0
			for i, b := range next {
				if b.Updated.Before(next[oldest].Updated) {
					oldest = i
				}
			}
			removed = append(removed, next[oldest])
			next = append(next[:oldest], next[oldest+1:]...)
		}
		nb := reg.binding(key, c)
		next = append(next, nb)
		changed = append(changed, nb)
	}
	return next, changed, removed, nil
}

// registered is step 8: the headers of the 200 OK listing every current
// binding of aor, and RFC 5626's (outboundHeaders) when the REGISTER made
// or refreshed a flow binding.
func (r *Registrar) registered(q *Request, aor string, now time.Time, flows bool) []sip.Header {
	bound := r.loc.Lookup(aor)
	hdrs := make([]sip.Header, 0, len(bound)+3)
	for _, b := range bound {
		secs := int(b.Expires.Sub(now).Round(time.Second) / time.Second)
		if secs < 0 {
			secs = 0
		}
		v := "<" + b.Contact + ">;expires=" + strconv.Itoa(secs)
		if b.Q != 1 {
			v += ";q=" + strconv.FormatFloat(b.Q, 'f', -1, 64)
		}
		if b.RegID > 0 {
			// RFC 5626 §6: the flow's binding is listed with its instance
			// and reg-id, so the UA recognises it.
			v += `;+sip.instance="` + b.Instance + `";reg-id=` + strconv.Itoa(b.RegID)
		}
		hdrs = append(hdrs, sip.NewHeader("Contact", v))
	}
	hdrs = append(hdrs, sip.NewHeader("Date", httpDate(now)))
	return r.outboundHeaders(q, hdrs, flows)
}

// dateCache holds the Date header value (RFC 3261 §20.17) of the current
// second: formatting it for every 200 was 0.5 % of a registration's CPU.
var dateCache atomic.Pointer[cachedDate]

type cachedDate struct {
	sec   int64
	value string
}

// httpDate returns now as a SIP Date value (RFC 1123 in GMT).
func httpDate(now time.Time) string {
	sec := now.Unix()
	if d := dateCache.Load(); d != nil && d.sec == sec {
		return d.value
	}
	d := &cachedDate{sec: sec, value: now.UTC().Format(http.TimeFormat)}
	dateCache.Store(d)
	return d.value
}

type contactReq struct {
	uri sip.Uri
	exp time.Duration
	q   float64
	// instance and regID are RFC 5626's +sip.instance and reg-id; regID
	// is 0 for a contact that is not a flow.
	instance string
	regID    int
}

// match returns the index of the binding in bs this contact updates (RFC
// 3261 §10.3 step 7): the one of the same instance and reg-id for a flow
// (RFC 5626 §6), else the one of the same Contact URI that is not another
// flow; -1 when there is none. A removal (expires 0) of a URI matches its
// flow bindings too.
func (c contactReq) match(bs []*Binding, key string) int {
	if c.regID > 0 {
		return slices.IndexFunc(bs, func(b *Binding) bool { return sameFlowBinding(b, c.instance, c.regID) })
	}
	return slices.IndexFunc(bs, func(b *Binding) bool { return b.Contact == key && (b.RegID == 0 || c.exp == 0) })
}

// flows reports whether the REGISTER makes or refreshes a flow binding.
func (reg *register) flows() bool {
	for _, c := range reg.contacts {
		if c.regID > 0 && c.exp > 0 {
			return true
		}
	}
	return false
}

// binding is the Binding a contact of this REGISTER makes.
func (reg *register) binding(key string, c contactReq) *Binding {
	nat, _ := reg.r.cfg.NATDetect.Behind(natdetect.Message{
		Contact: c.uri, HasContact: true, Via: reg.via, Source: reg.src, Transport: reg.transport,
	})
	return &Binding{
		AOR: reg.aor, Contact: key, Q: c.q, Expires: reg.now.Add(c.exp), CallID: reg.callID, CSeq: reg.cseq,
		Source: reg.src, Transport: reg.transport, Local: reg.local, NAT: nat, UserAgent: reg.ua, Updated: reg.now,
		Instance: c.instance, RegID: c.regID,
	}
}

// contactKey is the stored form of a Contact URI: the URI without header
// parameters, which is what responses list and in-dialog routing uses.
func contactKey(u sip.Uri) string {
	u.Headers = nil
	return u.String()
}

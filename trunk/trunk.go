package trunk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	gosip "github.com/emiago/sipgo/sip"

	"github.com/switchboard/switchboard/internal/lifecycle"
	"github.com/switchboard/switchboard/internal/sipstatus"
	"github.com/switchboard/switchboard/sip"
)

// Trunks is the trunk component: the proxy's sip.Router, and the outbound
// registrations, which its Serve keeps.
type Trunks struct {
	cfg   Config
	log   *slog.Logger
	plan  *plan
	users *userLimits
	rep   *reporter
	m     *metrics
	store stateStore
	loop  lifecycle.Loop
}

var _ sip.Router = (*Trunks)(nil)

// New validates cfg, migrates the state table and resets the trunks'
// states in it. Serve starts the registrations; Shutdown takes them back.
func New(ctx context.Context, cfg Config) (*Trunks, error) {
	cfg.Trunks = slices.Clone(cfg.Trunks)
	cfg.setDefaults()
	p, err := cfg.compile()
	if err != nil {
		return nil, fmt.Errorf("trunk: %w", err)
	}
	if len(p.routes) > 0 && cfg.Classes == nil {
		return nil, errors.New("trunk: routes need a calling class lookup (Classes)")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "trunk")
	m, err := newMetrics(cfg.Metrics, p)
	if err != nil {
		return nil, err
	}
	t := &Trunks{cfg: cfg, log: log, plan: p, users: newUserLimits(cfg.Limits), rep: newReporter(log), m: m,
		store: stateStore{db: cfg.DB}}
	if err := t.store.reset(ctx, p); err != nil {
		return nil, fmt.Errorf("trunk: %w", err)
	}
	for _, ti := range p.trunks {
		if ti.cfg.Register {
			ti.reg = newRegistration(ti, cfg, log, m, t.store)
		}
	}
	return t, nil
}

// Serve keeps the outbound registrations (registering, refreshing before
// expiry, retrying with backoff) until ctx ends or Shutdown is called,
// then takes them back (REGISTER with Expires: 0, bounded). With no
// registering trunk it just waits.
func (t *Trunks) Serve(ctx context.Context) error {
	var regs []*registration
	for _, ti := range t.plan.trunks {
		if ti.reg != nil {
			regs = append(regs, ti.reg)
		}
	}
	if len(regs) > 0 && t.cfg.Transport == nil {
		return errors.New("trunk: registering trunks need a SIP transport")
	}
	return t.loop.Run(ctx, func(ctx context.Context) {
		var wg sync.WaitGroup
		for _, r := range regs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r.run(ctx, t.cfg.Transport)
			}()
		}
		<-ctx.Done()
		wg.Wait()
	})
}

// Shutdown stops Serve and waits, at most until ctx ends, for the
// registrations to be taken back.
func (t *Trunks) Shutdown(ctx context.Context) error { return t.loop.Stop(ctx) }

// States returns the live registration state of every trunk, in
// configuration order.
func (t *Trunks) States() []State {
	out := make([]State, 0, len(t.plan.trunks))
	for _, ti := range t.plan.trunks {
		if ti.reg == nil {
			out = append(out, State{Trunk: ti.cfg.Name, State: StateOff})
			continue
		}
		out = append(out, ti.reg.snapshot())
	}
	return out
}

// Carrier returns the trunk src belongs to: inside one of its inbound_from
// networks, or the address its registration was made with (the
// registration's flow, while it is in force).
func (t *Trunks) Carrier(src netip.AddrPort, transport string) string {
	ip := src.Addr().Unmap()
	for _, ti := range t.plan.trunks {
		for _, p := range ti.inbound {
			if p.Contains(ip) {
				return ti.cfg.Name
			}
		}
		if ti.reg != nil && ti.reg.onFlow(src, transport) {
			return ti.cfg.Name
		}
	}
	return ""
}

// Inbound maps a trunk's request to the users of the number it calls:
// the Request-URI's user part, or (for a registration trunk, whose calls
// come to our Contact) the To header's.
func (t *Trunks) Inbound(trunk string, req *gosip.Request) (*sip.InboundCall, error) {
	ti := t.plan.byName[trunk]
	if ti == nil {
		return nil, sipstatus.New(500, "Server Internal Error", fmt.Errorf("unknown trunk %q", trunk))
	}
	var tried []string
	candidates := []gosip.Uri{req.Recipient}
	if to := req.To(); to != nil {
		candidates = append(candidates, to.Address)
	}
	for _, u := range candidates {
		dialled, _ := dialledNumber(u)
		if dialled == "" {
			continue
		}
		tried = append(tried, dialled)
		number, ok := t.plan.dial.inboundNumber(dialled)
		if !ok {
			continue
		}
		users, ok := t.plan.numbers[number]
		if !ok {
			continue
		}
		release := func() {}
		if req.IsInvite() {
			rel, ok := ti.calls.take()
			if !ok {
				t.refused(limitMaxCalls, trunk, "incoming call to "+number)
				return nil, t.refusal(503, "Service Unavailable", limitMaxCalls, fmt.Sprintf("trunk %s: max_calls (%d) reached", trunk, ti.cfg.MaxCalls))
			}
			t.m.calls.WithLabelValues(trunk).Inc()
			t.m.callsTotal.WithLabelValues(trunk, "in").Inc()
			release = func() { rel(); t.m.calls.WithLabelValues(trunk).Dec() }
		}
		return &sip.InboundCall{Trunk: trunk, Dialled: unescape(dialled), Number: number, Users: slices.Clone(users), Release: onceFunc(release)}, nil
	}
	return nil, sipstatus.New(404, "Not Found", fmt.Errorf("trunk %s: %q is not one of our numbers", trunk, tried))
}

// Outbound decides on a local user's call to a number (see sip.Router):
// the number is normalised, checked against the blocked list, the caller's
// calling class and the limits, and routed by the first matching route.
func (t *Trunks) Outbound(ctx context.Context, user string, req *gosip.Request, local bool) (*sip.OutboundCall, error) {
	if len(t.plan.routes) == 0 {
		return nil, nil // no trunks to call out on: the proxy goes on as without
	}
	dialled, telephone := dialledNumber(req.Recipient)
	toTrunk := t.trunkHost(req)
	if !local && !telephone && !toTrunk {
		return nil, nil // a SIP address elsewhere, not a number
	}
	number, ok := t.plan.dial.Normalize(dialled)
	if !ok {
		switch {
		case toTrunk:
			return nil, t.refusal(403, "Forbidden", limitNoRoute, "calls to a trunk go through the dial plan")
		case telephone || strings.HasPrefix(clean(dialled), "+"):
			return nil, sipstatus.New(484, "Address Incomplete", fmt.Errorf("%q is not a number the dial plan knows", dialled))
		}
		return nil, nil
	}
	if err := t.allowed(ctx, user, number); err != nil {
		return nil, err
	}
	r := t.routeFor(number)
	if r == nil {
		t.m.limitRefusal.WithLabelValues(limitNoRoute).Inc()
		return nil, t.refusal(404, "Not Found", limitNoRoute, "no route for "+number)
	}
	release, limit, until := t.users.admit(user)
	if limit != "" {
		detail := fmt.Sprintf("limit %s (%d) reached", limit, t.limitValue(limit))
		t.refused(limit, user, detail+", calling "+number)
		t.rep.report(limit, user, detail, until)
		return nil, t.refusal(403, "Forbidden", limit, detail)
	}
	oc := &sip.OutboundCall{Dialled: unescape(dialled), Number: number, Route: r.re.String(), Release: release}
	for _, ti := range r.trunks {
		oc.Legs = append(oc.Legs, t.leg(ti, user, number, req))
	}
	return oc, nil
}

// allowed applies the blocked list (everyone) and the caller's class.
func (t *Trunks) allowed(ctx context.Context, user, number string) error {
	for _, re := range t.plan.blocked {
		if re.MatchString(number) {
			t.refused(limitBlocked, user, number)
			t.rep.report(limitBlocked, user, "calling blocked "+number, time.Time{})
			return t.refusal(403, "Forbidden", limitBlocked, fmt.Sprintf("%s is a blocked destination (limits.blocked)", number))
		}
	}
	class, err := t.cfg.Classes.CallingClass(ctx, user)
	if err != nil {
		return fmt.Errorf("calling class of %s: %w", user, err)
	}
	national := t.plan.dial.CountryCode != "" && strings.HasPrefix(number, "+"+t.plan.dial.CountryCode)
	var why string
	switch class {
	case ClassInternational:
	case ClassNational:
		if !national {
			why = "calling class national: no international calls"
		}
	case ClassInternal:
		why = "calling class internal: no calls outside the switch"
	default:
		why = fmt.Sprintf("calling class %q unknown: no calls outside the switch", class)
	}
	if why != "" {
		t.refused(limitClass, user, why+", calling "+number)
		t.rep.report(limitClass, user, why, time.Time{})
		return t.refusal(403, "Forbidden", limitClass, why)
	}
	return nil
}

// refused counts a refusal by limit.
func (t *Trunks) refused(limit, subject, detail string) {
	t.m.limitRefusal.WithLabelValues(limit).Inc()
	t.log.Debug("call refused", "limit", limit, "subject", subject, "detail", detail)
}

// refusal is the status error for a refused call, with a Warning (RFC
// 3261 §20.43; 399: miscellaneous) that says which limit.
func (t *Trunks) refusal(code int, reason, limit, text string) error {
	text = strings.ReplaceAll(text, `"`, "'")
	return sipstatus.New(code, reason, fmt.Errorf("%s: %s", limit, text),
		gosip.NewHeader("Warning", fmt.Sprintf(`399 %s "%s"`, t.cfg.Domain, text)))
}

func (t *Trunks) limitValue(limit string) int {
	if limit == limitPerHour {
		return t.cfg.Limits.ExternalCallsPerHour
	}
	return t.cfg.Limits.CallsPerUser
}

// routeFor returns the first route matching number, or nil.
func (t *Trunks) routeFor(number string) *route {
	for i := range t.plan.routes {
		if t.plan.routes[i].re.MatchString(number) {
			return &t.plan.routes[i]
		}
	}
	return nil
}

// trunkHost reports whether the request's next hop (its top Route, else
// the Request-URI) is one of the trunks: such calls must pass the dial
// plan and the limits like any other, whatever the URI looks like.
func (t *Trunks) trunkHost(req *gosip.Request) bool {
	host := req.Recipient.Host
	if r := req.Route(); r != nil {
		host = r.Address.Host
	}
	host = strings.Trim(host, "[]")
	if host == "" {
		return false
	}
	for _, ti := range t.plan.trunks {
		if strings.EqualFold(strings.Trim(ti.uri.Host, "[]"), host) {
			return true
		}
	}
	return false
}

// leg is how a call to number goes out over ti.
func (t *Trunks) leg(ti *trunkInfo, user, number string, req *gosip.Request) sip.TrunkLeg {
	ruri := gosip.Uri{Scheme: ti.uri.Scheme, User: number, Host: ti.uri.Host, Port: ti.uri.Port, UriParams: gosip.NewParams()}
	ruri.UriParams.Add("user", "phone")
	if ti.transport != "UDP" && ti.uri.Scheme != "sips" {
		ruri.UriParams.Add("transport", strings.ToLower(ti.transport))
	}
	identity := gosip.Uri{Scheme: ti.uri.Scheme, User: t.presented(ti, user, req), Host: ti.uri.Host, UriParams: gosip.NewParams()}
	name := ti.cfg.Name
	return sip.TrunkLeg{
		Trunk: name, URI: ruri, Dest: ti.dest, Transport: ti.transport, Identity: identity,
		Username: ti.cfg.Username, Password: ti.cfg.Password, Timeout: ti.cfg.Timeout,
		Acquire: func() (func(), bool) {
			rel, ok := ti.calls.take()
			if !ok {
				t.refused(limitMaxCalls, name, "calling "+number)
				t.rep.report(limitMaxCalls, name, fmt.Sprintf("trunk max_calls (%d) reached", ti.cfg.MaxCalls), time.Time{})
				return nil, false
			}
			t.m.calls.WithLabelValues(name).Inc()
			t.m.callsTotal.WithLabelValues(name, "out").Inc()
			return onceFunc(func() { rel(); t.m.calls.WithLabelValues(name).Dec() }), true
		},
	}
}

// presented is the number the trunk is shown as the caller: one of the
// caller's own numbers (the one it asked for in P-Preferred-Identity or
// From, if it is theirs, else its first), else the trunk's caller_id, else
// the caller's user name as it is.
func (t *Trunks) presented(ti *trunkInfo, user string, req *gosip.Request) string {
	dids := t.plan.dids[user]
	if len(dids) > 0 {
		var asked []gosip.Uri
		if h := req.GetHeader("P-Preferred-Identity"); h != nil {
			var u gosip.Uri
			if gosip.ParseUri(strings.Trim(strings.TrimSpace(h.Value()), "<>"), &u) == nil {
				asked = append(asked, u)
			}
		}
		asked = append(asked, req.From().Address)
		for _, u := range asked {
			d, _ := dialledNumber(u)
			if n, ok := t.plan.dial.Normalize(d); ok && slices.Contains(dids, n) {
				return n
			}
		}
		return dids[0]
	}
	if ti.callerID != "" {
		return ti.callerID
	}
	return user
}

func onceFunc(f func()) func() {
	var o sync.Once
	return func() { o.Do(f) }
}

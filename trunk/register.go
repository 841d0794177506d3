package trunk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	gosip "github.com/emiago/sipgo/sip"

	"github.com/switchboard/switchboard/sip"
)

// Transport is what the registration client needs of the SIP edge: to
// send a request from the switch's own listener (so the carrier answers,
// and calls, the address the switch listens on) and to know that address.
// *sip.Server satisfies it.
type Transport interface {
	Originate(ctx context.Context, req *gosip.Request, transport, dest string) (gosip.ClientTransaction, error)
	ContactURI(transport, dest string) (gosip.Uri, bool)
}

// Registration backoff: after a failure the next attempt waits minBackoff,
// doubling up to maxBackoff (each wait ±10 %), or the carrier's
// Retry-After when longer; a success resets it.
const (
	minBackoff = time.Second
	maxBackoff = 5 * time.Minute
	// unregisterTimeout bounds taking the registration back at shutdown.
	unregisterTimeout = 2 * time.Second
)

// registration keeps one trunk's outbound registration (RFC 3261 §10.2):
// one Call-ID and rising CSeq for its lifetime (§10.2.4), re-registering
// before the granted expiry, answering digest challenges.
type registration struct {
	t       *trunkInfo
	log     *slog.Logger
	m       *metrics
	store   stateStore
	expires time.Duration
	callID  string
	tag     string
	now     func() time.Time

	cseq uint32 // only the run goroutine touches it

	mu    sync.Mutex
	state State
	flow  netip.AddrPort // the address registered with, while in force
}

func newRegistration(ti *trunkInfo, cfg Config, log *slog.Logger, m *metrics, store stateStore) *registration {
	return &registration{t: ti, log: log.With("trunk", ti.cfg.Name), m: m, store: store, expires: cfg.RegisterExpires,
		callID: gosip.GenerateTagN(16) + "@switchboard", tag: gosip.GenerateTagN(10), now: time.Now,
		state: State{Trunk: ti.cfg.Name, State: StateRegistering}}
}

// snapshot returns the current state.
func (r *registration) snapshot() State {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state
}

// onFlow reports whether src (over transport) is where the registration
// in force was made with.
func (r *registration) onFlow(src netip.AddrPort, transport string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.flow.IsValid() && r.flow == netip.AddrPortFrom(src.Addr().Unmap(), src.Port()) &&
		strings.EqualFold(transport, r.t.transport) && r.now().Before(r.state.Expires)
}

// run registers, refreshes and retries until ctx ends, then takes the
// registration back.
func (r *registration) run(ctx context.Context, tr Transport) {
	backoff := minBackoff
	for {
		granted, flow, err := r.register(ctx, tr, r.expires)
		if ctx.Err() != nil {
			break
		}
		var wait time.Duration
		if err != nil {
			wait = jitter(backoff)
			if ra := retryAfter(err); ra > wait {
				wait = ra
			}
			backoff = min(2*backoff, maxBackoff)
			r.failed(err, wait)
		} else {
			backoff = minBackoff
			r.registered(granted, flow)
			wait = refreshIn(granted)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
			continue
		}
		break
	}
	r.unregister(tr)
}

// refreshIn is when to register again after a grant: a quarter of it
// before it runs out.
func refreshIn(granted time.Duration) time.Duration {
	return max(granted-granted/4, 500*time.Millisecond)
}

func jitter(d time.Duration) time.Duration {
	return d + time.Duration((rand.Float64()*0.2-0.1)*float64(d))
}

// registered records a grant.
func (r *registration) registered(granted time.Duration, flow netip.AddrPort) {
	now := r.now()
	r.mu.Lock()
	was := r.state.State
	r.state = State{Trunk: r.t.cfg.Name, State: StateRegistered, Expires: now.Add(granted), Updated: now}
	r.flow = flow
	s := r.state
	r.mu.Unlock()
	if was != StateRegistered {
		r.log.Info("trunk registered", "registrar", flow.String(), "expires", granted)
	} else {
		r.log.Debug("trunk registration refreshed", "expires", granted)
	}
	r.m.registered.WithLabelValues(s.Trunk).Set(1)
	r.m.expires.WithLabelValues(s.Trunk).Set(float64(s.Expires.Unix()))
	r.save(s)
}

// failed records a failed attempt; a registration still in force stays
// usable (its flow) until it expires.
func (r *registration) failed(err error, retry time.Duration) {
	now := r.now()
	r.mu.Lock()
	r.state.State, r.state.LastError, r.state.Updated = StateFailed, err.Error(), now
	if !now.Before(r.state.Expires) {
		r.state.Expires = time.Time{}
		r.flow = netip.AddrPort{}
	}
	s := r.state
	r.mu.Unlock()
	r.log.Warn("trunk registration failed", "error", err, "retry_in", retry.Round(10*time.Millisecond))
	r.m.registered.WithLabelValues(s.Trunk).Set(0)
	r.m.regFailures.WithLabelValues(s.Trunk).Inc()
	r.save(s)
}

func (r *registration) save(s State) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := r.store.write(ctx, s); err != nil {
		r.log.Warn("trunk state not stored", "error", err)
	}
}

// unregister takes a registration in force back (Expires: 0, RFC 3261
// §10.2.2), bounded by unregisterTimeout.
func (r *registration) unregister(tr Transport) {
	r.mu.Lock()
	active := r.flow.IsValid() && r.now().Before(r.state.Expires)
	r.mu.Unlock()
	if active {
		ctx, cancel := context.WithTimeout(context.Background(), unregisterTimeout)
		_, _, err := r.register(ctx, tr, 0)
		cancel()
		if err != nil {
			r.log.Info("trunk registration not taken back", "error", err)
		} else {
			r.log.Info("trunk unregistered")
		}
	}
	now := r.now()
	r.mu.Lock()
	r.state = State{Trunk: r.t.cfg.Name, State: StateStopped, Updated: now, LastError: r.state.LastError}
	r.flow = netip.AddrPort{}
	s := r.state
	r.mu.Unlock()
	r.m.registered.WithLabelValues(s.Trunk).Set(0)
	r.m.expires.WithLabelValues(s.Trunk).Set(0)
	r.save(s)
}

// statusErr is a carrier's final response other than 2xx.
type statusErr struct {
	code       int
	reason     string
	retryAfter time.Duration
}

func (e *statusErr) Error() string { return strconv.Itoa(e.code) + " " + e.reason }

func retryAfter(err error) time.Duration {
	var se *statusErr
	if errors.As(err, &se) {
		return se.retryAfter
	}
	return 0
}

// maxChallenges bounds the digest challenges answered per registration.
const maxChallenges = 2

// register sends one REGISTER asking for expires (0 removes the binding)
// and answers the carrier's challenges and 423. It returns the expiry
// granted and the address registered with.
func (r *registration) register(ctx context.Context, tr Transport, expires time.Duration) (time.Duration, netip.AddrPort, error) {
	dest, flow, err := r.resolve(ctx)
	if err != nil {
		return 0, netip.AddrPort{}, err
	}
	contact, ok := tr.ContactURI(r.t.transport, dest)
	if !ok {
		return 0, netip.AddrPort{}, fmt.Errorf("no %s listener to register from", r.t.transport)
	}
	contact.User = r.t.cfg.Username
	secs := int(expires / time.Second)
	var challenge *gosip.Response
	for answered := 0; ; {
		req := r.request(contact, secs)
		if challenge != nil {
			if err := sip.AnswerChallenge(req, challenge, r.t.cfg.Username, r.t.cfg.Password); err != nil {
				return 0, flow, err
			}
		}
		res, err := r.exchange(ctx, tr, req, dest)
		if err != nil {
			return 0, flow, err
		}
		switch code := res.StatusCode; {
		case code >= 200 && code < 300:
			if secs == 0 {
				return 0, flow, nil
			}
			granted := grantedExpiry(res, contact, secs)
			if granted <= 0 {
				return 0, flow, errors.New("the carrier granted no expiry")
			}
			return granted, flow, nil
		case (code == 401 || code == 407) && answered < maxChallenges:
			answered++
			challenge = res
		case code == 423 && secs > 0:
			// RFC 3261 §10.2.8: ask again with at least Min-Expires.
			minExp, err := strconv.Atoi(headerValue(res, "Min-Expires"))
			if err != nil || minExp <= secs || minExp > 7*86400 {
				return 0, flow, &statusErr{code: code, reason: res.Reason}
			}
			secs = minExp
		default:
			se := &statusErr{code: code, reason: res.Reason}
			if s, err := strconv.Atoi(headerValue(res, "Retry-After")); err == nil && s > 0 {
				se.retryAfter = min(time.Duration(s)*time.Second, maxBackoff)
			}
			if code == 401 || code == 407 {
				se.reason += " (credentials refused)"
			}
			return 0, flow, se
		}
	}
}

// resolve returns where the registration goes (host:port as the trunk's
// address says it) and that address resolved, for the flow.
func (r *registration) resolve(ctx context.Context) (string, netip.AddrPort, error) {
	dest := r.t.dest
	if ap, err := netip.ParseAddrPort(dest); err == nil {
		return dest, ap, nil
	}
	host, port, _ := net.SplitHostPort(dest)
	p, _ := strconv.Atoi(port)
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(ips) == 0 {
		return "", netip.AddrPort{}, fmt.Errorf("resolve %s: %w", host, err)
	}
	ap := netip.AddrPortFrom(ips[0].Unmap(), uint16(p))
	return ap.String(), ap, nil
}

// request builds the next REGISTER (a new CSeq) for the trunk's AOR,
// sip:username@host, with Request-URI the registrar's domain (§10.2).
func (r *registration) request(contact gosip.Uri, secs int) *gosip.Request {
	t := r.t
	ruri := gosip.Uri{Scheme: t.uri.Scheme, Host: t.uri.Host, Port: t.uri.Port, UriParams: gosip.NewParams()}
	if t.transport != "UDP" && t.uri.Scheme != "sips" {
		ruri.UriParams.Add("transport", strings.ToLower(t.transport))
	}
	req := gosip.NewRequest(gosip.REGISTER, ruri)
	aor := gosip.Uri{Scheme: t.uri.Scheme, User: t.cfg.Username, Host: t.uri.Host}
	from := &gosip.FromHeader{Address: aor, Params: gosip.NewParams()}
	from.Params.Add("tag", r.tag)
	to := &gosip.ToHeader{Address: aor, Params: gosip.NewParams()}
	cid := gosip.CallIDHeader(r.callID)
	r.cseq++
	mf := gosip.MaxForwardsHeader(70)
	exp := gosip.ExpiresHeader(secs)
	req.AppendHeader(from)
	req.AppendHeader(to)
	req.AppendHeader(&cid)
	req.AppendHeader(&gosip.CSeqHeader{SeqNo: r.cseq, MethodName: gosip.REGISTER})
	req.AppendHeader(&mf)
	req.AppendHeader(&gosip.ContactHeader{Address: *contact.Clone()})
	req.AppendHeader(&exp)
	req.AppendHeader(gosip.NewHeader("User-Agent", "switchboard"))
	req.SetBody(nil)
	return req
}

// exchange sends req and waits, at most the trunk's Timeout, for its final
// response.
func (r *registration) exchange(ctx context.Context, tr Transport, req *gosip.Request, dest string) (*gosip.Response, error) {
	tx, err := tr.Originate(ctx, req, r.t.transport, dest)
	if err != nil {
		return nil, fmt.Errorf("send REGISTER: %w", err)
	}
	defer tx.Terminate()
	timer := time.NewTimer(r.t.cfg.Timeout)
	defer timer.Stop()
	for {
		select {
		case res := <-tx.Responses():
			if res.StatusCode >= 200 {
				return res, nil
			}
		case <-tx.Done():
			if err := tx.Err(); err != nil {
				return nil, fmt.Errorf("REGISTER: %w", err)
			}
			return nil, errors.New("REGISTER: transaction ended without a response")
		case <-timer.C:
			return nil, fmt.Errorf("no response to REGISTER within %s", r.t.cfg.Timeout)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// grantedExpiry reads the expiry granted to our contact (RFC 3261
// §10.2.4): its Contact's expires parameter in the 200, else the Expires
// header, else what was asked.
func grantedExpiry(res *gosip.Response, contact gosip.Uri, asked int) time.Duration {
	var first string
	for _, h := range res.GetHeaders("Contact") {
		c, ok := h.(*gosip.ContactHeader)
		if !ok {
			continue
		}
		v, ok := c.Params.Get("expires")
		if !ok {
			continue
		}
		if first == "" {
			first = v
		}
		if c.Address.User == contact.User && strings.EqualFold(c.Address.Host, contact.Host) && c.Address.Port == contact.Port {
			return seconds(v, asked)
		}
	}
	if v := headerValue(res, "Expires"); v != "" {
		return seconds(v, asked)
	}
	if first != "" {
		return seconds(first, asked)
	}
	return time.Duration(asked) * time.Second
}

func seconds(v string, fallback int) time.Duration {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 {
		n = fallback
	}
	return time.Duration(n) * time.Second
}

func headerValue(res *gosip.Response, name string) string {
	if h := res.GetHeader(name); h != nil {
		return strings.TrimSpace(h.Value())
	}
	return ""
}

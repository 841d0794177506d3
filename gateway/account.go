package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// account is a signed-in user: the SIP registration the gateway keeps for
// it while at least one tab is signed in as that user.
type account struct {
	g       *Gateway
	user    string
	token   string // the user part of our Contact: routes calls to this account
	contact sip.Uri
	log     *slog.Logger

	regMu   sync.Mutex // one REGISTER transaction at a time; guards what follows
	callID  string
	fromTag string
	cseq    uint32

	mu   sync.Mutex
	pass string // copy of the password for calls and messages

	// guarded by g.mu
	tabs    map[*tab]bool
	pending int // sign-ins in progress
	stop    context.CancelFunc
	done    chan struct{} // closed when the refresh loop has unregistered
}

func (a *account) aor() string { return "sip:" + a.user + "@" + a.g.cfg.Domain }

func (a *account) creds() credentials {
	a.mu.Lock()
	defer a.mu.Unlock()
	return credentials{user: a.user, password: a.pass}
}

// register sends a REGISTER for our Contact with the given credentials
// (RFC 3261 §10.2) and returns the expiry the registrar granted. Expires 0
// removes the binding (§10.2.2). A 401 after our credentials, or a 403,
// is ErrBadCredentials.
func (a *account) register(ctx context.Context, password string, expires time.Duration) (time.Duration, error) {
	a.regMu.Lock()
	defer a.regMu.Unlock()
	aor := sip.Uri{Scheme: "sip", User: a.user, Host: a.g.cfg.Domain}
	for attempt := 0; attempt < 2; attempt++ {
		req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: a.g.cfg.Domain})
		from := &sip.FromHeader{Address: aor, Params: sip.NewParams()}
		from.Params.Add("tag", a.fromTag)
		req.AppendHeader(from)
		req.AppendHeader(&sip.ToHeader{Address: aor, Params: sip.NewParams()})
		cid := sip.CallIDHeader(a.callID)
		req.AppendHeader(&cid)
		a.cseq++
		req.AppendHeader(&sip.CSeqHeader{SeqNo: a.cseq, MethodName: sip.REGISTER})
		req.AppendHeader(&sip.ContactHeader{Address: *a.contact.Clone()})
		req.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(int(expires/time.Second))))
		req.AppendHeader(sip.NewHeader("Allow", allowHeader))
		res, err := a.g.sip.do(ctx, req, &credentials{user: a.user, password: password})
		a.cseq = req.CSeq().SeqNo
		if err != nil {
			return 0, fmt.Errorf("REGISTER: %w", err)
		}
		switch {
		case res.IsSuccess():
			if expires == 0 {
				return 0, nil
			}
			return grantedExpiry(res, a.contact, expires), nil
		case res.StatusCode == 401 || res.StatusCode == 407 || res.StatusCode == 403:
			return 0, ErrBadCredentials
		case res.StatusCode == 423 && attempt == 0:
			// RFC 3261 §10.2.8: retry with at least Min-Expires.
			if h := res.GetHeader("Min-Expires"); h != nil {
				if n, err := strconv.Atoi(h.Value()); err == nil && time.Duration(n)*time.Second > expires {
					expires = time.Duration(n) * time.Second
					continue
				}
			}
			return 0, fmt.Errorf("REGISTER: %d %s", res.StatusCode, res.Reason)
		default:
			return 0, fmt.Errorf("REGISTER: %d %s", res.StatusCode, res.Reason)
		}
	}
	return 0, errors.New("REGISTER: no usable expiry")
}

// grantedExpiry reads the expiry of our binding in a 200 to REGISTER
// (RFC 3261 §10.2.4): the Contact's expires parameter, else Expires.
func grantedExpiry(res *sip.Response, ours sip.Uri, asked time.Duration) time.Duration {
	for _, h := range res.GetHeaders("Contact") {
		ch, ok := h.(*sip.ContactHeader)
		if !ok || ch.Address.User != ours.User || ch.Address.Host != ours.Host || ch.Address.Port != ours.Port {
			continue
		}
		if v, ok := ch.Params.Get("expires"); ok {
			if n, err := strconv.Atoi(v); err == nil && n > 0 {
				return time.Duration(n) * time.Second
			}
		}
	}
	if h := res.GetHeader("Expires"); h != nil {
		if n, err := strconv.Atoi(h.Value()); err == nil && n > 0 {
			return time.Duration(n) * time.Second
		}
	}
	return asked
}

// refresh keeps the registration alive until ctx ends, then removes it.
// The gateway owns the goroutine.
func (a *account) refresh(ctx context.Context, granted time.Duration) {
	defer close(a.done)
	wait := granted / 2
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			uctx, cancel := context.WithTimeout(context.Background(), sipTimeout)
			a.mu.Lock()
			pw := a.pass
			a.mu.Unlock()
			if _, err := a.register(uctx, pw, 0); err != nil {
				a.log.Debug("unregister failed", "error", err)
			} else {
				a.log.Info("unregistered")
			}
			cancel()
			return
		case <-t.C:
		}
		a.mu.Lock()
		pw := a.pass
		a.mu.Unlock()
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		g, err := a.register(rctx, pw, a.g.cfg.RegisterExpires)
		cancel()
		switch {
		case err == nil:
			wait = g / 2
		case ctx.Err() != nil:
			wait = 0
		default:
			a.log.Warn("registration refresh failed", "error", err)
			a.g.tellUser(a, serverMsg{Type: msgError, Code: errUnavailable, Message: "registration refresh failed: " + err.Error()})
			wait = 10 * time.Second
		}
	}
}

// --- sign-ins: the tabs of an account ---

// joinAccount returns the account of user, creating it, and counts a
// sign-in in progress on it.
func (g *Gateway) joinAccount(user string) (*account, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil, ErrClosed
	}
	a := g.accounts[user]
	if a == nil {
		token := "wrtc-" + randomID(8)
		a = &account{
			g: g, user: user, token: token,
			contact: g.sip.contactURI(token),
			log:     g.log.With("user", user),
			callID:  randomID(12),
			fromTag: sip.GenerateTagN(16),
			tabs:    map[*tab]bool{},
		}
		g.accounts[user] = a
		g.byToken[token] = a
	}
	if len(a.tabs)+a.pending >= g.cfg.MaxTabsPerUser {
		return nil, fmt.Errorf("at most %d connections per user", g.cfg.MaxTabsPerUser)
	}
	a.pending++
	return a, nil
}

// attachTab completes a sign-in: the tab joins the account, whose refresh
// loop starts with the first tab.
func (g *Gateway) attachTab(a *account, t *tab, granted time.Duration) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	a.pending--
	if g.closed {
		g.dropAccountLocked(a)
		return false
	}
	a.tabs[t] = true
	t.mu.Lock()
	t.acct = a
	t.mu.Unlock()
	if a.stop == nil {
		ctx, cancel := context.WithCancel(context.Background())
		a.stop = cancel
		a.done = make(chan struct{})
		g.regWG.Add(1)
		go func() {
			defer g.regWG.Done()
			a.refresh(ctx, granted)
		}()
		a.log.Info("registered", "contact", a.contact.String(), "expires", granted)
	}
	return true
}

// releaseAccount ends a sign-in in progress (t nil) or a tab's sign-in;
// an account with neither is unregistered and forgotten.
func (g *Gateway) releaseAccount(a *account, t *tab) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if t == nil {
		a.pending--
	} else {
		delete(a.tabs, t)
	}
	g.dropAccountLocked(a)
}

func (g *Gateway) dropAccountLocked(a *account) {
	if len(a.tabs) > 0 || a.pending > 0 {
		return
	}
	if g.accounts[a.user] == a {
		delete(g.accounts, a.user)
	}
	delete(g.byToken, a.token)
	if a.stop != nil {
		a.stop() // the refresh loop unregisters
	}
}

package admin

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"math"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// sessionCookie names the console's session cookie.
const sessionCookie = "switchboard_admin"

// csrfHeader carries the session's CSRF token on requests that change
// anything (the cookie alone is not enough: a page of another site can
// make the browser send it).
const csrfHeader = "X-CSRF-Token"

// maxSessions bounds the sign-ins kept (each is a successful password
// check, so only admins make them).
const maxSessions = 10000

type session struct {
	admin   string
	csrf    string
	expires time.Time
}

// sessions are the console's sign-ins, in memory: a restart signs every
// console out.
type sessions struct {
	ttl time.Duration
	mu  sync.Mutex
	m   map[string]*session // by session ID
}

func newSessions(ttl time.Duration) *sessions {
	return &sessions{ttl: ttl, m: map[string]*session{}}
}

func randomID() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (s *sessions) create(admin string, now time.Time) (id string, ss *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= maxSessions {
		s.sweepLocked(now)
		for k := range s.m {
			if len(s.m) < maxSessions {
				break
			}
			delete(s.m, k)
		}
	}
	id = randomID()
	ss = &session{admin: admin, csrf: randomID(), expires: now.Add(s.ttl)}
	s.m[id] = ss
	return id, ss
}

func (s *sessions) get(id string, now time.Time) (*session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.m[id]
	if !ok || now.After(ss.expires) {
		return nil, false
	}
	return ss, true
}

func (s *sessions) remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
}

func (s *sessions) sweep(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked(now)
}

func (s *sessions) sweepLocked(now time.Time) {
	for k, ss := range s.m {
		if now.After(ss.expires) {
			delete(s.m, k)
		}
	}
}

// apiError is the body of every error answer: {"error": ..., "code": ...}.
type apiError struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client may have gone
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, apiError{Error: msg, Code: code})
}

// remoteAddr is the client's address of an HTTP request.
func remoteAddr(r *http.Request) netip.AddrPort {
	ap, _ := netip.ParseAddrPort(r.RemoteAddr)
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// refuseBanned answers 429 (RFC 6585 §4) with Retry-After when the Guard
// refuses the client (for user, when not ""), and reports whether it did.
func (c *Console) refuseBanned(w http.ResponseWriter, r *http.Request, user string) bool {
	left := c.cfg.Guard.BannedFor(remoteAddr(r), user)
	if left <= 0 {
		return false
	}
	w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(left.Seconds()))))
	writeError(w, http.StatusTooManyRequests, "banned", "too many failed sign-ins; try again later")
	return true
}

// sameOrigin reports whether a request that carries an Origin header comes
// from a page of this server (RFC 6454): a browser sends Origin on every
// POST, PUT and DELETE, so a cross-site form or fetch is told apart.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true // not a browser's cross-origin request
	}
	u, err := url.Parse(o)
	if err != nil {
		return false
	}
	return strings.EqualFold(u.Host, r.Host)
}

// principal is who makes an API request.
type principal struct {
	admin   string
	session *session // nil for a token
}

type ctxKey struct{}

func (c *Console) principal(r *http.Request) principal {
	p, _ := r.Context().Value(ctxKey{}).(principal)
	return p
}

// authenticated wraps an API handler: a Bearer token, or the session
// cookie with (for requests that change anything) its CSRF token.
func (c *Console) authenticated(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if c.refuseBanned(w, r, "") {
			return
		}
		p, ok := c.authenticate(w, r)
		if !ok {
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, p)))
	}
}

func (c *Console) authenticate(w http.ResponseWriter, r *http.Request) (principal, bool) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, _ := strings.Cut(h, " ")
		if !strings.EqualFold(scheme, "Bearer") {
			w.Header().Set("WWW-Authenticate", `Bearer realm="switchboard"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "want Authorization: Bearer TOKEN")
			return principal{}, false
		}
		admin, ok := c.accounts.TokenOwner(r.Context(), strings.TrimSpace(tok))
		if !ok {
			c.cfg.Guard.Fail(remoteAddr(r), "")
			w.Header().Set("WWW-Authenticate", `Bearer realm="switchboard", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, "invalid_token", "the token is not valid")
			return principal{}, false
		}
		return principal{admin: admin}, true
	}
	ck, err := r.Cookie(sessionCookie)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="switchboard"`)
		writeError(w, http.StatusUnauthorized, "unauthorized", "sign in, or give Authorization: Bearer TOKEN")
		return principal{}, false
	}
	ss, ok := c.sessions.get(ck.Value, c.now())
	if !ok || !c.accountExists(r.Context(), ss.admin) {
		c.sessions.remove(ck.Value)
		writeError(w, http.StatusUnauthorized, "session_expired", "the sign-in has expired; sign in again")
		return principal{}, false
	}
	if changes(r.Method) {
		if !sameOrigin(r) {
			writeError(w, http.StatusForbidden, "cross_origin", "requests from other sites are refused")
			return principal{}, false
		}
		if subtle.ConstantTimeCompare([]byte(r.Header.Get(csrfHeader)), []byte(ss.csrf)) != 1 {
			writeError(w, http.StatusForbidden, "csrf", "missing or wrong "+csrfHeader+" header")
			return principal{}, false
		}
	}
	return principal{admin: ss.admin, session: ss}, true
}

func (c *Console) accountExists(ctx context.Context, name string) bool {
	var n int
	err := c.cfg.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM admin_accounts WHERE name = ?`, name).Scan(&n)
	return err == nil && n > 0
}

// changes reports whether a request of this method may change state.
func changes(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

// sessionInfo is what the console learns of its sign-in.
type sessionInfo struct {
	Name    string `json:"name"`
	CSRF    string `json:"csrf"`
	Domain  string `json:"domain"`
	Version string `json:"version"`
}

// handleSession is /admin/session: POST signs in ({"name", "password"}),
// GET tells who is signed in, DELETE signs out.
func (c *Console) handleSession(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPost:
		c.signIn(w, r)
	case http.MethodGet:
		p, ok := c.authenticate(w, r)
		if !ok {
			return
		}
		if p.session == nil {
			writeError(w, http.StatusBadRequest, "no_session", "a token has no console session")
			return
		}
		writeJSON(w, http.StatusOK, c.info(p.admin, p.session))
	case http.MethodDelete:
		if _, ok := c.authenticate(w, r); !ok {
			return
		}
		if ck, err := r.Cookie(sessionCookie); err == nil {
			c.sessions.remove(ck.Value)
		}
		http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
			Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed here")
	}
}

func (c *Console) info(admin string, ss *session) sessionInfo {
	return sessionInfo{Name: admin, CSRF: ss.csrf, Domain: c.cfg.Domain, Version: c.cfg.Version}
}

func (c *Console) signIn(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		writeError(w, http.StatusForbidden, "cross_origin", "sign-ins from other sites are refused")
		return
	}
	var in struct {
		Name     string `json:"name"`
		Password string `json:"password"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&in); err != nil || in.Name == "" {
		writeError(w, http.StatusBadRequest, "bad_request", `want {"name": ..., "password": ...}`)
		return
	}
	if c.refuseBanned(w, r, in.Name) {
		return
	}
	src := remoteAddr(r)
	if !c.accounts.Check(r.Context(), in.Name, in.Password) {
		c.cfg.Guard.Fail(src, in.Name)
		c.log.Info("console sign-in failed", "admin", in.Name, "source", src.String())
		writeError(w, http.StatusUnauthorized, "wrong_credentials", "wrong name or password")
		return
	}
	c.cfg.Guard.Succeed(src, in.Name)
	id, ss := c.sessions.create(in.Name, c.now())
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: id, Path: "/", HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode, MaxAge: int(c.cfg.SessionTTL.Seconds())})
	c.log.Info("console sign-in", "admin", in.Name, "source", src.String())
	writeJSON(w, http.StatusOK, c.info(in.Name, ss))
}

package registrar

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// Digest algorithms offered in challenges (RFC 8760 §2).
const (
	AlgMD5    = "MD5"
	AlgSHA256 = "SHA-256"
)

// UserLookup finds a user by name; it returns ErrUnknownUser when there is none.
type UserLookup interface {
	Lookup(ctx context.Context, name string) (User, error)
}

// Authenticator issues digest challenges and verifies credentials
// (RFC 3261 §22, RFC 7616, RFC 8760). Nonces are stateless — an HMAC over
// their issue time — so they cost no memory until used; the nonce counts of
// used nonces are remembered for one nonce lifetime to refuse replays.
type Authenticator struct {
	realm      string
	algorithms []string
	ttl        time.Duration
	users      UserLookup
	guard      *Guard
	md5Only    []string // User-Agent substrings offered MD5 alone
	sha256UA   []string // User-Agent substrings offered SHA-256 first, then MD5
	secret     [32]byte
	now        func() time.Time

	ncMu     sync.Mutex
	ncCur    map[string]uint32 // nonce -> highest nc seen, this generation
	ncPrev   map[string]uint32
	ncRotate time.Time
}

// NewAuthenticator returns an Authenticator for realm. algorithms lists the
// digest algorithms offered, in order of preference; empty means MD5 then
// SHA-256 (see Config.Algorithms for why). guard may be nil (no limits).
func NewAuthenticator(realm string, algorithms []string, nonceTTL time.Duration, users UserLookup, guard *Guard) (*Authenticator, error) {
	if len(algorithms) == 0 {
		algorithms = []string{AlgMD5, AlgSHA256}
	}
	for _, a := range algorithms {
		if a != AlgMD5 && a != AlgSHA256 {
			return nil, fmt.Errorf("digest algorithm %q not supported (use MD5 or SHA-256)", a)
		}
	}
	if nonceTTL <= 0 {
		nonceTTL = 5 * time.Minute
	}
	a := &Authenticator{
		realm: realm, algorithms: algorithms, ttl: nonceTTL, users: users, guard: guard,
		now: time.Now, ncCur: make(map[string]uint32), ncPrev: make(map[string]uint32),
	}
	if _, err := rand.Read(a.secret[:]); err != nil {
		return nil, fmt.Errorf("nonce secret: %w", err)
	}
	a.ncRotate = a.now().Add(nonceTTL)
	return a, nil
}

// Trust exempts one source from failure bans (see Guard.Trust).
func (a *Authenticator) Trust(source netip.AddrPort) {
	if a.guard != nil {
		a.guard.Trust(source)
	}
}

// SetMD5Only sets the User-Agent substrings (case-insensitive) of UAs that
// fail on any challenge but MD5: they are offered MD5 alone. Call before use.
func (a *Authenticator) SetMD5Only(userAgents []string) { a.md5Only = userAgents }

// SetSHA256UserAgents sets the User-Agent substrings (case-insensitive) of
// UAs known to choose correctly among several challenges (RFC 8760 §2.4):
// they are offered SHA-256 first, then MD5, whatever the algorithms
// offered to everyone else. Call before use.
func (a *Authenticator) SetSHA256UserAgents(userAgents []string) { a.sha256UA = userAgents }

// Realm returns the digest realm.
func (a *Authenticator) Realm() string { return a.realm }

// nonce layout: 8 bytes issue time (unix ns) | 16 bytes HMAC-SHA256 prefix.
const nonceRawLen = 8 + 16

func (a *Authenticator) newNonce() string {
	var raw [nonceRawLen]byte
	binary.BigEndian.PutUint64(raw[:8], uint64(a.now().UnixNano()))
	a.sign(raw[:8], raw[8:])
	return base64.RawURLEncoding.EncodeToString(raw[:])
}

func (a *Authenticator) sign(msg, out []byte) {
	m := hmac.New(sha256.New, a.secret[:])
	m.Write(msg)
	sum := m.Sum(nil)
	copy(out, sum)
}

// checkNonce reports whether the nonce is ours and, if so, whether it expired.
func (a *Authenticator) checkNonce(n string) (ours, fresh bool) {
	raw, err := base64.RawURLEncoding.DecodeString(n)
	if err != nil || len(raw) != nonceRawLen {
		return false, false
	}
	var want [16]byte
	a.sign(raw[:8], want[:])
	if !hmac.Equal(want[:], raw[8:]) {
		return false, false
	}
	issued := time.Unix(0, int64(binary.BigEndian.Uint64(raw[:8])))
	age := a.now().Sub(issued)
	return true, age >= -time.Minute && age <= a.ttl
}

// Challenge returns the WWW-Authenticate (proxy false) or Proxy-Authenticate
// (proxy true) header values, one per offered algorithm, most preferred first
// (RFC 8760 §2.4), all with qop=auth and the same fresh nonce.
func (a *Authenticator) Challenge(proxy, stale bool) []sip.Header {
	return a.challenge(proxy, stale, a.algorithms)
}

// challengeFor is Challenge for a request: a UA whose User-Agent is on the
// MD5-only list is offered MD5 alone.
func (a *Authenticator) challengeFor(req *sip.Request, proxy, stale bool) []sip.Header {
	if h := req.GetHeader("User-Agent"); h != nil {
		ua := strings.ToLower(h.Value())
		switch {
		case uaMatches(ua, a.sha256UA):
			return a.challenge(proxy, stale, []string{AlgSHA256, AlgMD5})
		case uaMatches(ua, a.md5Only):
			return a.challenge(proxy, stale, []string{AlgMD5})
		}
	}
	return a.Challenge(proxy, stale)
}

// uaMatches reports whether the (lower-case) User-Agent ua contains one of
// the substrings.
func uaMatches(ua string, substrings []string) bool {
	for _, q := range substrings {
		if q != "" && strings.Contains(ua, strings.ToLower(q)) {
			return true
		}
	}
	return false
}

func (a *Authenticator) challenge(proxy, stale bool, algorithms []string) []sip.Header {
	name := "WWW-Authenticate"
	if proxy {
		name = "Proxy-Authenticate"
	}
	nonce := a.newNonce()
	hdrs := make([]sip.Header, 0, len(algorithms))
	for _, alg := range algorithms {
		v := `Digest realm="` + a.realm + `", nonce="` + nonce + `", algorithm=` + alg + `, qop="auth"`
		if stale {
			v += ", stale=true"
		}
		hdrs = append(hdrs, sip.NewHeader(name, v))
	}
	return hdrs
}

// Verify checks the request's digest credentials (Authorization, or
// Proxy-Authorization when proxy is true) and returns the authenticated user
// name. source is the request's network source, used to count failures.
//
// Errors: ErrBanned (the Guard refuses the source, or the user from this
// source), ErrNoCredentials, ErrStaleNonce (re-challenge with stale=true),
// ErrBadCredentials (re-challenge; counted against the source and the user
// name given).
func (a *Authenticator) Verify(ctx context.Context, req *sip.Request, proxy bool, source netip.AddrPort) (string, error) {
	if a.guard.Banned(source, "") {
		return "", ErrBanned
	}
	name := "Authorization"
	if proxy {
		name = "Proxy-Authorization"
	}
	var cred *digest.Credentials
	for _, h := range req.GetHeaders(name) {
		c, err := digest.ParseCredentials(h.Value())
		if err != nil {
			continue
		}
		if c.Realm == a.realm {
			cred = c
			break
		}
	}
	if cred == nil {
		return "", ErrNoCredentials
	}
	if a.guard.Banned(source, cred.Username) {
		return "", ErrBanned
	}
	ours, fresh := a.checkNonce(cred.Nonce)
	if !ours || !fresh {
		// A nonce we cannot verify was issued by an earlier run of the
		// switch or has expired: either way the client should simply retry
		// with a new one (RFC 7616 §3.3 stale).
		return "", ErrStaleNonce
	}
	user, err := a.users.Lookup(ctx, cred.Username)
	if err != nil && !errors.Is(err, ErrUnknownUser) {
		return "", err
	}
	alg := strings.ToUpper(cred.Algorithm)
	if alg == "" {
		alg = AlgMD5
	}
	ha1, ok := user.HA1(alg)
	if !ok || !a.offers(alg) {
		return "", a.fail(source, cred.Username, fmt.Errorf("%w: user %q, algorithm %q", ErrBadCredentials, cred.Username, alg))
	}
	chal := &digest.Challenge{Realm: a.realm, Nonce: cred.Nonce, Algorithm: alg}
	if cred.QOP != "" {
		if cred.QOP != "auth" || cred.Cnonce == "" || cred.Nc <= 0 {
			return "", a.fail(source, cred.Username, fmt.Errorf("%w: unsupported qop %q", ErrBadCredentials, cred.QOP))
		}
		chal.QOP = []string{"auth"}
	}
	want, err := digest.Digest(chal, digest.Options{
		Method: string(req.Method), URI: cred.URI, A1: ha1, Cnonce: cred.Cnonce, Count: cred.Nc,
	})
	if err != nil {
		return "", a.fail(source, cred.Username, fmt.Errorf("%w: %v", ErrBadCredentials, err))
	}
	if !constantTimeEqual(want.Response, strings.ToLower(cred.Response)) {
		return "", a.fail(source, cred.Username, fmt.Errorf("%w: wrong digest for user %q", ErrBadCredentials, cred.Username))
	}
	if cred.QOP != "" && !a.useNonceCount(cred.Nonce, uint32(cred.Nc)) {
		// RFC 7616 §3.4: a repeated nonce count is a replay.
		return "", ErrStaleNonce
	}
	a.guard.Succeed(source, user.Name)
	return user.Name, nil
}

// offers reports whether alg is offered to some UA (and so accepted).
func (a *Authenticator) offers(alg string) bool {
	return slices.Contains(a.algorithms, alg) || alg == AlgSHA256 && len(a.sha256UA) > 0 || alg == AlgMD5 && len(a.md5Only) > 0
}

// fail counts a failed digest against source and the user name given.
func (a *Authenticator) fail(source netip.AddrPort, user string, err error) error {
	a.guard.Fail(source, user)
	return err
}

// useNonceCount records nc for nonce and reports whether it is higher than
// any count seen before with that nonce.
func (a *Authenticator) useNonceCount(nonce string, nc uint32) bool {
	a.ncMu.Lock()
	defer a.ncMu.Unlock()
	if now := a.now(); now.After(a.ncRotate) {
		// Two generations of one nonce lifetime each cover every nonce
		// that can still verify.
		a.ncPrev, a.ncCur = a.ncCur, make(map[string]uint32, len(a.ncCur))
		a.ncRotate = now.Add(a.ttl)
	}
	last, ok := a.ncCur[nonce]
	if !ok {
		last, ok = a.ncPrev[nonce]
	}
	if ok && nc <= last {
		return false
	}
	a.ncCur[nonce] = nc
	return true
}

func constantTimeEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// Authorize is Verify with its errors turned into the response to send:
// 401 (or 407 when proxy) with a fresh challenge — stale=true for an expired
// nonce — or 403 for a refused source.
func (a *Authenticator) Authorize(ctx context.Context, req *sip.Request, proxy bool, source netip.AddrPort) (string, error) {
	user, err := a.Verify(ctx, req, proxy, source)
	if err == nil {
		return user, nil
	}
	code, reason := 401, "Unauthorized"
	if proxy {
		code, reason = 407, "Proxy Authentication Required"
	}
	switch {
	case errors.Is(err, ErrBanned):
		return "", statusErr(403, "Forbidden", err)
	case errors.Is(err, ErrNoCredentials), errors.Is(err, ErrBadCredentials):
		return "", statusErr(code, reason, err, a.challengeFor(req, proxy, false)...)
	case errors.Is(err, ErrStaleNonce):
		return "", statusErr(code, reason, err, a.challengeFor(req, proxy, true)...)
	}
	return "", err
}

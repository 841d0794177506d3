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
	"hash"
	"hash/maphash"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard/switchboard/internal/siphdr"
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
	macs       sync.Pool // *nonceMAC: HMAC-SHA256 keyed with secret, for nonces
	now        func() time.Time

	ncMu      sync.Mutex
	ncCur     *ncTable // nonce -> highest nc seen, this generation
	ncPrev    *ncTable
	ncSeed    maphash.Seed // of the nonce ids' hashes in the tables, and of nonceSalt
	ncRotate  time.Time
	ncCurFrom time.Time // when ncCur began
	ncFloor   time.Time // nonces issued before are stale (nonce_count.go)
	maxCounts int       // maxNonceCounts; smaller in tests

	recentMu sync.Mutex
	recent   *[recentChallenges]recentChallenge // challenges by request (nonce_count.go)
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
		now: time.Now, ncSeed: maphash.MakeSeed(),
	}
	if _, err := rand.Read(a.secret[:]); err != nil {
		return nil, fmt.Errorf("nonce secret: %w", err)
	}
	a.macs.New = func() any { return &nonceMAC{h: hmac.New(sha256.New, a.secret[:])} }
	a.setMaxCounts(maxNonceCounts)
	a.ncCurFrom = a.now()
	a.ncRotate = a.ncCurFrom.Add(nonceTTL)
	a.recent = new([recentChallenges]recentChallenge)
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

// nonce layout: 8 bytes issue time (unix ns) | 8 bytes salt | 16 bytes
// HMAC-SHA256 prefix of the first 16.
const nonceRawLen = 8 + 8 + 16

// nonceID is what tells one of our nonces from another: its issue time and
// salt (the MAC only proves it ours). The nonce count of a used nonce is
// kept under a hash of it (ncTable).
type nonceID [16]byte

// nonceIDOf returns the id of a nonce that checkNonce accepted.
func nonceIDOf(n string) nonceID {
	var raw [nonceRawLen + 3]byte
	_, _ = base64.RawURLEncoding.Decode(raw[:], []byte(n))
	return nonceID(raw[:16])
}

// newNonce returns a nonce for the request identified by salt
// (Authenticator.nonceSalt): the same nonce for a retransmission of a
// request challenged moments ago (see issueTime).
func (a *Authenticator) newNonce(salt uint64) string {
	issued := a.issueTime(salt)
	var raw [nonceRawLen]byte
	binary.BigEndian.PutUint64(raw[:8], uint64(issued))
	binary.BigEndian.PutUint64(raw[8:16], salt)
	a.sign(raw[:16], raw[16:])
	return base64.RawURLEncoding.EncodeToString(raw[:])
}

// nonceMAC is a pooled HMAC with the buffers that feed it and take its
// sum: a hash.Hash is written through an interface, so the caller's
// arrays passed to Write and Sum were each allocated (two allocations
// per nonce issued or checked).
type nonceMAC struct {
	h       hash.Hash
	in, out []byte
}

// sign writes the first len(out) bytes of HMAC-SHA256(secret, msg).
func (a *Authenticator) sign(msg, out []byte) {
	m := a.macs.Get().(*nonceMAC)
	m.h.Reset()
	m.in = append(m.in[:0], msg...)
	m.h.Write(m.in)
	m.out = m.h.Sum(m.out[:0])
	copy(out, m.out)
	a.macs.Put(m)
}

// checkNonce reports whether the nonce is ours and, if so, whether it expired.
func (a *Authenticator) checkNonce(n string) (ours, fresh bool) {
	var raw [nonceRawLen + 3]byte
	if base64.RawURLEncoding.DecodedLen(len(n)) != nonceRawLen {
		return false, false
	}
	if k, err := base64.RawURLEncoding.Decode(raw[:], []byte(n)); err != nil || k != nonceRawLen {
		return false, false
	}
	var want [16]byte
	a.sign(raw[:16], want[:])
	if !hmac.Equal(want[:], raw[16:nonceRawLen]) {
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
	return a.challenge(proxy, stale, a.algorithms, 0)
}

// ChallengeRequest is what Authorize answers a request without credentials
// from source: the challenge headers (WWW-Authenticate, or
// Proxy-Authenticate when proxy), or ok false when the source is banned
// (Authorize's 403). The request is named by what siphdr.RequestID hashes
// and its User-Agent; for the stateless challenge of a request read
// without sipgo's parser (sip's fast path). The answer is Authorize's for
// that request: the same nonce while it is retransmitted.
func (a *Authenticator) ChallengeRequest(id siphdr.ID, userAgent string, proxy bool, source netip.AddrPort) (hdrs []sip.Header, ok bool) {
	if a.guard.Banned(source, "") {
		return nil, false
	}
	return a.challengeUA(userAgent, proxy, false, id.Sum(a.ncSeed)), true
}

// challengeUA is Challenge for a request with that User-Agent and nonce
// salt (nonceSalt): a UA whose User-Agent is on the MD5-only list is
// offered MD5 alone.
func (a *Authenticator) challengeUA(userAgent string, proxy, stale bool, salt uint64) []sip.Header {
	if userAgent != "" && (len(a.sha256UA) > 0 || len(a.md5Only) > 0) {
		ua := strings.ToLower(userAgent)
		switch {
		case uaMatches(ua, a.sha256UA):
			return a.challenge(proxy, stale, []string{AlgSHA256, AlgMD5}, salt)
		case uaMatches(ua, a.md5Only):
			return a.challenge(proxy, stale, []string{AlgMD5}, salt)
		}
	}
	return a.challenge(proxy, stale, a.algorithms, salt)
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

func (a *Authenticator) challenge(proxy, stale bool, algorithms []string, salt uint64) []sip.Header {
	name := "WWW-Authenticate"
	if proxy {
		name = "Proxy-Authenticate"
	}
	nonce := a.newNonce(salt)
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
	name := "Authorization"
	if proxy {
		name = "Proxy-Authorization"
	}
	var values []string
	for _, h := range siphdr.All(req, name) {
		values = append(values, h.Value())
	}
	return a.verify(ctx, values, string(req.Method), source)
}

// verify is Verify for the values of a request's Authorization (or
// Proxy-Authorization) headers and its method.
func (a *Authenticator) verify(ctx context.Context, values []string, method string, source netip.AddrPort) (string, error) {
	if a.guard.Banned(source, "") {
		return "", ErrBanned
	}
	var cred credentials
	found := false
	for _, v := range values {
		c, ok := parseCredentials(v)
		if ok && c.realm == a.realm {
			cred, found = c, true
			break
		}
	}
	if !found {
		return "", ErrNoCredentials
	}
	if a.guard.Banned(source, cred.username) {
		return "", ErrBanned
	}
	ours, fresh := a.checkNonce(cred.nonce)
	if !ours || !fresh {
		// A nonce we cannot verify was issued by an earlier run of the
		// switch or has expired: either way the client should simply retry
		// with a new one (RFC 7616 §3.3 stale).
		return "", ErrStaleNonce
	}
	user, err := a.users.Lookup(ctx, cred.username)
	if err != nil && !errors.Is(err, ErrUnknownUser) {
		return "", err
	}
	alg := AlgMD5
	if cred.algorithm != "" {
		alg = strings.ToUpper(cred.algorithm)
	}
	ha1, ok := user.HA1(alg)
	if !ok || !a.offers(alg) {
		return "", a.fail(source, cred.username, fmt.Errorf("%w: user %q, algorithm %q", ErrBadCredentials, cred.username, alg))
	}
	var nc uint32
	if cred.qop != "" {
		var ncOK bool
		nc, ncOK = parseNC(cred.nc)
		if cred.qop != "auth" || cred.cnonce == "" || !ncOK || nc == 0 {
			return "", a.fail(source, cred.username, fmt.Errorf("%w: unsupported qop %q", ErrBadCredentials, cred.qop))
		}
	}
	if !responseMatches(&cred, alg, ha1, method) {
		return "", a.fail(source, cred.username, fmt.Errorf("%w: wrong digest for user %q", ErrBadCredentials, cred.username))
	}
	if cred.qop != "" && !a.useNonceCount(cred.nonce, nc) {
		// RFC 7616 §3.4: a repeated nonce count is a replay (or the
		// retransmission of a request answered statelessly: see
		// retransmitted).
		return "", errNonceReplay
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
	ua := ""
	if h := siphdr.Get(req, "User-Agent"); h != nil {
		ua = h.Value()
	}
	return "", a.refusal(err, proxy, ua, a.nonceSalt(req))
}

// authorizeRequest is Authorize for a REGISTER as the registrar reads it.
func (a *Authenticator) authorizeRequest(ctx context.Context, q *Request) (string, error) {
	user, err := a.verify(ctx, q.Authorization, q.Method, q.Source)
	if err == nil {
		return user, nil
	}
	return "", a.refusal(err, false, q.UserAgent, q.ID.Sum(a.ncSeed))
}

// refusal is Authorize's answer to Verify's error err for a request with
// that User-Agent and nonce salt (nonceSalt).
func (a *Authenticator) refusal(err error, proxy bool, userAgent string, salt uint64) error {
	code, reason := 401, "Unauthorized"
	if proxy {
		code, reason = 407, "Proxy Authentication Required"
	}
	switch {
	case errors.Is(err, ErrBanned):
		return statusErr(403, "Forbidden", err)
	case errors.Is(err, ErrNoCredentials), errors.Is(err, ErrBadCredentials):
		return statusErr(code, reason, err, a.challengeUA(userAgent, proxy, false, salt)...)
	case errors.Is(err, ErrStaleNonce):
		return statusErr(code, reason, err, a.challengeUA(userAgent, proxy, true, salt)...)
	}
	return err
}

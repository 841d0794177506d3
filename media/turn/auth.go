package turn

import (
	"crypto/hmac"
	"crypto/md5"  //nolint:gosec // RFC 8489 §9.2.2 defines the long-term key as MD5.
	"crypto/sha1" //nolint:gosec // the TURN REST password is HMAC-SHA1 by definition.
	"encoding/base64"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/pion/turn/v5"
)

// Credentials looks up the long-term keys of SIP users.
//
// LongTermKey returns the MD5 HA1 of a SIP user, MD5(user ":" realm ":"
// password) as 16 raw bytes, where realm is Config.Realm (the SIP domain).
// That is exactly the long-term credential key of RFC 8489 §9.2.2, so a SIP
// user's own username and password work for TURN without storing anything
// else. ok is false when the user does not exist. It is called from the
// server's read loops and must be safe for concurrent use and fast (cache
// what comes from disk).
type Credentials interface {
	LongTermKey(username string) (key []byte, ok bool)
}

// Guard counts failed password checks and refuses sources (or users) that
// fail too often; the caller shares one with its other password checks, so
// that guesses over TURN and over SIP spend one budget. user is the SIP user
// name: for TURN REST usernames, the part after "expiry:". It must be safe
// for concurrent use and fast: it is called from the server's read loops.
//
// A request from a source Banned for its user is refused with 401
// (Unauthenticated) without its key being looked up. Fail is called
// for an unknown user and for a MESSAGE-INTEGRITY that does not verify (a
// wrong password or a forged REST password); Succeed for every request whose
// integrity verifies.
type Guard interface {
	Banned(source netip.AddrPort, user string) bool
	Fail(source netip.AddrPort, user string)
	Succeed(source netip.AddrPort, user string)
}

// RESTCredentials mints TURN REST API credentials (draft-uberti-behave-turn-rest-00,
// as coturn's use-auth-secret) for user, valid until now+ttl: the
// username is "<unix expiry>:<user>" and the password is
// base64(HMAC-SHA1(secret, username)).
func RESTCredentials(secret []byte, user string, ttl time.Duration, now time.Time) (username, password string) {
	username = strconv.FormatInt(now.Add(ttl).Unix(), 10) + ":" + user

	return username, restPassword(secret, username)
}

func restPassword(secret []byte, username string) string {
	mac := hmac.New(sha1.New, secret)
	mac.Write([]byte(username))

	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// longTermKey is the RFC 8489 §9.2.2 key MD5(username ":" realm ":" password).
func longTermKey(username, realm, password string) []byte {
	h := md5.New() //nolint:gosec // mandated by RFC 8489 §9.2.2
	h.Write([]byte(username + ":" + realm + ":" + password))

	return h.Sum(nil)
}

// parseRESTUsername splits a TURN REST username "<expiry>:<user>" where
// expiry is a decimal Unix time. ok is false when username does not have
// that shape (then it is a plain SIP username).
func parseRESTUsername(username string) (expiry int64, user string, ok bool) {
	ts, user, found := strings.Cut(username, ":")
	if !found || ts == "" || user == "" || len(ts) > 19 {
		return 0, "", false
	}
	for i := 0; i < len(ts); i++ {
		if ts[i] < '0' || ts[i] > '9' {
			return 0, "", false
		}
	}
	expiry, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return 0, "", false
	}

	return expiry, user, true
}

// quotaUser is the user an allocation is counted against: the part after the
// expiry for REST usernames, so that minting fresh REST credentials does not
// escape the quota.
func quotaUser(username string) string {
	if _, user, ok := parseRESTUsername(username); ok {
		return user
	}

	return username
}

// lookupKey returns the long-term key of username in realm, or ok=false. It
// has no side effects.
func (s *Server) lookupKey(username, realm string) (key []byte, ok bool) {
	key, ok, _ = s.resolveKey(username, realm)

	return key, ok
}

// pionAuth is the pion/turn AuthHandler (see authKey). The user ID pion
// ties an allocation to is the whole TURN username, so that the quota, the
// events and the logs see the username the client authenticated with.
func (s *Server) pionAuth(ra *turn.RequestAttributes) (userID string, key []byte, ok bool) {
	key, ok = s.authKey(ra.Username, ra.Realm, ra.SrcAddr)

	return ra.Username, key, ok
}

// authKey returns the long-term key for username, or ok=false to refuse
// (pion then answers 401 with a fresh NONCE and REALM, RFC 8489 §9.2.4, and
// the request is not served). The realm the client echoes must be ours
// (RFC 8489 §9.2.4). A source the Guard refuses for the user gets no key;
// an unknown user counts as a failure. pion checks MESSAGE-INTEGRITY after
// this returns and reports the verdict to OnAuth (see eventHandler), where
// wrong passwords are counted.
func (s *Server) authKey(username, realm string, src net.Addr) (key []byte, ok bool) {
	if s.banned(src, username) {
		s.metrics.authFailures.Inc()
		s.log.Debug("authentication refused", "user", username, "src", src.String(), "reason", "banned")

		return nil, false
	}
	key, ok, reason := s.resolveKey(username, realm)
	if !ok {
		s.metrics.authFailures.Inc()
		s.log.Debug("authentication refused", "user", username, "src", src.String(), "reason", reason)
		if reason == reasonUnknownUser {
			s.guardFail(src, username)
		}
	}

	return key, ok
}

// reasonUnknownUser is resolveKey's reason for a user name it has no key
// for: the one refusal counted as a guess (a wrong realm, an expired REST
// credential or REST when disabled tell nothing about a password).
const reasonUnknownUser = "unknown user"

// banned asks the Guard whether src is refused for the user of username.
func (s *Server) banned(src net.Addr, username string) bool {
	if s.cfg.Guard == nil {
		return false
	}

	return s.cfg.Guard.Banned(addrPortOf(src), quotaUser(username))
}

// guardFail reports a failed password check to the Guard.
func (s *Server) guardFail(src net.Addr, username string) {
	if s.cfg.Guard != nil {
		s.cfg.Guard.Fail(addrPortOf(src), quotaUser(username))
	}
}

// guardSucceed reports a verified password check to the Guard.
func (s *Server) guardSucceed(src net.Addr, username string) {
	if s.cfg.Guard != nil {
		s.cfg.Guard.Succeed(addrPortOf(src), quotaUser(username))
	}
}

// addrPortOf returns the IP and port of a UDP or TCP address (the zero
// AddrPort for anything else).
func addrPortOf(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort()
	case *net.TCPAddr:
		return a.AddrPort()
	}

	return netip.AddrPort{}
}

// resolveKey finds the long-term key of username; when there is none it says
// why.
func (s *Server) resolveKey(username, realm string) (key []byte, ok bool, reason string) {
	if realm != s.cfg.Realm {
		return nil, false, "realm"
	}
	if expiry, _, isREST := parseRESTUsername(username); isREST {
		switch {
		case len(s.cfg.Secret) == 0:
			return nil, false, "rest disabled"
		case expiry < s.now().Unix():
			// draft-uberti-behave-turn-rest-00: the timestamp is the
			// expiry; a credential past it is refused.
			return nil, false, "rest credentials expired"
		}

		return longTermKey(username, realm, restPassword(s.cfg.Secret, username)), true, ""
	}
	if s.creds == nil {
		return nil, false, reasonUnknownUser
	}
	key, ok = s.creds.LongTermKey(username)
	if !ok || len(key) != md5.Size {
		return nil, false, reasonUnknownUser
	}

	return key, true, ""
}

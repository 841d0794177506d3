package registrar

import (
	"errors"

	"github.com/emiago/sipgo/sip"
)

// Sentinel errors callers branch on.
var (
	// ErrUnknownUser means no user of that name exists.
	ErrUnknownUser = errors.New("unknown user")
	// ErrUserExists is returned by Users.Add for a name already taken.
	ErrUserExists = errors.New("user already exists")
	// ErrInvalidName means a user name is empty or has characters not allowed
	// in the user part of a SIP URI.
	ErrInvalidName = errors.New("invalid user name")
	// ErrNoCredentials means the request carried no credentials for our realm.
	ErrNoCredentials = errors.New("no credentials")
	// ErrStaleNonce means the credentials used a nonce that has expired.
	ErrStaleNonce = errors.New("stale nonce")
	// ErrBadCredentials means the digest did not verify (wrong password,
	// unknown user, bad nonce, replayed nonce count).
	ErrBadCredentials = errors.New("bad credentials")
	// ErrBanned means the source has failed authentication too often.
	ErrBanned = errors.New("source temporarily refused after repeated authentication failures")
	// ErrIdentityMismatch means the authenticated user is not the user the
	// request speaks for (To of a REGISTER, From of a call).
	ErrIdentityMismatch = errors.New("authenticated user does not match the request")
)

// StatusError is an error with the SIP response it should be answered with.
// The proxy's single error-to-response function reads SIPStatus and
// SIPHeaders; everything else is an internal error (500).
type StatusError struct {
	Code    int
	Reason  string
	Headers []sip.Header
	Err     error
}

func (e *StatusError) Error() string {
	if e.Err != nil {
		return e.Reason + ": " + e.Err.Error()
	}
	return e.Reason
}

// Unwrap returns the cause.
func (e *StatusError) Unwrap() error { return e.Err }

// SIPStatus returns the response code and reason phrase.
func (e *StatusError) SIPStatus() (int, string) { return e.Code, e.Reason }

// SIPHeaders returns headers the response must carry (challenges, Min-Expires).
func (e *StatusError) SIPHeaders() []sip.Header { return e.Headers }

func statusErr(code int, reason string, err error, hdrs ...sip.Header) *StatusError {
	return &StatusError{Code: code, Reason: reason, Err: err, Headers: hdrs}
}

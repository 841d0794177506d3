package registrar

import (
	"errors"

	"github.com/emiago/sipgo/sip"

	"github.com/switchboard/switchboard/internal/sipstatus"
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

// StatusError is an error with the SIP response it should be answered with:
// the one status-error type of the switch (internal/sipstatus), which the
// proxy's single error-to-response function reads; everything else is an
// internal error (500).
type StatusError = sipstatus.Error

func statusErr(code int, reason string, err error, hdrs ...sip.Header) *StatusError {
	return sipstatus.New(code, reason, err, hdrs...)
}

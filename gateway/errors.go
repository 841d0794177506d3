package gateway

import "errors"

var (
	// ErrClosed is returned by Start after Close, and by operations on a
	// gateway that is shutting down.
	ErrClosed = errors.New("gateway closed")
	// ErrBadCredentials means the registrar refused the user's credentials
	// (401 after credentials were given, or 403).
	ErrBadCredentials = errors.New("wrong user name or password")
	// ErrBadSDP means an SDP could not be parsed or used.
	ErrBadSDP = errors.New("unusable SDP")
	// ErrNoPorts means no UDP port of the configured range was free.
	ErrNoPorts = errors.New("no free UDP port")
)

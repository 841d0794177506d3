package turn

import "errors"

// Sentinel errors callers may test with errors.Is.
var (
	// ErrConfig reports an invalid Config field; the wrapping error names it.
	ErrConfig = errors.New("turn: invalid config")
	// ErrBadListen reports a Config.Listen entry that is not a
	// udp://, tcp:// or tls:// host:port URL.
	ErrBadListen = errors.New("turn: bad listen address")
	// ErrNoSecret reports that REST credentials were asked for but
	// Config.Secret is empty.
	ErrNoSecret = errors.New("turn: no REST secret configured")
)

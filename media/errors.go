package media

import "errors"

// Sentinel errors callers branch on.
var (
	// ErrNoPorts means every port pair of the configured range is in use or
	// in quarantine. The proxy answers the INVITE with 503 Service Unavailable.
	ErrNoPorts = errors.New("no free media ports")
	// ErrClosed is returned by Relay.NewStream after Relay.Close.
	ErrClosed = errors.New("media relay closed")
)

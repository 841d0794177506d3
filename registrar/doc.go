// Package registrar owns SIP registration (RFC 3261 §10.3): the REGISTER
// handler, digest authentication of users (RFC 7616/RFC 8760), the user store
// and the location service that maps an address-of-record to its bindings.
// It also owns the Guard, the one failure ban for every password check of
// the switch (SIP digest here; TURN, HTTP Basic and the web phone report to
// it through their callers).
//
// It keeps bindings in memory for lookups and persists them to SQL in batches,
// so that they survive a restart without a disk write on the request path.
//
// registrar depends on sipgo's message types only. It must not import the
// proxy (package sip), media or gateway: the proxy declares the small
// interfaces it needs (a Locator, an Authenticator) and *Registrar satisfies
// them.
package registrar

// Package certs is the switch's one source of TLS certificates: HTTPS and
// WSS, SIP over TLS and TURN over TLS all take theirs from a Source.
//
// A Source serves, in order of preference: the certificate obtained and
// renewed over ACME (RFC 8555, through github.com/caddyserver/certmagic)
// for the configured names; a certificate and key given as PEM files,
// reloaded when the files change; or a self-signed certificate for the
// host's names and addresses, generated on first start and kept in the
// database. While ACME has not yet delivered, the given file or the
// self-signed certificate keeps serving.
//
// The environment variable SWITCHBOARD_ACME_RENEW_CHECK (a Go duration such
// as "500ms") sets how often certmagic looks for certificates to renew when
// ACMEConfig.RenewCheckInterval is zero; unset, certmagic's 10 minutes
// apply, which suit any real CA's lifetimes (even 6-day certificates). It
// is a knob for tests (pebble's seconds-long certificates, through the
// switch binary) and for operators chasing a renewal problem, not a config
// key; a value that is not a positive duration makes New fail. Note that a
// certificate with less than five intervals left is renewed at every check.
//
// It owns its storage (a table in the database, certmagic's files under the
// database's directory) and the certmagic cache's goroutines; it must not
// import any other package of the switch except internal ones.
package certs

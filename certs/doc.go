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
// It owns its storage (a table in the database, certmagic's files under the
// database's directory) and the certmagic cache's goroutines; it must not
// import any other package of the switch except internal ones.
package certs

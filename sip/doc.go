// Package sip is the switch's SIP edge: the UDP, TCP, TLS and WebSocket
// listeners, and a transaction-stateful, record-routing proxy (RFC 3261 §16)
// in front of the registrar.
//
// It owns request validation (400, 420, 482, 483), authentication of calls
// from local users (407), routing to registered contacts with parallel
// forking, CANCEL and Timer C, loose routing of in-dialog requests, NAT
// handling of contacts (reaching a UA where its packets came from) and the
// call events that become call detail records.
//
// It uses github.com/emiago/sipgo for parsing, transports and transactions.
// It depends on package registrar only for the Binding type; the registrar,
// the authenticator and the call recorder are reached through the small
// interfaces declared in this package. It must not import media or gateway.
package sip

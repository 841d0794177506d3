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
// interfaces declared in this package. It uses package media for the relay
// that anchors calls' media (media knows ports and packets, never SIP, and
// must not import sip). It must not import gateway: the gateway talks SIP to
// the proxy like any phone.
//
// The files follow the proxy's steps in RFC 3261 §16: request.go receives a
// request and dispatches it (§16.1–16.4, the switch's own answers),
// validate.go validates it (§16.3, loop detection), local.go recognises the
// switch's own addresses and Route entries (§16.4), target.go finds where it
// goes (§16.5), forward.go builds each copy (§16.6: Via, Record-Route,
// alias), fork.go collects the responses (§16.7–16.10), indialog.go and
// dialog_token.go route requests inside dialogs the switch record-routed
// (§16.12). fastpath.go answers REGISTERs over UDP and challenges initial
// INVITEs statelessly, outside sipgo's transaction layer,
// rawchallenge.go the challenges from the datagram's bytes, and
// statelessdialog.go forwards ACKs of 2xx and BYEs over UDP statelessly
// (§16.11) from the same workers. strangers.go
// and flood.go limit what strangers may do; calls.go and media.go keep a
// call's record and its media.
package sip

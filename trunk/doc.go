// Package trunk connects the switch with the telephone network over SIP
// trunks: the dial plan that normalises what users dial to E.164, the
// routes that pick trunks for a number, the numbers (DIDs) that ring local
// users, the calling classes and toll-fraud limits every outbound call is
// checked against, and the outbound registration client that keeps a
// trunk's registration with its carrier (refresh before expiry, backoff on
// failure), whose state `switchboard trunk list` shows.
//
// *Trunks is the proxy's sip.Router: the proxy asks it who a request comes
// from (a trunk's addresses are trusted), which users a trunk's call rings
// and which trunks a user's call goes out on; the SIP work itself (serial
// forking over the trunks, answering their digest challenges, rewriting the
// caller's identity) stays in package sip. It imports sip for those types,
// and never the reverse; it knows nothing of the configuration file.
package trunk

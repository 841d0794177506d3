// Package turn runs switchboard's STUN/TURN server on top of pion/turn.
//
// The package owns:
//
//   - the listening sockets (UDP with several SO_REUSEPORT read loops per
//     address, TCP, TLS) and their lifetime: New binds them, Close releases
//     them together with every relay socket and goroutine it started;
//   - the relay sockets, allocated in a configured port range on Config.BindIP
//     and advertised as Config.PublicIP;
//   - authentication with the long-term credential mechanism (RFC 8489
//     §9.2), keyed either by a SIP user's stored digest HA1 (which is exactly
//     the long-term key MD5(username ":" realm ":" password)) or by
//     time-limited TURN REST credentials (draft-uberti-behave-turn-rest);
//   - the policy on what a client may do: which peers it may relay to (no
//     private, loopback, link-local, multicast or metadata addresses unless
//     listed in Config.AllowPeers), how many allocations a user may hold, and
//     how fast one source address may send Allocate requests;
//   - the ICE server list handed to WebRTC clients (ICEServersHandler);
//   - metrics (switchboard_turn_*) and logs (component=turn).
//
// STUN and TURN message handling itself (parsing, transactions, nonces,
// message integrity, allocations, permissions, channels) is pion/turn's and
// is not re-implemented here.
//
// Dependencies go one way: this package knows ports and packets only. It must
// not import sip, registrar, gateway or cmd; a caller supplies user lookups
// through the small Credentials interface, the password-guessing ban shared
// with its other services through the Guard interface (Config.Guard), and
// HTTP authentication through a function passed to ICEServersHandler.
package turn

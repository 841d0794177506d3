// Package siptest holds test helpers for switchboard's SIP tests: a raw-SIP
// "phone" that sends hand-written SIP text over real UDP, TCP or WebSocket
// sockets on 127.0.0.1 and parses what it receives with sipgo's parser, digest
// credentials (MD5 and SHA-256) for its requests, and a shared trace of every
// message sent and received that is printed when a test fails.
//
// Writing messages as text keeps the tests precise: a test says exactly which
// headers a request carries (or lacks), and nothing is added behind its back.
//
// It is imported by tests only. It must not import the switch's own packages,
// so that every package's tests can use it.
package siptest

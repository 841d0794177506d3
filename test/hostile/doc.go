// Package hostile attacks a real switchboard binary the way the internet
// does (issue 8): forged in-dialog requests that try to use the switch as an
// open relay, INVITE floods from strangers, mutated and junk datagrams,
// sipvicious's svwar and svcrack, user enumeration, connection floods, and
// SIGTERM or a crash in the middle of a call.
//
// Attackers send from 127.0.0.2-127.0.0.254 (Linux routes all of
// 127.0.0.0/8 to lo) so that the switch's per-source limits hit them and not
// the legitimate clients, which use 127.0.0.1.
//
// The tests live in the _test.go files; the server is started with
// test/internal/testbed's StartServer, shared with the other suites.
// attack.go (the attacks' messages) is not a test file so that bench/hostile
// can replay the same attacks. This package imports nothing from the switch itself.
package hostile

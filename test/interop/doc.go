// Package interop runs the real switchboard binary against real SIP clients:
// SIPp (Debian's sip-tester) for registrations and calls under load, and
// baresip for a call between two phones with audio.
//
// The helpers here start the server with a throw-away config and database,
// drive the clients and wait on conditions with deadlines; the tests live in
// the _test.go files. Each tool the tests need is installed by
// test/install.sh; without it a test is skipped, or fails when CI=true.
//
// This package imports nothing from the switch: it only knows the binary's
// command line, its config file and its log lines.
package interop

// Package interop runs the real switchboard binary against real SIP clients:
// SIPp (Debian's sip-tester) for registrations and calls under load, and
// baresip for a call between two phones with audio; and pebble, an ACME
// server, for certificates obtained and renewed (internal/pebbletest runs
// it). webrtc_fail_test.go scripts a WebRTC party (internal/siptest for SIP,
// pion/stun and pion/dtls for ICE and DTLS) whose leg fails, against
// baresip.
//
// The tests live in the _test.go files; the rig they drive (the server with
// a throw-away config and database, SIPp, baresip, audio checks, polling
// with deadlines) is test/internal/testbed, shared with the other suites.
// SIPp's scenarios are in testdata/. Each tool the tests need is installed
// by test/install.sh; without it a test is skipped, or fails when CI=true.
//
// This package imports nothing from the switch: it only knows the binary's
// command line, its config file and its log lines (internal/pebbletest and
// internal/siptest are test helpers that import nothing from the switch
// either).
package interop

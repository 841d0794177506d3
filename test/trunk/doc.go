// Package trunk runs the real switchboard binary with SIP trunks to a
// carrier stand-in: the switch and its phones (baresip, and siptest phones)
// in one network namespace, the carrier in another, linked by a veth pair.
// The carrier is scripted from the test (internal/siptest on sockets made in
// its namespace, testbed.ListenPacketIn): it challenges REGISTERs and INVITEs
// with digest, checks the credentials, answers with RTP carrying a tone and
// records what it hears, so that calls are checked end to end through the
// switch's dial plan, limits, trunk failover and media relay.
//
// Like the other suites it imports nothing from the switch: it knows the
// binary's command line, its config file and its log lines.
package trunk

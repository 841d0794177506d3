// Package nat runs the real switchboard binary with real phones (baresip)
// and checks that calls carry audio both ways through the switch's media
// relay: first on loopback, then with each phone behind its own NAT router
// in Linux network namespaces, the switch on a "public" network that has no
// route to the phones' private addresses.
//
// The namespace tests need root, ip (iproute2) and iptables. Without them,
// or without baresip and sox, a test is skipped, or fails when CI=true
// (test/install.sh installs every tool there).
//
// The helpers here (phone.go: baresip driven over ctrl_tcp, also inside a
// namespace; netns_linux.go: the namespaces, routers, NAT and packet
// captures; server_linux.go: the switch in a namespace; evidence.go: SIP
// traces, SDPs and call records, read for checks and failure reports) build
// on package test/interop and, like it, import nothing from the switch:
// they only know its command line, config file and log lines.
package nat

// baresipDigest is the switch's security.digest_algorithms for baresip
// 1.0.0, which gives up on a 401/407 that offers any algorithm besides MD5.
var baresipDigest = []string{"MD5"}

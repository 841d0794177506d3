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
// The rig (baresip driven over ctrl_tcp, also inside a namespace; the
// namespaces, routers, NAT and packet captures; the switch in a namespace)
// is test/internal/testbed, shared with the other suites. evidence.go reads
// SIP traces, SDPs and call records for checks and failure reports. Like
// the rig, this package imports nothing from the switch: it only knows its
// command line, config file and log lines.
package nat

// Package natdetect is the one rule the switch uses to decide that a phone
// sits behind a NAT — and so must be reached where its messages come from
// rather than at its Contact — from evidence in the message, as Kamailio's
// nat_uac_test does. The registrar applies it to REGISTERs (a binding
// behind NAT is reached at its source and kept alive); the proxy applies it
// to the Contacts of dialog-forming requests and responses (an alias
// parameter). It must not import any other package of the switch.
package natdetect

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Test is one piece of evidence of NAT. Rule combines them.
type Test uint8

// The tests, with the nat_uac_test flags of Kamailio's nathelper they
// correspond to.
const (
	// PrivateContact: the Contact host is a private or unroutable address
	// (RFC 1918, RFC 6598 shared space, loopback, link-local, IPv6 ULA)
	// other than the address the message came from (nat_uac_test 1, and 32
	// applied to the Contact).
	PrivateContact Test = 1 << iota
	// ViaMismatch: the top Via's sent-by differs from the source — its
	// host ("received", nat_uac_test 2, which also catches a private Via
	// host, nat_uac_test 4) or its port (rport, nat_uac_test 16).
	ViaMismatch
	// InvalidHost: the Contact host is a name, not an address: JsSIP and
	// SIP.js write a random *.invalid, mDNS phones a *.local. Nobody can
	// tell where it resolves behind the phone's router.
	InvalidHost
	// Flow: the message came over a connection (TCP, TLS, WebSocket):
	// only that flow reaches the phone (nat_uac_test 64 for WebSocket;
	// RFC 5626 flows). Requests to such a binding always go over its
	// connection; this test also marks it as behind NAT (media relay in
	// "nat" mode, the NAT bindings metric).
	Flow

	// explicit marks a Rule made by Parse, so that an empty list means "no
	// test" rather than the default.
	explicit Test = 1 << 7
)

// Default is the rule when none is configured: every test.
const Default = Rule(PrivateContact | ViaMismatch | InvalidHost | Flow | explicit)

// names are the configuration names of the tests, in order.
var names = []struct {
	name string
	test Test
}{
	{"private_contact", PrivateContact},
	{"via_mismatch", ViaMismatch},
	{"invalid_host", InvalidHost},
	{"flow", Flow},
}

// Rule is a set of tests: a message shows NAT when any of them fires. The
// zero value is Default.
//
// What no test flags is trusted: a public Contact, or a private one naming
// the very address the message came from (a phone on the switch's own
// network, or on loopback), even when its port is not the source port — a
// Contact that differs only in port from a Via that matches the source is
// where the phone listens (SIPp load setups and third-party registrations
// send REGISTER from one port and take calls on another). Kamailio's flag
// 128, "Contact port differs from source port", is deliberately not a test.
type Rule uint8

// Parse builds a rule from test names (private_contact, via_mismatch,
// invalid_host, flow). An empty list is a rule with no test: Contacts are
// always trusted.
func Parse(tests []string) (Rule, error) {
	r := explicit
	for i, s := range tests {
		found := false
		for _, n := range names {
			if strings.EqualFold(strings.TrimSpace(s), n.name) {
				r |= n.test
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("[%d]: %q is not one of private_contact, via_mismatch, invalid_host, flow", i, s)
		}
	}
	return Rule(r), nil
}

// Has reports whether the rule includes t.
func (r Rule) Has(t Test) bool {
	if r == 0 {
		r = Default
	}
	return Test(r)&t != 0
}

// String lists the rule's tests by name.
func (r Rule) String() string {
	var out []string
	for _, n := range names {
		if r.Has(n.test) {
			out = append(out, n.name)
		}
	}
	return "[" + strings.Join(out, ", ") + "]"
}

// Message is what the tests look at: the Contact a UA gave (HasContact
// false when there is none), its top Via, and where and how the message
// arrived.
type Message struct {
	Contact    sip.Uri
	HasContact bool
	Via        *sip.ViaHeader
	Source     netip.AddrPort
	Transport  string // UDP, TCP, TLS, WS, WSS
}

// Behind reports whether m shows that its sender is behind NAT, and the
// first test that says so.
func (r Rule) Behind(m Message) (bool, Test) {
	src := m.Source.Addr().Unmap()
	if r.Has(Flow) && connectionOriented(m.Transport) {
		return true, Flow
	}
	if m.HasContact {
		ip, err := netip.ParseAddr(strings.Trim(m.Contact.Host, "[]"))
		switch {
		case err != nil:
			if r.Has(InvalidHost) {
				return true, InvalidHost
			}
		case r.Has(PrivateContact) && Unroutable(ip) && ip.Unmap() != src:
			return true, PrivateContact
		}
	}
	if r.Has(ViaMismatch) && m.Via != nil && viaMismatch(m.Via, m.Source, m.Transport) {
		return true, ViaMismatch
	}
	return false, 0
}

// viaMismatch is RFC 3261 §18.2.1's "received" test and RFC 3581's rport
// test: a sent-by host that is not the source address (a name counts), or
// a sent-by port (5060, or 5061 for TLS, when absent) that is not the
// source port.
func viaMismatch(v *sip.ViaHeader, src netip.AddrPort, transport string) bool {
	ip, err := netip.ParseAddr(strings.Trim(v.Host, "[]"))
	if err != nil || ip.Unmap() != src.Addr().Unmap() {
		return true
	}
	port := v.Port
	if port == 0 {
		port = sip.DefaultPort(transport)
	}
	return uint16(port) != src.Port()
}

// Unroutable reports whether ip cannot be reached across the Internet:
// RFC 1918 and IPv6 unique local (netip's IsPrivate), RFC 6598 shared
// address space (carrier-grade NAT), loopback, link-local, unspecified.
func Unroutable(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.IsPrivate() || ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsUnspecified() ||
		sharedAddressSpace.Contains(ip)
}

// sharedAddressSpace is RFC 6598's 100.64.0.0/10, used by carrier-grade NATs.
var sharedAddressSpace = netip.MustParsePrefix("100.64.0.0/10")

func connectionOriented(transport string) bool {
	switch strings.ToUpper(transport) {
	case "TCP", "TLS", "WS", "WSS":
		return true
	}
	return false
}

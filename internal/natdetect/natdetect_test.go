package natdetect

import (
	"net/netip"
	"testing"

	"github.com/emiago/sipgo/sip"
)

func uri(t *testing.T, s string) sip.Uri {
	t.Helper()
	var u sip.Uri
	if err := sip.ParseUri(s, &u); err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	return u
}

func via(t *testing.T, hostport string) *sip.ViaHeader {
	t.Helper()
	ap, err := netip.ParseAddrPort(hostport)
	v := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Params: sip.NewParams()}
	if err != nil {
		v.Host = hostport // a name, no port
		return v
	}
	v.Host, v.Port = ap.Addr().String(), int(ap.Port())
	return v
}

// TestBehind checks the evidence rule on the cases that made it: each
// names the message, whether it shows NAT under the default rule, and the
// test that fires.
func TestBehind(t *testing.T) {
	for _, tc := range []struct {
		name      string
		contact   string // "" for none
		via       string // sent-by host:port, or a name; "" for none
		source    string
		transport string
		nat       bool
		why       Test
	}{
		// The case: SIPp registers from 5093 a Contact on 5092.
		{"split ports on loopback are trusted", "sip:bob@127.0.0.1:5092", "127.0.0.1:5093", "127.0.0.1:5093", "UDP", false, 0},
		{"public contact differing only in port is trusted", "sip:bob@198.51.100.7:5092", "198.51.100.7:5093", "198.51.100.7:5093", "UDP", false, 0},
		{"third-party registration of another public host is trusted", "sip:bob@198.51.100.8:5060", "198.51.100.7:5060", "198.51.100.7:5060", "UDP", false, 0},
		{"phone on the switch's LAN is trusted", "sip:bob@10.0.0.5:5060", "10.0.0.5:5060", "10.0.0.5:5060", "UDP", false, 0},
		{"contact port absent is trusted", "sip:bob@198.51.100.7", "198.51.100.7", "198.51.100.7:5060", "UDP", false, 0},
		// Behind a port-preserving home router: private Contact and Via.
		{"private contact behind a router", "sip:bob@10.11.2.2:5060", "10.11.2.2:5060", "203.0.113.20:5060", "UDP", true, PrivateContact},
		{"shared address space (CGNAT)", "sip:bob@100.64.3.4:5060", "203.0.113.20:5060", "203.0.113.20:5060", "UDP", true, PrivateContact},
		{"IPv6 ULA contact", "sip:bob@[fd00::5]:5060", "[2001:db8::5]:5060", "[2001:db8::5]:5060", "UDP", true, PrivateContact},
		{"link-local contact", "sip:bob@169.254.1.1:5060", "203.0.113.20:5060", "203.0.113.20:5060", "UDP", true, PrivateContact},
		{"loopback contact from elsewhere", "sip:bob@127.0.0.1:5060", "203.0.113.20:5060", "203.0.113.20:5060", "UDP", true, PrivateContact},
		// A public Contact, but the source is not the Via: received / rport.
		{"via host differs from source", "sip:bob@198.51.100.7:5060", "198.51.100.7:5060", "203.0.113.20:5060", "UDP", true, ViaMismatch},
		{"via port differs from source (rport)", "sip:bob@198.51.100.7:5060", "198.51.100.7:5060", "198.51.100.7:40000", "UDP", true, ViaMismatch},
		{"via port absent, source not 5060", "sip:bob@198.51.100.7", "198.51.100.7", "198.51.100.7:40000", "UDP", true, ViaMismatch},
		{"via host a name", "sip:bob@198.51.100.7:5060", "phone.example.com", "198.51.100.7:5060", "UDP", true, ViaMismatch},
		// Names nobody can resolve from here.
		{"contact *.invalid (JsSIP)", "sip:x7k2@df7jal23ls0d.invalid;transport=ws", "", "198.51.100.7:5060", "UDP", true, InvalidHost},
		// Connections: only the flow reaches the phone.
		{"websocket flow", "sip:x7k2@df7jal23ls0d.invalid;transport=ws", "df7jal23ls0d.invalid", "198.51.100.7:40000", "WS", true, Flow},
		{"tcp flow with a trusted contact", "sip:bob@198.51.100.7:5060;transport=tcp", "198.51.100.7:5060", "198.51.100.7:5060", "TCP", true, Flow},
		{"no contact, matching via", "", "198.51.100.7:5060", "198.51.100.7:5060", "UDP", false, 0},
		{"ipv4-mapped source equals contact", "sip:bob@10.0.0.5:5062", "10.0.0.5:5061", "[::ffff:10.0.0.5]:5061", "UDP", false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := Message{Source: netip.MustParseAddrPort(tc.source), Transport: tc.transport}
			if tc.contact != "" {
				m.Contact, m.HasContact = uri(t, tc.contact), true
			}
			if tc.via != "" {
				m.Via = via(t, tc.via)
			}
			nat, why := Rule(0).Behind(m)
			if nat != tc.nat || why != tc.why {
				t.Errorf("Behind = %v (test %d), want %v (test %d)", nat, why, tc.nat, tc.why)
			}
		})
	}
}

// TestRuleConfigured checks that each test can be switched off, and that
// an empty list trusts every Contact.
func TestRuleConfigured(t *testing.T) {
	behindRouter := Message{Contact: uri(t, "sip:bob@10.11.2.2:5060"), HasContact: true, Via: via(t, "10.11.2.2:5060"),
		Source: netip.MustParseAddrPort("203.0.113.20:5060"), Transport: "UDP"}
	for _, tc := range []struct {
		tests []string
		nat   bool
		why   Test
	}{
		{[]string{"private_contact", "via_mismatch", "invalid_host", "flow"}, true, PrivateContact},
		{[]string{"via_mismatch"}, true, ViaMismatch},
		{[]string{"invalid_host", "flow"}, false, 0},
		{[]string{}, false, 0},
	} {
		r, err := Parse(tc.tests)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tc.tests, err)
		}
		if nat, why := r.Behind(behindRouter); nat != tc.nat || why != tc.why {
			t.Errorf("rule %s: Behind = %v (%d), want %v (%d)", r, nat, why, tc.nat, tc.why)
		}
	}
	if _, err := Parse([]string{"via_mismatch", "contact_port"}); err == nil || err.Error() != `[1]: "contact_port" is not one of private_contact, via_mismatch, invalid_host, flow` {
		t.Errorf("Parse with an unknown test: %v", err)
	}
	if got := Rule(0).String(); got != "[private_contact, via_mismatch, invalid_host, flow]" {
		t.Errorf("default rule is %s", got)
	}
}

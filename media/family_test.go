package media

import (
	"net/netip"
	"testing"
)

// TestDualStackBridge: bound to "::", one stream relays between an IPv4
// party and an IPv6 party, both ways, each seeing the relay at an address
// of its own family.
func TestDualStackBridge(t *testing.T) {
	r := newTestRelay(t, func(c *Config) { c.BindIP = "::"; c.PublicIP6 = "::1" })
	s := newTestStream(t, r)
	a, b := newPhone(t, "127.0.0.1"), newPhone(t, "::1")
	s.SetPeer(A, Peer{RTP: a.addr()})
	s.SetPeer(B, Peer{RTP: b.addr()})
	pa := netip.AddrPortFrom(r.PublicIPFor(a.addr().Addr()), uint16(s.LocalPort(A)))
	pb := netip.AddrPortFrom(r.PublicIPFor(b.addr().Addr()), uint16(s.LocalPort(B)))
	if pa.Addr() != netip.MustParseAddr("127.0.0.1") || pb.Addr() != netip.IPv6Loopback() {
		t.Fatalf("relay addresses %v (IPv4 party), %v (IPv6 party)", pa, pb)
	}
	for i := uint16(1); i <= 3; i++ {
		p := rtpPacket(0, i, 160*uint32(i), 7, 20)
		a.send(pa, p)
		b.expect(p, pb)
		q := rtpPacket(0, i, 160*uint32(i), 9, 20)
		b.send(pb, q)
		a.expect(q, pa)
	}
	if st := s.Stats(A); st.Packets != 3 {
		t.Errorf("Stats(A) = %+v, want 3 packets", st)
	}
	if st := s.Stats(B); st.Packets != 3 {
		t.Errorf("Stats(B) = %+v, want 3 packets", st)
	}
}

// TestPublicIPFor: which address each party is given, by the family of
// the relay's sockets and of the party.
func TestPublicIPFor(t *testing.T) {
	a := netip.MustParseAddr
	for _, c := range []struct {
		bind, public6 string
		peer          netip.Addr
		want          string
	}{
		{"::", "2001:db8::1", a("2001:db8::9"), "2001:db8::1"},
		{"::", "2001:db8::1", a("127.0.0.1"), "127.0.0.1"},
		{"::", "2001:db8::1", a("::ffff:127.0.0.1"), "127.0.0.1"},
		{"::", "2001:db8::1", netip.Addr{}, "127.0.0.1"},
		{"::", "", a("::1"), "host's, or ::1"},
		{"::1", "", a("::1"), "::1"},
		{"127.0.0.1", "", a("::1"), "127.0.0.1"}, // IPv4 sockets cannot reach it anyway
		{"127.0.0.1", "", a("127.0.0.1"), "127.0.0.1"},
	} {
		r := newTestRelay(t, func(cfg *Config) { cfg.BindIP = c.bind; cfg.PublicIP6 = c.public6 })
		want := c.want
		if want == "host's, or ::1" {
			want = "::1"
			if h := r.PublicIP6(); h.IsValid() {
				want = h.String() // hostaddr.Primary6
			}
		}
		if got := r.PublicIPFor(c.peer); got.String() != want {
			t.Errorf("bind %s, public_ip6 %q: PublicIPFor(%v) = %v, want %s", c.bind, c.public6, c.peer, got, want)
		}
	}
	if err := (Config{PublicIP6: "10.0.0.1"}).withDefaults().validate(); err == nil {
		t.Error("an IPv4 public_ip6 was accepted")
	}
}

package media

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Each relay of a test gets its own block of ports below the ephemeral
// range, starting at a random offset so that parallel runs rarely meet.
// A port that is taken anyway is skipped by the pool.
var nextBlock atomic.Int32

func init() { nextBlock.Store(int32(rand.IntN(100)) * 64) }

func testPortBlock() int { return 21000 + int(nextBlock.Add(64)%11000) }

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newTestRelay(t *testing.T, mod func(*Config)) *Relay {
	t.Helper()
	base := testPortBlock()
	cfg := Config{
		PublicIP:   "127.0.0.1",
		BindIP:     "127.0.0.1",
		PortMin:    base,
		PortMax:    base + 63,
		Timeout:    -1,
		Quarantine: -1,
		Workers:    2,
	}
	if mod != nil {
		mod(&cfg)
	}
	cfg.Logger = discardLogger()
	r, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func newTestStream(t testing.TB, r *Relay) *Stream {
	t.Helper()
	s, err := r.NewStream(nil)
	if err != nil {
		t.Fatalf("NewStream: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// phone is a UDP socket playing a party's RTP or RTCP endpoint.
type phone struct {
	t    testing.TB
	conn *net.UDPConn
}

func newPhone(t testing.TB, ip string) *phone {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 0)))
	if err != nil {
		t.Fatalf("listen %s: %v", ip, err)
	}
	t.Cleanup(func() { c.Close() })
	return &phone{t: t, conn: c}
}

func (p *phone) addr() netip.AddrPort {
	return p.conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

func (p *phone) send(to netip.AddrPort, b []byte) {
	p.t.Helper()
	if _, err := p.conn.WriteToUDPAddrPort(b, to); err != nil {
		p.t.Fatalf("send to %v: %v", to, err)
	}
}

// recv waits for the next datagram. Waiting for an event that must come is
// not a sleep: the deadline only bounds a failing test.
func (p *phone) recv() ([]byte, netip.AddrPort) {
	p.t.Helper()
	buf := make([]byte, 65536)
	p.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := p.conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		p.t.Fatalf("%v: receive: %v", p.addr(), err)
	}
	return buf[:n], netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
}

// expect receives the next datagram and checks it is want, from from.
func (p *phone) expect(want []byte, from netip.AddrPort) {
	p.t.Helper()
	got, src := p.recv()
	if !bytes.Equal(got, want) {
		p.t.Fatalf("%v received %x, want %x", p.addr(), got, want)
	}
	if src != from {
		p.t.Fatalf("%v received from %v, want %v", p.addr(), src, from)
	}
}

func local(port int) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
}

// call is a stream with a phone (RTP and RTCP socket) on each side.
type call struct {
	s                        *Stream
	aRTP, aRTCP, bRTP, bRTCP *phone
	a, a1, b, b1             netip.AddrPort // relay ports: A RTP, A RTCP, B RTP, B RTCP
}

func newCall(t testing.TB, r *Relay) *call {
	t.Helper()
	c := &call{
		s:     newTestStream(t, r),
		aRTP:  newPhone(t, "127.0.0.2"),
		aRTCP: newPhone(t, "127.0.0.2"),
		bRTP:  newPhone(t, "127.0.0.3"),
		bRTCP: newPhone(t, "127.0.0.3"),
	}
	c.s.SetPeer(A, Peer{RTP: c.aRTP.addr(), RTCP: c.aRTCP.addr()})
	c.s.SetPeer(B, Peer{RTP: c.bRTP.addr(), RTCP: c.bRTCP.addr()})
	c.a, c.a1 = local(c.s.LocalPort(A)), local(c.s.LocalPort(A)+1)
	c.b, c.b1 = local(c.s.LocalPort(B)), local(c.s.LocalPort(B)+1)
	return c
}

func TestForwardBothWays(t *testing.T) {
	r := newTestRelay(t, nil)
	c := newCall(t, r)
	if c.s.LocalPort(A)%2 != 0 || c.s.LocalPort(B)%2 != 0 || c.s.LocalPort(A) == c.s.LocalPort(B) {
		t.Fatalf("ports A %d B %d: want distinct even ports", c.s.LocalPort(A), c.s.LocalPort(B))
	}
	for i := 0; i < 5; i++ {
		p := rtpPacket(0, uint16(100+i), uint32(160*i), 0xa, 160)
		c.aRTP.send(c.a, p)
		c.bRTP.expect(p, c.b)
		q := rtpPacket(8, uint16(7000+i), uint32(160*i), 0xb, 160)
		c.bRTP.send(c.b, q)
		c.aRTP.expect(q, c.a)
	}
	rr := rtcpPacket(0xa)
	c.aRTCP.send(c.a1, rr)
	c.bRTCP.expect(rr, c.b1)
	rr = rtcpPacket(0xb)
	c.bRTCP.send(c.b1, rr)
	c.aRTCP.expect(rr, c.a1)

	for _, side := range []Side{A, B} {
		st := c.s.Stats(side)
		if st.Packets != 5 || st.Bytes != 5*172 || st.RTCPPackets != 1 || st.RTCPBytes != 8 || st.Lost != 0 || st.Dropped != 0 {
			t.Errorf("Stats(%v) = %+v", side, st)
		}
	}
	if got := c.s.Stats(A).Latched; got != c.aRTP.addr() {
		t.Errorf("A latched %v, want %v", got, c.aRTP.addr())
	}
}

func TestRTCPMux(t *testing.T) {
	r := newTestRelay(t, nil)
	c := newCall(t, r)
	p := rtpPacket(0, 1, 0, 0xa, 160)
	c.aRTP.send(c.a, p)
	c.bRTP.expect(p, c.b)
	// RFC 5761 §5.1.3: RTCP on the RTP port is demultiplexed towards a
	// party that does not multiplex: from B's RTCP port to its RTCP address.
	rr := rtcpPacket(0xa)
	c.aRTP.send(c.a, rr)
	c.bRTCP.expect(rr, c.b1)
	p = rtpPacket(0, 2, 160, 0xa, 160)
	c.aRTP.send(c.a, p)
	c.bRTP.expect(p, c.b)
	st := c.s.Stats(A)
	if st.Packets != 2 || st.RTCPPackets != 1 || st.Lost != 0 || st.Dropped != 0 {
		t.Fatalf("Stats(A) = %+v: muxed RTCP must not count as RTP", st)
	}

	// A party that multiplexes gets RTCP from our RTP port, at its RTP
	// address, even when the other party sends it to our RTCP port.
	c.s.SetPeer(B, Peer{RTP: c.bRTP.addr(), RTCPMux: true})
	c.aRTCP.send(c.a1, rr)
	c.bRTP.expect(rr, c.b)
}

func TestLatchingNATedPhone(t *testing.T) {
	r := newTestRelay(t, nil)
	s := newTestStream(t, r)
	signalled := newPhone(t, "127.0.0.2") // the address in its SDP
	nat := newPhone(t, "127.0.0.2")       // where its packets really come from
	b := newPhone(t, "127.0.0.3")
	s.SetPeer(A, Peer{RTP: signalled.addr()})
	s.SetPeer(B, Peer{RTP: b.addr()})
	pa, pb := local(s.LocalPort(A)), local(s.LocalPort(B))

	// Before A latched, B's packets go to A's signalled address.
	early := rtpPacket(0, 1, 0, 0xb, 20)
	b.send(pb, early)
	signalled.expect(early, pa)

	fromA := rtpPacket(0, 1, 0, 0xa, 20)
	nat.send(pa, fromA)
	b.expect(fromA, pb)
	reply := rtpPacket(0, 2, 160, 0xb, 20)
	b.send(pb, reply)
	nat.expect(reply, pa)
	if got := s.Stats(A).Latched; got != nat.addr() {
		t.Fatalf("A latched %v, want %v", got, nat.addr())
	}
}

func TestAllowedSourceMayLatch(t *testing.T) {
	r := newTestRelay(t, nil)
	s := newTestStream(t, r)
	sip := newPhone(t, "127.0.0.5") // the party's SIP source, not in its SDP
	b := newPhone(t, "127.0.0.3")
	s.SetPeer(A, Peer{RTP: netip.MustParseAddrPort("127.0.0.2:4000"), Allowed: []netip.Addr{netip.MustParseAddr("127.0.0.5")}})
	s.SetPeer(B, Peer{RTP: b.addr()})
	p := rtpPacket(0, 1, 0, 1, 20)
	sip.send(local(s.LocalPort(A)), p)
	b.expect(p, local(s.LocalPort(B)))
	if got := s.Stats(A).Latched; got != sip.addr() {
		t.Fatalf("latched %v, want %v", got, sip.addr())
	}
}

func TestAntiHijack(t *testing.T) {
	r := newTestRelay(t, nil)
	c := newCall(t, r)
	stranger := newPhone(t, "127.0.0.9")
	sameIP := newPhone(t, "127.0.0.2") // the party's IP, another port

	// Before latching: a stranger IP is dropped, not forwarded.
	c.bRTP.send(c.b, rtpPacket(0, 50, 0, 0xb, 20)) // B latches
	c.aRTP.recv()
	stranger.send(c.a, rtpPacket(0, 9999, 0, 0x666, 20))
	stranger.send(c.b, rtpPacket(0, 9999, 0, 0x666, 20)) // B latched already
	p := rtpPacket(0, 1, 0, 0xa, 20)
	c.aRTP.send(c.a, p)
	c.bRTP.expect(p, c.b) // the first thing B gets is A's packet
	if got := c.s.Stats(A).Dropped; got != 1 {
		t.Fatalf("A dropped %d, want 1", got)
	}
	if got := c.s.Stats(B).Dropped; got != 1 {
		t.Fatalf("B dropped %d, want 1", got)
	}

	// After latching: neither a stranger nor another port of the same IP.
	stranger.send(c.a, rtpPacket(0, 9999, 0, 0x666, 20))
	sameIP.send(c.a, rtpPacket(0, 9999, 0, 0x666, 20))
	stranger.send(c.a1, rtcpPacket(0x666))
	p = rtpPacket(0, 2, 160, 0xa, 20)
	c.aRTP.send(c.a, p)
	c.bRTP.expect(p, c.b)
	rr := rtcpPacket(0xa)
	c.aRTCP.send(c.a1, rr)
	c.bRTCP.expect(rr, c.b1)
	if got := c.s.Stats(A); got.Dropped != 4 || got.Packets != 2 || got.Latched != c.aRTP.addr() {
		t.Fatalf("Stats(A) = %+v, want 4 dropped, 2 packets, latched to %v", got, c.aRTP.addr())
	}
	// Replies still go to the real party.
	q := rtpPacket(0, 51, 160, 0xb, 20)
	c.bRTP.send(c.b, q)
	c.aRTP.expect(q, c.a)
}

func TestSetPeerAgainRelatches(t *testing.T) {
	r := newTestRelay(t, nil)
	c := newCall(t, r)
	p := rtpPacket(0, 1, 0, 0xa, 20)
	c.aRTP.send(c.a, p)
	c.bRTP.expect(p, c.b)
	portA, portB := c.s.LocalPort(A), c.s.LocalPort(B)

	// re-INVITE: A moved to another address.
	moved := newPhone(t, "127.0.0.4")
	c.s.SetPeer(A, Peer{RTP: moved.addr()})
	if c.s.LocalPort(A) != portA || c.s.LocalPort(B) != portB {
		t.Fatal("SetPeer changed the ports")
	}
	if got := c.s.Stats(A).Latched; got.IsValid() {
		t.Fatalf("latch kept after SetPeer: %v", got)
	}
	q := rtpPacket(0, 2, 160, 0xb, 20)
	c.bRTP.send(c.b, q)
	moved.expect(q, c.a) // to the new signalled address

	old := rtpPacket(0, 2, 160, 0xa, 20)
	c.aRTP.send(c.a, old) // the old address is no longer allowed
	n := rtpPacket(0, 3, 320, 0xa, 20)
	moved.send(c.a, n)
	c.bRTP.expect(n, c.b)
	if st := c.s.Stats(A); st.Dropped != 1 || st.Latched != moved.addr() {
		t.Fatalf("Stats(A) = %+v, want 1 dropped, latched to %v", st, moved.addr())
	}
}

func TestHoldUnspecifiedAddress(t *testing.T) {
	r := newTestRelay(t, nil)
	c := newCall(t, r)
	// RFC 3264 §8.4 old-style hold: c=0.0.0.0. Nothing goes to A until it
	// sends again (its own IP stays allowed through Allowed).
	c.s.SetPeer(A, Peer{RTP: netip.MustParseAddrPort("0.0.0.0:4000"), Allowed: []netip.Addr{netip.MustParseAddr("127.0.0.2")}})
	// Which of two sockets the relay serves first is not defined, so the
	// packet towards nowhere is handed to the stream directly.
	c.s.mu.Lock()
	_, _, _, ok := c.s.accept(B, false, rtpPacket(0, 1, 0, 0xb, 20), c.bRTP.addr(), r.clock())
	got := c.s.legs[B].dropped[dropUnroutable]
	c.s.mu.Unlock()
	if ok || got != 1 {
		t.Fatalf("packet towards a held party: relayed %v, unroutable drops %d", ok, got)
	}
	p := rtpPacket(0, 1, 0, 0xa, 20)
	c.aRTP.send(c.a, p)
	c.bRTP.expect(p, c.b)
	q := rtpPacket(0, 2, 160, 0xb, 20)
	c.bRTP.send(c.b, q)
	c.aRTP.expect(q, c.a) // A sent, so it latched and gets media again
}

func TestGarbageDroppedAndCounted(t *testing.T) {
	r := newTestRelay(t, nil)
	c := newCall(t, r)
	shortCSRC := rtpPacket(0, 1, 0, 1, 4)
	shortCSRC[0] |= 3
	tests := []struct {
		name   string
		b      []byte
		rtcp   bool
		reason dropReason
	}{
		{"empty datagram", []byte{}, false, dropTruncated},
		{"one byte", []byte{0x80}, false, dropTruncated},
		{"stun binding request", append([]byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42}, make([]byte, 12)...), false, dropMalformed},
		{"text", []byte("INVITE sip:bob@example.com SIP/2.0\r\n"), false, dropMalformed},
		{"rtp 11 bytes", rtpPacket(0, 1, 0, 1, 0)[:11], false, dropTruncated},
		{"csrc list past end", shortCSRC, false, dropTruncated},
		{"rtcp 4 bytes", rtcpPacket(1)[:4], true, dropTruncated},
		{"rtp on rtcp port", rtpPacket(0, 1, 0, 1, 160), true, dropMalformed},
		{"oversize", rtpPacket(0, 1, 0, 1, 5000), false, dropOversize},
	}
	seq := uint16(0)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.s.mu.Lock()
			before := c.s.legs[A].dropped
			c.s.mu.Unlock()
			to, next, rcv := c.a, c.bRTP, c.b
			if tt.rtcp {
				to = c.a1
			}
			from := c.aRTP
			if tt.rtcp {
				from = c.aRTCP
			}
			from.send(to, tt.b)
			// A good packet after it on the same port: when it arrives the
			// garbage was handled, and it must be the next thing B sees.
			seq++
			good := rtpPacket(0, seq, uint32(seq)*160, 0xa, 20)
			if tt.rtcp {
				good, next, rcv = rtcpPacket(0xa), c.bRTCP, c.b1
			}
			from.send(to, good)
			next.expect(good, rcv)
			c.s.mu.Lock()
			after := c.s.legs[A].dropped
			c.s.mu.Unlock()
			for reason := range after {
				want := before[reason]
				if dropReason(reason) == tt.reason {
					want++
				}
				if after[reason] != want {
					t.Errorf("dropped[%v] = %d, want %d", dropReason(reason), after[reason], want)
				}
			}
		})
	}
}

func TestGarbageDoesNotLatch(t *testing.T) {
	r := newTestRelay(t, nil)
	c := newCall(t, r)
	other := newPhone(t, "127.0.0.2") // allowed IP, but sends garbage only
	other.send(c.a, []byte("hello"))
	p := rtpPacket(0, 1, 0, 0xa, 20)
	c.aRTP.send(c.a, p)
	c.bRTP.expect(p, c.b)
	if got := c.s.Stats(A).Latched; got != c.aRTP.addr() {
		t.Fatalf("latched %v, want %v", got, c.aRTP.addr())
	}
}

func TestFloodOfGarbage(t *testing.T) {
	r := newTestRelay(t, nil)
	c := newCall(t, r)
	stranger := newPhone(t, "127.0.0.9")
	const n = 300
	junk := make([]byte, 172)
	for i := 0; i < n; i++ {
		junk[0] = byte(i) & 0x3f      // version 0
		c.aRTP.send(c.a, junk[:i%40]) // legit source, garbage of every short length
		stranger.send(c.a, rtpPacket(0, uint16(i), 0, 1, 160))
	}
	p := rtpPacket(0, 1, 0, 0xa, 160)
	c.aRTP.send(c.a, p)
	c.bRTP.expect(p, c.b)
	if st := c.s.Stats(A); st.Dropped != 2*n || st.Packets != 1 {
		t.Fatalf("Stats(A) = %+v, want %d dropped, 1 packet", st, 2*n)
	}
}

func TestLossAndJitterEndToEnd(t *testing.T) {
	r := newTestRelay(t, nil)
	c := newCall(t, r)
	for _, seq := range []uint16{1, 2, 5, 6, 7, 10} {
		p := rtpPacket(0, seq, uint32(seq)*160, 0xa, 20)
		c.aRTP.send(c.a, p)
		c.bRTP.expect(p, c.b)
	}
	if st := c.s.Stats(A); st.Lost != 4 || st.Packets != 6 {
		t.Fatalf("Stats(A) = %+v, want 4 lost of 6 received", st)
	}
	if st := c.s.Stats(B); st.Lost != 0 || st.Packets != 0 {
		t.Fatalf("Stats(B) = %+v, want nothing", st)
	}
}

func TestIPv6(t *testing.T) {
	r := newTestRelay(t, func(c *Config) { c.BindIP = "::1"; c.PublicIP = "::1" })
	s := newTestStream(t, r)
	a, b := newPhone(t, "::1"), newPhone(t, "::1")
	s.SetPeer(A, Peer{RTP: a.addr()})
	s.SetPeer(B, Peer{RTP: b.addr()})
	pa := netip.AddrPortFrom(netip.IPv6Loopback(), uint16(s.LocalPort(A)))
	pb := netip.AddrPortFrom(netip.IPv6Loopback(), uint16(s.LocalPort(B)))
	p := rtpPacket(0, 1, 0, 1, 20)
	a.send(pa, p)
	b.expect(p, pb)
	b.send(pb, p)
	a.expect(p, pa)
}

func TestPortExhaustionAndQuarantine(t *testing.T) {
	clk := newFakeClock()
	r := newTestRelay(t, func(c *Config) {
		c.PortMax = c.PortMin + 7 // 4 pairs: two streams
		c.Quarantine = 30 * time.Second
		c.now = clk.now
	})
	s1, err := r.NewStream(nil)
	if err != nil {
		t.Fatal(err)
	}
	s2 := newTestStream(t, r)
	_ = s2
	if _, err := r.NewStream(nil); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("third stream: err = %v, want ErrNoPorts", err)
	}
	freed := []int{s1.LocalPort(A), s1.LocalPort(B)}
	s1.Close()
	s1.Close() // idempotent
	// Close returned: the sockets are closed, the ports can be bound...
	for _, p := range freed {
		for _, port := range []int{p, p + 1} {
			c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(local(port)))
			if err != nil {
				t.Fatalf("port %d still bound after Close: %v", port, err)
			}
			c.Close()
		}
	}
	// ...but the relay does not hand them out during the quarantine.
	if _, err := r.NewStream(nil); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("stream during quarantine: err = %v, want ErrNoPorts", err)
	}
	clk.advance(30*time.Second - time.Millisecond)
	if _, err := r.NewStream(nil); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("stream just before quarantine end: err = %v, want ErrNoPorts", err)
	}
	clk.advance(time.Millisecond)
	s3 := newTestStream(t, r)
	got := []int{s3.LocalPort(A), s3.LocalPort(B)}
	if !(equalInts(got, freed) || equalInts(got, []int{freed[1], freed[0]})) {
		t.Fatalf("after quarantine got ports %v, want %v", got, freed)
	}
}

func TestSkipsPortInUse(t *testing.T) {
	base := testPortBlock()
	busy, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(local(base+1))) // RTCP port of the first pair
	if err != nil {
		t.Skipf("cannot occupy port %d: %v", base+1, err)
	}
	defer busy.Close()
	r := newTestRelay(t, func(c *Config) { c.PortMin, c.PortMax = base, base+7 })
	s := newTestStream(t, r)
	if s.LocalPort(A) == base || s.LocalPort(B) == base {
		t.Fatalf("got busy pair: A %d B %d", s.LocalPort(A), s.LocalPort(B))
	}
	// Only one pair is left: a second stream cannot be had.
	if _, err := r.NewStream(nil); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("err = %v, want ErrNoPorts", err)
	}
}

func TestTimeoutFiresOnce(t *testing.T) {
	clk := newFakeClock()
	r := newTestRelay(t, func(c *Config) {
		c.Timeout = time.Hour // the relay's own timer never sees it expire
		c.now = clk.now
	})
	var fired atomic.Int32
	s, err := r.NewStream(func() { fired.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var unarmedFired atomic.Int32
	half, err := r.NewStream(func() { unarmedFired.Add(1) }) // only the caller known: ringing
	if err != nil {
		t.Fatal(err)
	}
	defer half.Close()
	half.SetPeer(A, Peer{RTP: netip.MustParseAddrPort("127.0.0.2:4000")})

	a, b := newPhone(t, "127.0.0.2"), newPhone(t, "127.0.0.3")
	s.SetPeer(A, Peer{RTP: a.addr()})
	s.SetPeer(B, Peer{RTP: b.addr()})
	clk.advance(59 * time.Minute)
	p := rtpPacket(0, 1, 0, 1, 20)
	a.send(local(s.LocalPort(A)), p) // activity restarts the idle time
	b.expect(p, local(s.LocalPort(B)))
	clk.advance(59 * time.Minute)
	r.scanTimeouts()
	if fired.Load() != 0 {
		t.Fatal("timeout fired with media 59 minutes ago")
	}
	clk.advance(time.Minute)
	r.scanTimeouts()
	clk.advance(time.Hour)
	r.scanTimeouts()
	if got := fired.Load(); got != 1 {
		t.Fatalf("timeout fired %d times, want 1", got)
	}
	if got := unarmedFired.Load(); got != 0 {
		t.Fatalf("timeout fired on a stream with one side unknown")
	}
}

func TestTimeoutRealClock(t *testing.T) {
	r := newTestRelay(t, func(c *Config) { c.Timeout = 30 * time.Millisecond })
	fired := make(chan struct{}, 2)
	var s *Stream
	s, err := r.NewStream(func() {
		fired <- struct{}{}
		s.Close() // the owner may close from the callback
	})
	if err != nil {
		t.Fatal(err)
	}
	s.SetPeer(A, Peer{RTP: netip.MustParseAddrPort("127.0.0.2:4000")})
	s.SetPeer(B, Peer{RTP: netip.MustParseAddrPort("127.0.0.3:4000")})
	select {
	case <-fired:
	case <-time.After(5 * time.Second):
		t.Fatal("timeout callback not called")
	}
}

func TestCloseStopsEverything(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	r, err := New(Config{PublicIP: "127.0.0.1", PortMin: 20000, PortMax: 10000, Logger: discardLogger(), Metrics: prometheus.NewRegistry()})
	if err == nil {
		r.Close()
		t.Fatal("New accepted PortMax < PortMin")
	}
	base := testPortBlock()
	reg := prometheus.NewRegistry()
	r, err = New(Config{PublicIP: "127.0.0.1", BindIP: "127.0.0.1", PortMin: base, PortMax: base + 63,
		Timeout: time.Second, Logger: discardLogger(), Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	c := newCall(t, r)
	p := rtpPacket(0, 1, 0, 1, 20)
	c.aRTP.send(c.a, p)
	c.bRTP.expect(p, c.b)
	other := newTestStream(t, r)
	other.Close()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r.Close() // idempotent
	if _, err := r.NewStream(nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("NewStream after Close: %v, want ErrClosed", err)
	}
	c.s.Close() // after the relay: harmless
	if st := c.s.Stats(A); st.Packets != 1 {
		t.Fatalf("stats lost at close: %+v", st)
	}
	// The ports are free again.
	l, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(c.a))
	if err != nil {
		t.Fatalf("port still bound after Relay.Close: %v", err)
	}
	l.Close()
	// The collector was unregistered: a new relay can use the registry.
	r2, err := New(Config{PublicIP: "127.0.0.1", BindIP: "127.0.0.1", PortMin: base, PortMax: base + 63, Logger: discardLogger(), Metrics: reg})
	if err != nil {
		t.Fatalf("second relay on the same registry: %v", err)
	}
	r2.Close()
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	base := testPortBlock()
	r, err := New(Config{PublicIP: "127.0.0.1", BindIP: "127.0.0.1", PortMin: base, PortMax: base + 63, Logger: discardLogger(), Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c := newCall(t, r)
	stranger := newPhone(t, "127.0.0.9")
	stranger.send(c.a, rtpPacket(0, 1, 0, 1, 20))
	for i := 0; i < 3; i++ {
		p := rtpPacket(0, uint16(i), 0, 1, 20)
		c.aRTP.send(c.a, p)
		c.bRTP.expect(p, c.b)
	}
	check := func(name, label string, want float64) {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			for _, m := range mf.GetMetric() {
				if label != "" && (len(m.GetLabel()) == 0 || m.GetLabel()[0].GetValue() != label) {
					continue
				}
				v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
				if v != want {
					t.Errorf("%s{%s} = %v, want %v", name, label, v, want)
				}
				return
			}
		}
		t.Errorf("%s{%s} not found", name, label)
	}
	check("switchboard_media_packets_relayed_total", "", 3)
	check("switchboard_media_bytes_relayed_total", "", 3*32)
	check("switchboard_media_packets_dropped_total", "stranger", 1)
	check("switchboard_media_packets_dropped_total", "malformed", 0)
	check("switchboard_media_streams", "", 1)
	check("switchboard_media_port_pairs", "used", 2)
	c.s.Close()
	check("switchboard_media_packets_relayed_total", "", 3) // kept after close
	check("switchboard_media_streams", "", 0)
	check("switchboard_media_port_pairs", "used", 0)
	check("switchboard_media_streams_total", "", 1)
}

// TestNoAllocPerPacket relays packets both ways and counts the allocations
// of the whole process per round trip.
func TestNoAllocPerPacket(t *testing.T) {
	r := newTestRelay(t, func(c *Config) { c.Workers = 1 })
	c := newCall(t, r)
	p := rtpPacket(0, 1, 0, 0xa, 160)
	q := rtpPacket(0, 1, 0, 0xb, 160)
	buf := make([]byte, 2048)
	deadline := time.Now().Add(time.Minute)
	c.aRTP.conn.SetReadDeadline(deadline)
	c.bRTP.conn.SetReadDeadline(deadline)
	seq := uint16(0)
	round := func() {
		seq++
		binary.BigEndian.PutUint16(p[2:], seq)
		binary.BigEndian.PutUint16(q[2:], seq)
		c.aRTP.conn.WriteToUDPAddrPort(p, c.a)
		if _, _, err := c.bRTP.conn.ReadFromUDPAddrPort(buf); err != nil {
			t.Fatal(err)
		}
		c.bRTP.conn.WriteToUDPAddrPort(q, c.b)
		if _, _, err := c.aRTP.conn.ReadFromUDPAddrPort(buf); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 100; i++ {
		round()
	}
	if n := testing.AllocsPerRun(2000, round); n != 0 {
		t.Fatalf("%v allocations per round trip, want 0", n)
	}
}

func TestConfig(t *testing.T) {
	d := Config{}.withDefaults()
	if d.BindIP != "::" || d.PortMin != 10000 || d.PortMax != 20000 || d.Timeout != 60*time.Second ||
		d.Quarantine != 30*time.Second || d.SocketBuffer != 1<<20 || d.Workers < 1 {
		t.Fatalf("defaults = %+v", d)
	}
	if err := d.validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	bad := []struct {
		name string
		c    Config
	}{
		{"public ip", Config{PublicIP: "example.com"}},
		{"bind ip", Config{BindIP: "0.0.0"}},
		{"min above max", Config{PortMin: 20000, PortMax: 10000}},
		{"max too big", Config{PortMax: 70000}},
		{"negative min", Config{PortMin: -1}},
		{"one pair", Config{PortMin: 10000, PortMax: 10001}},
		{"odd range of three", Config{PortMin: 10001, PortMax: 10003}},
		{"negative buffer", Config{SocketBuffer: -1}},
		{"negative workers", Config{Workers: -2}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.c.withDefaults().validate(); err == nil {
				t.Error("validate accepted it")
			}
		})
	}
}

func TestSideString(t *testing.T) {
	if A.String() != "A" || B.String() != "B" || Side(5).String() != "?" {
		t.Fatal("Side.String")
	}
	s := &Stream{}
	if s.LocalPort(Side(3)) != 0 || s.Stats(Side(-1)) != (LegStats{}) {
		t.Fatal("invalid side not ignored")
	}
	s.SetPeer(Side(2), Peer{}) // ignored, must not panic
}

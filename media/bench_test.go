package media

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/srtp/v3"
)

func BenchmarkClassify(b *testing.B) {
	p := rtpPacket(0, 1, 0, 1, 160)
	b.ReportAllocs()
	for b.Loop() {
		classify(p, false)
	}
}

// BenchmarkAccept is the per-packet work of the relay besides the system
// calls: lock, source check, classification, statistics, destination.
func BenchmarkAccept(b *testing.B) {
	s := fuzzStream()
	from := netip.MustParseAddrPort("127.0.0.2:4000")
	p := rtpPacket(0, 1, 0, 1, 160)
	b.ReportAllocs()
	var seq uint16
	for b.Loop() {
		seq++
		binary.BigEndian.PutUint16(p[2:], seq)
		binary.BigEndian.PutUint32(p[4:], uint32(seq)*160)
		s.mu.Lock()
		if _, _, _, ok := s.accept(A, false, p, from, int64(seq)*20e6); !ok {
			b.Fatal("dropped")
		}
		s.mu.Unlock()
	}
}

// BenchmarkRelayLoopback sends 172-byte RTP packets through a real stream on
// loopback, in bursts of 16, and reads them on the far side. The time per
// packet includes the sending and receiving test sockets.
func BenchmarkRelayLoopback(b *testing.B) {
	for _, burst := range []int{1, 16} {
		b.Run(map[int]string{1: "burst1", 16: "burst16"}[burst], func(b *testing.B) {
			base := testPortBlock()
			r, err := New(Config{PublicIP: "127.0.0.1", BindIP: "127.0.0.1", PortMin: base, PortMax: base + 63,
				Timeout: -1, Quarantine: -1, Workers: 1, Logger: discardLogger()})
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			c := newCall(b, r)
			p := rtpPacket(0, 0, 0, 0xa, 160)
			buf := make([]byte, 2048)
			c.bRTP.conn.SetReadDeadline(time.Now().Add(10 * time.Minute))
			b.ReportAllocs()
			b.SetBytes(int64(len(p)))
			seq := uint16(0)
			n := 0
			for b.Loop() {
				seq++
				binary.BigEndian.PutUint16(p[2:], seq)
				c.aRTP.conn.WriteToUDPAddrPort(p, c.a)
				n++
				if n == burst {
					for ; n > 0; n-- {
						if _, _, err := c.bRTP.conn.ReadFromUDPAddrPort(buf); err != nil {
							b.Fatal(err)
						}
					}
				}
			}
			for ; n > 0; n-- {
				c.bRTP.conn.ReadFromUDPAddrPort(buf)
			}
		})
	}
}

// webrtcBenchStream is a stream whose side A is a WebRTC leg with SRTP
// keys in place (as after the handshake), side B plain; enc encrypts as
// the browser would.
func webrtcBenchStream(b *testing.B) (s *Stream, from netip.AddrPort, enc *srtp.Context) {
	s = fuzzStream()
	from = netip.MustParseAddrPort("127.0.0.2:4000")
	key, salt := make([]byte, 16), make([]byte, 14)
	ctx := func() *srtp.Context {
		c, err := srtp.CreateContext(key, salt, srtp.ProtectionProfileAes128CmHmacSha1_80)
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	s.mu.Lock()
	l := s.rtcLocked(A)
	l.checked, l.addr, l.ready, l.in, l.out = true, from, true, ctx(), ctx()
	s.legs[A].latched = [2]netip.AddrPort{from, from}
	s.mu.Unlock()
	return s, from, ctx()
}

// BenchmarkAcceptSRTP is BenchmarkAccept for a packet from a browser:
// SRTP decrypted in place (AES-CM, HMAC-SHA1-80) and relayed as RTP.
func BenchmarkAcceptSRTP(b *testing.B) {
	s, from, enc := webrtcBenchStream(b)
	const n = 4096 // packets encrypted ahead, outside the timed loop
	pkts := make([][]byte, n)
	for i := range pkts {
		p, err := enc.EncryptRTP(nil, rtpPacket(111, uint16(i+1), uint32(i)*960, 1, 160), nil)
		if err != nil {
			b.Fatal(err)
		}
		pkts[i] = p
	}
	buf := make([]byte, 0, 2048)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == n {
			b.StopTimer()
			s, from, enc = webrtcBenchStream(b) // fresh replay window for the same packets
			i = 0
			b.StartTimer()
		}
		p := append(buf[:0], pkts[i]...)
		i++
		s.mu.Lock()
		if _, _, _, ok := s.accept(A, false, p, from, int64(i)*20e6); !ok {
			b.Fatalf("dropped: %+v", s.legs[A].dropped)
		}
		s.mu.Unlock()
	}
	_ = enc
}

// BenchmarkAcceptToSRTP is a phone's RTP packet leaving towards a browser:
// encrypted in place.
func BenchmarkAcceptToSRTP(b *testing.B) {
	s, _, _ := webrtcBenchStream(b)
	from := netip.MustParseAddrPort("127.0.0.3:5000")
	tmpl := rtpPacket(111, 1, 0, 2, 160)
	p := make([]byte, len(tmpl), 2048)
	b.ReportAllocs()
	var seq uint16
	for b.Loop() {
		seq++
		q := p[:len(tmpl)]
		copy(q, tmpl) // encrypted in place last round
		binary.BigEndian.PutUint16(q[2:], seq)
		binary.BigEndian.PutUint32(q[4:], uint32(seq)*960)
		s.mu.Lock()
		if _, _, _, ok := s.accept(B, false, q, from, int64(seq)*20e6); !ok {
			b.Fatalf("dropped: %+v", s.legs[B].dropped)
		}
		s.mu.Unlock()
	}
}

package media

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"
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

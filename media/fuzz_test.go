package media

import (
	"net/netip"
	"testing"
	"time"
)

// fuzzStream returns a stream with no sockets whose side A expects
// 127.0.0.2 and side B 127.0.0.3, for feeding packets to accept directly.
func fuzzStream() *Stream {
	r := &Relay{cfg: Config{now: time.Now}, epoch: time.Now()}
	s := &Stream{r: r}
	s.SetPeer(A, Peer{RTP: netip.MustParseAddrPort("127.0.0.2:4000"), ClockRates: map[uint8]uint32{96: 48000}})
	s.SetPeer(B, Peer{RTP: netip.MustParseAddrPort("127.0.0.3:5000"), RTCPMux: true})
	return s
}

// FuzzPacket feeds arbitrary datagrams through classification, the
// statistics and a stream's accept path. The input is a series of records:
// a flags byte (bit 0: side B, bit 1: RTCP port, bit 2: from a stranger,
// bit 3: from another port of the party's IP), a length byte, then that many
// bytes. Nothing may panic and every datagram is either relayed or dropped.
func FuzzPacket(f *testing.F) {
	rec := func(flags byte, b []byte) []byte { return append([]byte{flags, byte(len(b))}, b...) }
	var seq []byte
	for i := 0; i < 5; i++ {
		seq = append(seq, rec(0, rtpPacket(0, uint16(65534+i), uint32(160*i), 1, 20))...)
	}
	f.Add(seq)
	f.Add(rec(2, rtcpPacket(1)))
	f.Add(rec(1, rtcpPacket(1)))
	f.Add(rec(4, rtpPacket(96, 1, 0, 1, 0)))
	f.Add(append(rec(0, rtpPacket(96, 1, 0, 1, 0)), rec(8, rtpPacket(96, 2, 960, 1, 0))...))
	f.Add(rec(0, []byte{0x90, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xbe, 0xde, 0xff, 0xff}))
	f.Add(rec(0, []byte{0xbf, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xff}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		s := fuzzStream()
		var fed [2]uint64
		now := int64(0)
		for len(data) >= 2 {
			flags, n := data[0], int(data[1])
			data = data[2:]
			if n > len(data) {
				n = len(data)
			}
			b := data[:n]
			data = data[n:]
			now += int64(flags) * int64(time.Millisecond)

			kind, _, ok := classify(b, flags&2 != 0)
			if ok {
				if len(b) < rtcpHeaderLen || (kind == kindRTP && len(b) < rtpHeaderLen) {
					t.Fatalf("classify accepted %d bytes as %v", len(b), kind)
				}
			}
			side := Side(flags & 1)
			from := netip.MustParseAddrPort("127.0.0.2:4000")
			if side == B {
				from = netip.MustParseAddrPort("127.0.0.3:5000")
			}
			if flags&4 != 0 {
				from = netip.MustParseAddrPort("127.0.0.9:6666")
			}
			if flags&8 != 0 {
				from = netip.AddrPortFrom(from.Addr(), from.Port()+1)
			}
			s.mu.Lock()
			_, dst, _, relayed := s.accept(side, flags&2 != 0, b, from, now)
			s.mu.Unlock()
			if relayed && !ok {
				t.Fatalf("relayed a datagram classify rejects: %x", b)
			}
			if relayed && !dst.IsValid() {
				t.Fatal("relayed to an invalid address")
			}
			fed[side]++
		}
		for _, side := range []Side{A, B} {
			st := s.Stats(side)
			s.mu.Lock()
			relayed := s.legs[side].relayed
			s.mu.Unlock()
			if relayed+st.Dropped != fed[side] {
				t.Fatalf("side %v: fed %d, relayed %d + dropped %d", side, fed[side], relayed, st.Dropped)
			}
			if st.Packets+st.RTCPPackets != relayed {
				t.Fatalf("side %v: counted %d+%d, relayed %d", side, st.Packets, st.RTCPPackets, relayed)
			}
		}
	})
}

package gateway

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// countingWriter stands in for pion's track writer.
type countingWriter struct{ n atomic.Int64 }

func (w *countingWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	w.n.Add(1)
	return len(payload), nil
}

func (w *countingWriter) Write(b []byte) (int, error) { w.n.Add(1); return len(b), nil }

// BenchmarkSIPToBrowser measures the gateway's own work for one RTP packet
// from the SIP side (read, payload type and SSRC rewrite, hand-over to the
// track writer): it must not allocate.
func BenchmarkSIPToBrowser(b *testing.B) {
	ip := netip.MustParseAddr("127.0.0.1")
	rtpC, rtcpC, err := newPortPool(ip, 0, 0).pair()
	if err != nil {
		b.Fatal(err)
	}
	s := newStream(0, "audio", rtpC, rtcpC, slog.Default())
	w := &countingWriter{}
	tr := newRelayTrack(kindOf("audio"), "a", "s")
	tr.binding.Store(&trackBinding{id: "x", ssrc: 1234, write: w})
	s.track.Store(tr)
	s.setCodecs([]codecPair{{Web: codec{PT: 0, Name: "PCMU", Clock: 8000}, SIP: codec{PT: 0, Name: "PCMU", Clock: 8000}}})
	s.setDirection(true, true)
	var wg sync.WaitGroup
	s.start(&wg)
	defer func() { s.close(); wg.Wait() }()

	src, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	dst := rtpC.LocalAddr().(*net.UDPAddr).AddrPort()
	pkt := make([]byte, 12+160)
	pkt[0], pkt[1] = 0x80, 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		pkt[3] = byte(i)
		if _, err := src.WriteToUDPAddrPort(pkt, dst); err != nil {
			b.Fatal(err)
		}
		// One packet in flight at a time, so none is dropped.
		for w.n.Load() < int64(i+1) {
			time.Sleep(time.Microsecond)
		}
	}
}

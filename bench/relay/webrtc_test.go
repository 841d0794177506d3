package main

import (
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/rtp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard/switchboard/media"
)

// inprocRelay is a media.Relay of this process as an rtcBackend.
type inprocRelay struct {
	r       *media.Relay
	streams []*media.Stream
}

func (p *inprocRelay) newRTCCall(_ int, br browserOffer, b netip.AddrPort) (relayAnswer, netip.AddrPort, error) {
	s, ans, toB, err := newRTCStream(p.r, br, b)
	if err == nil {
		p.streams = append(p.streams, s)
	}
	return ans, toB, err
}

func (p *inprocRelay) newCall(int, netip.AddrPort, netip.AddrPort) (netip.AddrPort, netip.AddrPort, error) {
	panic("not used")
}
func (p *inprocRelay) pid() int { return 0 }
func (p *inprocRelay) closeCalls() error {
	for _, s := range p.streams {
		s.Close()
	}
	return nil
}
func (p *inprocRelay) stop() {}

// BenchmarkWebRTCRelay relays, per operation, one SRTP packet from a
// browser (ICE and DTLS done with the load generator's client) through a
// WebRTC⇄plain stream of a media.Relay in this process to the phone, and
// one RTP packet from the phone back to the browser, which decrypts it.
// allocs/op counts the whole process: the relay's packet loops and the
// client, whose loop allocates nothing, so any allocation is the relay's.
//
//	go test -run '^$' -bench WebRTCRelay -benchmem ./bench/relay/
func BenchmarkWebRTCRelay(b *testing.B) {
	for name, profile := range srtpProfiles {
		b.Run(name, func(b *testing.B) { benchWebRTCRelay(b, profile) })
	}
}

func benchWebRTCRelay(b *testing.B, profile dtls.SRTPProtectionProfile) {
	r, err := media.New(media.Config{
		PublicIP: "127.0.0.1", BindIP: "127.0.0.1", PortMin: 42000, PortMax: 42999,
		Timeout: -1, Quarantine: -1, Workers: 1,
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		Metrics: prometheus.NewRegistry(),
	})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	browser, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
	if err != nil {
		b.Fatal(err)
	}
	defer browser.Close()
	phone, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 3)})
	if err != nil {
		b.Fatal(err)
	}
	defer phone.Close()
	be := &inprocRelay{r: r}
	calls := make([]callState, 1)
	cfg := loadConfig{duration: period, rtc: rtcConfig{profile: profile, parallel: 1, timeout: 10 * time.Second}}
	rtc, err := setupRTC(be, calls, []*net.UDPConn{browser}, []*net.UDPConn{phone}, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer closeRTC(rtc)
	defer be.closeCalls()
	c := rtc[0]
	toA := calls[0].dstA.AddrPort()
	toB := calls[0].dstB.AddrPort()

	plainA, plainB := newPacket(0, 0), newPacket(0, 1)
	enc := make([]byte, 0, 2048)
	dec := make([]byte, 0, 2048)
	buf := make([]byte, 2048)
	var hdr rtp.Header
	browser.SetReadDeadline(time.Now().Add(10 * time.Minute))
	phone.SetReadDeadline(time.Now().Add(10 * time.Minute))
	seq := uint16(len(c.pre) / c.stride) // after the pre-encrypted rounds
	b.ReportAllocs()
	for b.Loop() {
		seq++
		binary.BigEndian.PutUint16(plainA[2:], seq)
		out, err := c.tx.EncryptRTP(enc[:0], plainA, &hdr)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := browser.WriteToUDPAddrPort(out, toA); err != nil {
			b.Fatal(err)
		}
		n, _, err := phone.ReadFromUDPAddrPort(buf)
		if err != nil {
			b.Fatal(err)
		}
		if n != packetSize || binary.BigEndian.Uint16(buf[2:]) != seq {
			b.Fatalf("phone got %d bytes, seq %d, want %d", n, binary.BigEndian.Uint16(buf[2:]), seq)
		}
		binary.BigEndian.PutUint16(plainB[2:], seq)
		if _, err := phone.WriteToUDPAddrPort(plainB, toB); err != nil {
			b.Fatal(err)
		}
		for { // skip STUN and RTCP
			n, _, err = browser.ReadFromUDPAddrPort(buf)
			if err != nil {
				b.Fatal(err)
			}
			if n >= 12 && buf[0] >= 128 && buf[0] <= 191 && (buf[1] < 192 || buf[1] > 223) {
				break
			}
		}
		p, err := c.rx.DecryptRTP(dec[:0], buf[:n], &hdr)
		if err != nil {
			b.Fatal(err)
		}
		if len(p) != packetSize || binary.BigEndian.Uint16(p[2:]) != seq {
			b.Fatalf("browser got %d bytes, seq %d, want %d", len(p), binary.BigEndian.Uint16(p[2:]), seq)
		}
	}
}

// BenchmarkWebRTCSetup sets up b.N WebRTC⇄plain calls (signalling, ICE,
// DTLS, SRTP keys) on a media.Relay of this process and reports what they
// hold once set up: heap and goroutine stacks per call, both the relay's
// and the client's (the client's are measured apart, with the calls set up
// and closed relay-side: see clientHeap), and goroutines per call.
//
//	go test -run '^$' -bench WebRTCSetup -benchtime 200x ./bench/relay/
func BenchmarkWebRTCSetup(b *testing.B) {
	if b.N > 900 {
		b.Fatalf("%d calls: the port range holds 1000 streams; use -benchtime 200x", b.N)
	}
	r, err := media.New(media.Config{
		PublicIP: "127.0.0.1", BindIP: "127.0.0.1", PortMin: 43000, PortMax: 46999,
		Timeout: -1, Quarantine: -1, Workers: 1,
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		Metrics: prometheus.NewRegistry(),
	})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	browser, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
	if err != nil {
		b.Fatal(err)
	}
	defer browser.Close()
	phone, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 3)})
	if err != nil {
		b.Fatal(err)
	}
	defer phone.Close()
	be := &inprocRelay{r: r}
	before := memNow()
	b.ResetTimer()
	calls := make([]callState, b.N)
	cfg := loadConfig{duration: period, rtc: rtcConfig{profile: dtls.SRTP_AES128_CM_HMAC_SHA1_80, parallel: 4, timeout: 20 * time.Second}}
	rtc, err := setupRTC(be, calls, []*net.UDPConn{browser}, []*net.UDPConn{phone}, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	for _, c := range rtc { // the pre-encrypted packets are the generator's, not per call state
		c.pre = nil
	}
	both := memNow()
	be.closeCalls()
	be.streams = nil
	time.Sleep(100 * time.Millisecond) // let the relay's DTLS goroutines end
	client := memNow()
	closeRTC(rtc)
	time.Sleep(100 * time.Millisecond)
	after := memNow()
	n := float64(b.N)
	b.ReportMetric(float64(after.goroutines-before.goroutines), "goroutines-left")
	b.ReportMetric(float64(both.heap-client.heap)/n/1024, "relay-heap-KiB/call")
	b.ReportMetric(float64(both.stack-client.stack)/n/1024, "relay-stack-KiB/call")
	b.ReportMetric(float64(both.goroutines-client.goroutines)/n, "relay-goroutines/call")
	b.ReportMetric(float64(client.heap-before.heap)/n/1024, "client-heap-KiB/call")
	b.ReportMetric(float64(client.goroutines-before.goroutines)/n, "client-goroutines/call")
}

type memSample struct{ heap, stack, goroutines int64 }

func memNow() memSample {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return memSample{int64(m.HeapInuse), int64(m.StackInuse), int64(runtime.NumGoroutine())}
}

package gateway

import (
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// packetSize is the size of the buffers packets are read into: an Ethernet
// MTU's worth and some.
const packetSize = 1600

// maxErrors bounds the read errors in a row a packet loop tolerates (a
// packet of an unknown payload type is one) before it gives up.
const maxErrors = 1000

// keyframeInterval rate-limits the picture loss indications the gateway
// passes on, so a burst of them asks for one key frame.
const keyframeInterval = 300 * time.Millisecond

// stream relays one m-line: plain RTP/RTCP on two gateway sockets facing
// the SIP side, SRTP through a pion track facing the browser. Each
// direction runs in its own goroutine reading into a buffer it owns, so
// relaying a packet allocates nothing in the gateway's code.
type stream struct {
	index  int // m-line on the SIP side
	webIdx int // m-line of the browser's offer (outgoing calls)
	kind   string
	log    *slog.Logger

	rtpConn, rtcpConn *net.UDPConn

	track      atomic.Pointer[relayTrack] // toward the browser; nil until a peer is chosen
	pc         atomic.Pointer[webrtc.PeerConnection]
	remoteRTP  atomic.Pointer[netip.AddrPort] // the SIP party, from its SDP
	remoteRTCP atomic.Pointer[netip.AddrPort]
	maps       atomic.Pointer[ptMaps]
	toSIP      atomic.Bool // the SIP party receives (its SDP direction)
	toWeb      atomic.Bool // the SIP party sends and we relay it

	sipSSRC atomic.Uint32 // SSRC the SIP party sends with
	webSSRC atomic.Uint32 // SSRC of the browser's track on this m-line
	ownSSRC uint32        // sender SSRC of the RTCP the gateway writes to the SIP side

	lastKeyToWeb, lastKeyToSIP atomic.Int64 // unix nanoseconds

	onDTMF func(digit string)

	// Counters, read by tests and logs.
	fromSIP, fromWeb atomic.Uint64
}

// ptMaps is one negotiation's payload type translation.
type ptMaps struct {
	sipToWeb, webToSIP *ptMap
	sipDTMF            int // telephone-event type on the SIP side, -1 if none
}

func newStream(index int, kind string, rtpConn, rtcpConn *net.UDPConn, log *slog.Logger) *stream {
	s := &stream{index: index, kind: kind, rtpConn: rtpConn, rtcpConn: rtcpConn, log: log}
	s.ownSSRC = randUint32()
	return s
}

func (s *stream) localPorts() (int, int) {
	return s.rtpConn.LocalAddr().(*net.UDPAddr).Port, s.rtcpConn.LocalAddr().(*net.UDPAddr).Port
}

// setRemote points the SIP side of the stream at what the party's SDP says.
func (s *stream) setRemote(m mediaDesc) {
	rtpA, rtcpA := m.rtpAddr(), m.rtcpAddr()
	s.remoteRTP.Store(&rtpA)
	s.remoteRTCP.Store(&rtcpA)
}

// setCodecs installs the payload type translation of the agreed codecs.
func (s *stream) setCodecs(pairs []codecPair) {
	sw, ws, dtmf := newPTMaps(pairs)
	s.maps.Store(&ptMaps{sipToWeb: sw, webToSIP: ws, sipDTMF: dtmf})
}

// setDirection says what the SIP party does now: whether it sends (relayed
// to the browser) and receives (the browser's media relayed to it).
func (s *stream) setDirection(sipSends, sipReceives bool) {
	s.toWeb.Store(sipSends)
	s.toSIP.Store(sipReceives)
}

// close closes the sockets, which ends the SIP-side loops.
func (s *stream) close() {
	s.rtpConn.Close()
	s.rtcpConn.Close()
}

// start runs the SIP-side loops in wg.
func (s *stream) start(wg *sync.WaitGroup) {
	wg.Add(2)
	go func() { defer wg.Done(); s.sipRTPLoop() }()
	go func() { defer wg.Done(); s.sipRTCPLoop() }()
}

// readLoop reads packets into buf with read and hands each to handle,
// until the source is closed (closed recognises the error that says so)
// or maxErrors reads in a row fail (a packet of an unknown payload type is
// one). buf is the loop's own: nothing is allocated per packet.
func readLoop(buf []byte, read func([]byte) (int, error), closed func(error) bool, handle func(n int)) {
	for errs := 0; errs < maxErrors; {
		n, err := read(buf)
		if err != nil {
			if closed(err) {
				return
			}
			errs++
			continue
		}
		errs = 0
		handle(n)
	}
}

// readUDP reads a datagram from c, whoever sent it.
func readUDP(c *net.UDPConn) func([]byte) (int, error) {
	return func(b []byte) (int, error) {
		n, _, err := c.ReadFromUDPAddrPort(b)
		return n, err
	}
}

// readPion reads from a pion track or RTP sender, without the attributes.
func readPion(read func([]byte) (int, interceptor.Attributes, error)) func([]byte) (int, error) {
	return func(b []byte) (int, error) {
		n, _, err := read(b)
		return n, err
	}
}

// isNetClosed reports a read from a socket we closed.
func isNetClosed(err error) bool { return errors.Is(err, net.ErrClosed) }

// sipRTPLoop relays RTP from the SIP party to the browser, translating the
// payload type and noting RFC 4733 telephone-events.
func (s *stream) sipRTPLoop() {
	buf := make([]byte, packetSize)
	var hdr rtp.Header
	var lastEventTS uint32
	haveEvent := false
	readLoop(buf, readUDP(s.rtpConn), isNetClosed, func(n int) {
		maps := s.maps.Load()
		tr := s.track.Load()
		if maps == nil || tr == nil || n < 12 || buf[0]>>6 != 2 || !s.toWeb.Load() {
			return
		}
		hl, err := hdr.Unmarshal(buf[:n])
		if err != nil {
			return
		}
		pt := hdr.PayloadType & 0x7f
		webPT := maps.sipToWeb[pt]
		if webPT == noPT {
			return
		}
		end := n
		if hdr.Padding {
			pad := int(buf[n-1])
			if pad == 0 || hl+pad > n {
				return
			}
			end = n - pad
			hdr.Padding = false
			hdr.PaddingSize = 0
		}
		payload := buf[hl:end]
		if int(pt) == maps.sipDTMF && len(payload) >= 4 && s.onDTMF != nil {
			// RFC 4733 §2.5.1: one event is one timestamp; report it once.
			if !haveEvent || hdr.Timestamp != lastEventTS {
				haveEvent, lastEventTS = true, hdr.Timestamp
				if ev := payload[0]; ev < 16 {
					s.onDTMF(dtmfDigits[ev : ev+1])
				}
			}
		}
		s.sipSSRC.Store(hdr.SSRC)
		hdr.PayloadType = webPT
		hdr.Extension = false
		hdr.Extensions = hdr.Extensions[:0]
		if tr.writeRTP(&hdr, payload) {
			s.fromSIP.Add(1)
		}
	})
}

// dtmfDigits are the RFC 4733 §3.2 events 0-15.
const dtmfDigits = "0123456789*#ABCD"

// sipRTCPLoop passes the SIP party's requests for a key frame (PLI, FIR) on
// to the browser. Other RTCP describes the SIP leg only and stops here.
func (s *stream) sipRTCPLoop() {
	buf := make([]byte, packetSize)
	readLoop(buf, readUDP(s.rtcpConn), isNetClosed, func(n int) {
		if wantsKeyframe(buf[:n]) {
			s.keyframeToWeb()
		}
	})
}

// keyframeToWeb asks the browser for a key frame of its video.
func (s *stream) keyframeToWeb() {
	pc, ssrc := s.pc.Load(), s.webSSRC.Load()
	if pc == nil || ssrc == 0 || !rateOK(&s.lastKeyToWeb) {
		return
	}
	_ = pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{SenderSSRC: s.ownSSRC, MediaSSRC: ssrc}})
}

// webLoop relays the browser's RTP for this m-line to the SIP party.
func (s *stream) webLoop(tr *webrtc.TrackRemote) {
	s.webSSRC.Store(uint32(tr.SSRC()))
	buf := make([]byte, packetSize)
	readLoop(buf, readPion(tr.Read), isClosedErr, func(n int) {
		maps := s.maps.Load()
		dst := s.remoteRTP.Load()
		if maps == nil || dst == nil || n < 12 || !s.toSIP.Load() {
			return
		}
		sipPT := maps.webToSIP[buf[1]&0x7f]
		if sipPT == noPT {
			return
		}
		buf[1] = buf[1]&0x80 | sipPT
		if _, err := s.rtpConn.WriteToUDPAddrPort(buf[:n], *dst); err == nil {
			s.fromWeb.Add(1)
		}
	})
}

// senderRTCPLoop reads the browser's RTCP about what the gateway sends it
// (pion's interceptors need it read) and passes its key frame requests on
// to the SIP party as a PLI.
func (s *stream) senderRTCPLoop(sender *webrtc.RTPSender) {
	buf := make([]byte, packetSize)
	var pli [12]byte
	readLoop(buf, readPion(sender.Read), isClosedErr, func(n int) {
		if !wantsKeyframe(buf[:n]) {
			return
		}
		dst, ssrc := s.remoteRTCP.Load(), s.sipSSRC.Load()
		if dst == nil || ssrc == 0 || !rateOK(&s.lastKeyToSIP) {
			return
		}
		s.pliToSIP(&pli, *dst, ssrc)
	})
}

// keyframeToSIP asks the SIP party for a key frame (when the browser's
// media starts, so that its first picture comes quickly).
func (s *stream) keyframeToSIP() {
	dst, ssrc := s.remoteRTCP.Load(), s.sipSSRC.Load()
	if dst == nil || ssrc == 0 || s.kind != "video" {
		return
	}
	var pli [12]byte
	s.pliToSIP(&pli, *dst, ssrc)
}

// pliToSIP sends the SIP party a picture loss indication for its SSRC,
// written into pli (RFC 4585 §6.3.1: PT=PSFB (206), FMT=1, length 2).
func (s *stream) pliToSIP(pli *[12]byte, dst netip.AddrPort, ssrc uint32) {
	pli[0], pli[1] = 0x80|1, 206
	binary.BigEndian.PutUint16(pli[2:], 2)
	binary.BigEndian.PutUint32(pli[4:], s.ownSSRC)
	binary.BigEndian.PutUint32(pli[8:], ssrc)
	_, _ = s.rtcpConn.WriteToUDPAddrPort(pli[:], dst)
}

// wantsKeyframe reports whether a (compound) RTCP packet holds a PLI
// (RFC 4585 §6.3.1) or a FIR (RFC 5104 §4.3.1). It walks the packet
// headers without allocating.
func wantsKeyframe(b []byte) bool {
	for len(b) >= 4 {
		if b[0]>>6 != 2 {
			return false
		}
		fmt, pt := b[0]&0x1f, b[1]
		l := (int(binary.BigEndian.Uint16(b[2:])) + 1) * 4
		if l > len(b) {
			return false
		}
		if pt == 206 && (fmt == 1 || fmt == 4) {
			return true
		}
		b = b[l:]
	}
	return false
}

func rateOK(last *atomic.Int64) bool {
	now := time.Now().UnixNano()
	prev := last.Load()
	if now-prev < int64(keyframeInterval) {
		return false
	}
	return last.CompareAndSwap(prev, now)
}

func isClosedErr(err error) bool {
	for _, target := range []error{io.EOF, io.ErrClosedPipe, net.ErrClosed} {
		if errors.Is(err, target) {
			return true
		}
	}
	s := err.Error()
	return strings.Contains(s, "closed") || strings.Contains(s, "EOF")
}

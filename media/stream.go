package media

import (
	"net/netip"
	"sync"
	"sync/atomic"
)

// Side names one of the two parties of a Stream.
type Side int

const (
	// A is the side facing the caller: the caller sends to A's ports.
	A Side = iota
	// B is the side facing the callee: the callee sends to B's ports.
	B
)

// String returns "A" or "B".
func (s Side) String() string {
	switch s {
	case A:
		return "A"
	case B:
		return "B"
	}
	return "?"
}

func (s Side) other() Side { return 1 - s }

func (s Side) valid() bool { return s == A || s == B }

// Peer is what the proxy learned about the party on one side of a Stream,
// from its SDP and its SIP messages.
type Peer struct {
	// RTP is the address the party signalled for RTP (SDP c= and m= port).
	// Until the side latches, packets towards the party go here. An invalid
	// or unspecified address (c=0.0.0.0, RFC 3264 §8.4 hold) means nowhere:
	// packets towards the party are dropped until it sends from an allowed
	// IP (so put its SIP source in Allowed).
	RTP netip.AddrPort
	// RTCP is the address the party signalled for RTCP (a=rtcp, RFC 3605).
	// Zero: the RTP port plus one (RFC 3550 §11).
	RTCP netip.AddrPort
	// RTCPMux says the party multiplexes RTCP on its RTP port (RFC 5761):
	// RTCP towards it then leaves from our RTP port to its RTP address.
	RTCPMux bool
	// Allowed lists the source IPs accepted before the side has latched,
	// besides the IP of RTP and RTCP: typically the party's SIP source
	// address. Packets from any other IP are dropped, so that a stranger
	// cannot take over the stream.
	Allowed []netip.Addr
	// ClockRate is the RTP clock rate, in Hz, of dynamic payload types
	// without an entry in ClockRates, used for jitter. Zero: 8000.
	ClockRate uint32
	// ClockRates gives the clock rate of payload types (SDP a=rtpmap).
	// Static payload types default to their RFC 3551 rates.
	ClockRates map[uint8]uint32
	// WebRTC, when set, makes the side a WebRTC leg: the relay speaks ICE
	// (lite) and DTLS-SRTP with the party, which it reaches at the source
	// of its connectivity checks (RTP, RTCP and Allowed are then not used).
	WebRTC *WebRTCPeer
}

// port indexes: a side's RTP and RTCP sockets.
const (
	portRTP  = 0
	portRTCP = 1
)

// leg is the state of one side of a Stream. The Stream's lock guards it.
type leg struct {
	socks [2]*sock // RTP, RTCP; set before the stream is started
	port  int      // RTP port
	pair  int32

	hasPeer bool
	dst     [2]netip.AddrPort // signalled RTP, RTCP destinations
	mux     bool
	allowed []netip.Addr
	latched [2]netip.AddrPort
	rates   [128]uint32

	rx                     rxStats
	packets, bytes         uint64
	rtcpPackets, rtcpBytes uint64
	relayed, relayedBytes  uint64 // accepted from this party and sent on
	dropped                [numDropReasons]uint64

	rtc *rtcLeg // nil: plain RTP
}

// Stream relays one media stream (one SDP m-line) between the party on side
// A and the party on side B. Its methods are safe for concurrent use.
type Stream struct {
	r         *Relay
	onTimeout func()

	// lastActive is when the stream last showed life (creation, SetPeer,
	// a packet from either party), in relay clock nanoseconds.
	lastActive atomic.Int64
	timedOut   atomic.Bool

	mu        sync.Mutex
	legs      [2]leg
	closed    bool
	onFailure func(error)

	hasRTC   atomic.Bool    // a side is (or was) a WebRTC leg
	failOnce atomic.Bool    // onFailure was called
	rtcWG    sync.WaitGroup // DTLS handshake goroutines

	eng streamEngine // engine-specific state
}

// LocalPort returns the RTP port of a side (its RTCP port is one higher):
// the port written into the SDP sent to that side's party.
func (s *Stream) LocalPort(side Side) int {
	if !side.valid() {
		return 0
	}
	return s.legs[side].port // set before the Stream is returned, never changed
}

// SetPeer tells the stream where the party on side is and which sources it
// may send from. It can be called again (re-INVITE with a new address, hold,
// resume): the side keeps its ports, forgets the address it latched onto and
// latches afresh. It also restarts the idle timer.
func (s *Stream) SetPeer(side Side, p Peer) {
	if !side.valid() {
		return
	}
	rtp := unmapAP(p.RTP)
	if !rtp.Addr().IsValid() || rtp.Addr().IsUnspecified() || rtp.Port() == 0 {
		rtp = netip.AddrPort{}
	}
	rtcp := unmapAP(p.RTCP)
	switch {
	case p.RTCPMux:
		rtcp = rtp
	case !rtcp.IsValid() && rtp.IsValid() && rtp.Port() < 65535:
		rtcp = netip.AddrPortFrom(rtp.Addr(), rtp.Port()+1)
	case rtcp.IsValid() && (rtcp.Addr().IsUnspecified() || rtcp.Port() == 0):
		rtcp = netip.AddrPort{}
	}
	allowed := make([]netip.Addr, 0, len(p.Allowed)+2)
	add := func(a netip.Addr) {
		a = a.Unmap()
		if !a.IsValid() || a.IsUnspecified() {
			return
		}
		for _, b := range allowed {
			if a == b {
				return
			}
		}
		allowed = append(allowed, a)
	}
	add(rtp.Addr())
	add(rtcp.Addr())
	for _, a := range p.Allowed {
		add(a)
	}
	def := p.ClockRate
	if def == 0 {
		def = 8000
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	l := &s.legs[side]
	l.hasPeer = true
	if p.WebRTC != nil {
		// Reached where its checks come from, RTCP multiplexed (RFC 8834
		// §5.1.1); a re-INVITE keeps the ICE and DTLS state.
		s.hasRTC.Store(true)
		s.setRemoteLocked(side, *p.WebRTC)
		rtp, rtcp, allowed = netip.AddrPort{}, netip.AddrPort{}, nil
		p.RTCPMux = true
	} else if l.rtc != nil {
		if l.rtc.dtls != nil {
			l.rtc.dtls.close()
		}
		l.rtc = nil
		l.latched = [2]netip.AddrPort{}
	}
	l.dst = [2]netip.AddrPort{rtp, rtcp}
	l.mux = p.RTCPMux
	l.allowed = allowed
	if l.rtc == nil {
		l.latched = [2]netip.AddrPort{}
	}
	for pt := range l.rates {
		if r := staticClockRates[pt]; r != 0 {
			l.rates[pt] = r
		} else {
			l.rates[pt] = def
		}
	}
	for pt, r := range p.ClockRates {
		if pt < 128 && r != 0 {
			l.rates[pt] = r
		}
	}
	s.lastActive.Store(s.r.clock())
}

// Stats returns what the stream has received from the party on side so far.
// It stays readable after Close, for the call record.
func (s *Stream) Stats(side Side) LegStats {
	if !side.valid() {
		return LegStats{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l := &s.legs[side]
	st := LegStats{
		Packets:     l.packets,
		Bytes:       l.bytes,
		RTCPPackets: l.rtcpPackets,
		RTCPBytes:   l.rtcpBytes,
		Lost:        l.rx.lost(),
		Jitter:      l.rx.jitter(),
		Latched:     l.latched[portRTP],
	}
	for _, n := range l.dropped {
		st.Dropped += n
	}
	return st
}

// Close stops relaying, closes the stream's sockets and puts its ports into
// quarantine before it returns. It is idempotent, and it does not call
// onTimeout.
func (s *Stream) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()
	s.closeRTC()
	s.r.removeStream(s)
}

// armed reports whether the idle timer runs: once both parties are known.
// Before the answer only one side has a peer and there is no media to miss.
func (s *Stream) armed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.closed && s.legs[A].hasPeer && s.legs[B].hasPeer
}

// accept processes one datagram b that arrived from `from` on side's RTP
// port (rtcpPort false) or RTCP port, at relay clock time now. It updates
// the side's counters and, if the datagram is to be relayed, returns the
// socket to send it from and the destination. The caller holds s.mu.
func (s *Stream) accept(side Side, rtcpPort bool, b []byte, from netip.AddrPort, now int64) (*sock, netip.AddrPort, []byte, bool) {
	if s.closed {
		return nil, netip.AddrPort{}, nil, false
	}
	l := &s.legs[side]
	pi := portRTP
	if rtcpPort {
		pi = portRTCP
	}
	from = unmapAP(from)

	// Symmetric RTP (RFC 4961): once latched, only the latched source is
	// accepted; before, only sources whose IP the proxy allowed. A WebRTC
	// leg latches on ICE instead, and its packets are decrypted first.
	latch := false
	if l.rtc != nil {
		if rtcpPort {
			l.dropped[dropStranger]++ // RTCP is multiplexed on WebRTC legs
			return nil, netip.AddrPort{}, nil, false
		}
		out, reply, relay := s.acceptRTC(side, b, from, now)
		switch {
		case reply:
			return l.socks[portRTP], from, out, true
		case !relay:
			return nil, netip.AddrPort{}, nil, false
		}
		b = out
	} else if lt := l.latched[pi]; lt.IsValid() {
		if from != lt {
			l.dropped[dropStranger]++
			return nil, netip.AddrPort{}, nil, false
		}
	} else if !l.isAllowed(from.Addr()) {
		l.dropped[dropStranger]++
		return nil, netip.AddrPort{}, nil, false
	} else {
		latch = true
	}

	kind, reason, ok := classify(b, rtcpPort)
	if !ok {
		l.dropped[reason]++
		return nil, netip.AddrPort{}, nil, false
	}
	if latch {
		l.latched[pi] = from
	}
	s.lastActive.Store(now)

	if kind == kindRTP {
		l.packets++
		l.bytes += uint64(len(b))
		f := parseRTP(b)
		l.rx.update(f, now, l.rates[f.pt])
	} else {
		// Multiplexed RTCP (RFC 5761 §4) is counted apart and does not
		// enter the RTP sequence and jitter statistics.
		l.rtcpPackets++
		l.rtcpBytes += uint64(len(b))
	}

	// RTP to the RTP port, RTCP to the RTCP port unless the other party
	// multiplexes (RFC 5761 §5.1.3), whichever port it came in on.
	o := &s.legs[side.other()]
	oi := portRTP
	if kind == kindRTCP && !o.mux {
		oi = portRTCP
	}
	dst := o.latched[oi]
	if !dst.IsValid() {
		dst = o.dst[oi]
	}
	if !dst.IsValid() {
		l.dropped[dropUnroutable]++
		return nil, netip.AddrPort{}, nil, false
	}
	if o.rtc != nil {
		sealed, ok := s.sealRTC(side.other(), kind, b)
		if !ok {
			l.dropped[dropNotReady]++
			return nil, netip.AddrPort{}, nil, false
		}
		b = sealed
	}
	l.relayed++
	l.relayedBytes += uint64(len(b))
	return o.socks[oi], dst, b, true
}

// drop counts n datagrams received on side that were not relayed for reason.
// The caller holds s.mu.
func (s *Stream) drop(side Side, reason dropReason, n uint64) {
	s.legs[side].dropped[reason] += n
}

// unsent takes back n datagrams from side that accept let through but the
// kernel would not send. The caller holds s.mu.
func (s *Stream) unsent(side Side, n, bytes uint64) {
	l := &s.legs[side]
	l.relayed -= n
	l.relayedBytes -= bytes
	l.dropped[dropSendError] += n
}

func (l *leg) isAllowed(ip netip.Addr) bool {
	for _, a := range l.allowed {
		if a == ip {
			return true
		}
	}
	return false
}

func unmapAP(ap netip.AddrPort) netip.AddrPort {
	if ap.Addr().Is4In6() {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return ap
}

package sip

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	gosip "github.com/emiago/sipgo/sip"

	"github.com/switchboard/switchboard/media"
)

// Media relay modes (Config.MediaMode).
const (
	RelayAlways = "always" // every call's media goes through the relay
	RelayNAT    = "nat"    // only when a party is behind NAT
	RelayNever  = "never"  // SDP passes untouched
)

// mediaSession anchors the media of one call at the relay: one relay
// Stream per m-line, side A facing the caller and side B the callee. It
// rewrites each SDP so the other party sends to the relay, converting
// between WebRTC (ICE, DTLS-SRTP) and plain RTP where the parties differ,
// and keeps the same ports across re-INVITEs (hold, resume, a party that
// moved, video added).
type mediaSession struct {
	relay *media.Relay

	mu      sync.Mutex
	streams []*media.Stream
	closed  bool
	timeout func()
	fail    func(error)

	kind      [2]legKind // what each party speaks, once known
	offerFrom int        // side whose SDP was the latest offer, -1 before any
	// last SDP each side sent, whether it was an offer, and the a=setup of
	// its m-lines (for the DTLS role of the answer written to it); a
	// retransmitted or re-sent body is recognised without touching the
	// streams (which would reset their latching).
	lastIn [2][]byte
	offer  [2]bool
	setups [2][]string
	out    [2]map[renderKey][]byte // rendered SDP of the other side's last body, by form
	peer   [2]netip.Addr           // each party's SIP source, for the address family
}

// renderKey is the form an SDP is written in: the party's kind and whether
// it gets the relay's IPv6 address.
type renderKey struct {
	kind legKind
	v6   bool
}

// legKind is what a party speaks.
type legKind uint8

const (
	kindUnknown legKind = iota
	kindPlain           // RTP/AVP(F), maybe SDES later
	kindWebRTC          // UDP/TLS/RTP/SAVPF: ICE and DTLS-SRTP
)

func (k legKind) String() string {
	switch k {
	case kindPlain:
		return "plain"
	case kindWebRTC:
		return "webrtc"
	}
	return "unknown"
}

// transportKind is what a party on a SIP transport is presumed to speak
// before its SDP says: a WebSocket flow is a browser (RFC 7118).
func transportKind(transport string) legKind {
	switch strings.ToUpper(transport) {
	case "WS", "WSS":
		return kindWebRTC
	}
	return kindPlain
}

// sdpKind is what an SDP says its sender speaks.
func sdpKind(body []byte) (legKind, bool) {
	w, ok := isWebRTCSDP(body)
	switch {
	case !ok:
		return kindUnknown, false
	case w:
		return kindWebRTC, true
	}
	return kindPlain, true
}

func newMediaSession(relay *media.Relay) *mediaSession {
	return &mediaSession{relay: relay, offerFrom: -1}
}

func other(side media.Side) media.Side {
	if side == media.A {
		return media.B
	}
	return media.A
}

// isAnswer reports whether an SDP from side in a response answers the
// latest offer (which then came from the other side); a 2xx to an INVITE
// without SDP carries the offer instead (RFC 3264 §4, RFC 3261 §13.2.1).
func (m *mediaSession) isAnswer(side media.Side) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.offerFrom == int(other(side))
}

// apply takes an SDP sent by the party on side (an offer, or the answer to
// the other side's offer), and tells the relay where that party wants
// media. sipSource is the party's SIP source address: plain media from
// there is accepted before the stream latches.
func (m *mediaSession) apply(side media.Side, body []byte, sipSource netip.Addr, offer bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errors.New("media session closed")
	}
	if bytes.Equal(m.lastIn[side], body) && m.offer[side] == offer {
		return nil
	}
	_, lines, err := parseSDP(body)
	if err != nil {
		return err
	}
	for len(m.streams) < len(lines) {
		st, err := m.relay.NewStream(m.timeout)
		if err != nil {
			return err
		}
		if m.fail != nil {
			st.OnFailure(m.fail)
		}
		m.streams = append(m.streams, st)
	}
	m.kind[side] = kindPlain
	setups := make([]string, len(lines))
	for i, l := range lines {
		if l.disabled {
			continue
		}
		w := l.webRTC()
		if w != nil {
			m.kind[side] = kindWebRTC
			setups[i] = w.Setup
		}
		allowed := []netip.Addr{}
		if sipSource.IsValid() {
			allowed = append(allowed, sipSource.Unmap())
		}
		m.streams[i].SetPeer(side, media.Peer{
			RTP: l.rtp, RTCP: l.rtcp, RTCPMux: l.mux, Allowed: allowed,
			ClockRate: l.clock, ClockRates: l.clockRates, WebRTC: w,
		})
	}
	m.lastIn[side] = append([]byte(nil), body...)
	if sipSource.IsValid() {
		m.peer[side] = sipSource.Unmap()
	}
	m.offer[side] = offer
	m.setups[side] = setups
	m.out[side] = nil
	if offer {
		m.offerFrom = int(side)
	}
	return nil
}

// render writes the last SDP of the party on side's other for the party on
// `to`, pointing at the relay, in the form that party speaks: kind[to] once
// its SDP was seen, else hint (from its transport); and with the relay's
// address of the party's family: that of its own SDP, else of dest (the
// branch's destination), else of its SIP source.
func (m *mediaSession) render(to media.Side, hint legKind, dest netip.Addr) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, errors.New("media session closed")
	}
	from := other(to)
	body := m.lastIn[from]
	if body == nil {
		return nil, errors.New("no SDP to render")
	}
	kind := m.kind[to]
	if kind == kindUnknown {
		kind = hint
	}
	peer := sdpPeer(m.lastIn[to])
	if !peer.IsValid() {
		peer = dest
	}
	if !peer.IsValid() {
		peer = m.peer[to]
	}
	ip := m.relay.PublicIPFor(peer)
	key := renderKey{kind, ip.Is6()}
	if out, ok := m.out[from][key]; ok {
		return out, nil
	}
	sd, _, err := parseSDP(body)
	if err != nil {
		return nil, err
	}
	n := len(sd.MediaDescriptions)
	f := sdpForm{
		ip: ip, ports: make([]int, n),
		webrtc: kind == kindWebRTC, convert: kind != m.kind[from],
		offer: m.offer[from], theirSetup: m.setups[to],
	}
	if f.webrtc {
		f.fingerprint = m.relay.Fingerprint()
		f.ice = make([][2]string, n)
	}
	for i := 0; i < n; i++ {
		f.ports[i] = m.streams[i].LocalPort(to)
		if f.webrtc && sd.MediaDescriptions[i].MediaName.Port.Value != 0 {
			u, p := m.streams[i].LocalICE(to)
			f.ice[i] = [2]string{u, p}
		}
	}
	out, err := renderSDP(sd, f)
	if err != nil {
		return nil, err
	}
	if m.out[from] == nil {
		m.out[from] = map[renderKey][]byte{}
	}
	m.out[from][key] = out
	return out, nil
}

// close releases the relay ports and returns the media statistics of the
// call for its record.
func (m *mediaSession) close() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ""
	}
	m.closed = true
	var b strings.Builder
	for i, st := range m.streams {
		for _, side := range []media.Side{media.A, media.B} {
			s := st.Stats(side)
			who := "caller"
			if side == media.B {
				who = "callee"
			}
			if b.Len() > 0 {
				b.WriteString("; ")
			}
			fmt.Fprintf(&b, "m%d %s: pkts=%d bytes=%d lost=%d jitter=%.1fms dropped=%d",
				i, who, s.Packets, s.Bytes, s.Lost, float64(s.Jitter)/float64(time.Millisecond), s.Dropped)
		}
		st.Close()
	}
	return b.String()
}

// wantsRelay decides, for the media modes, whether a new call's media is
// anchored: always; never; or (nat) when the caller's SDP names another
// address than it sends SIP from, or a callee contact is behind NAT. In
// every mode a call between a WebRTC party and a plain RTP one is
// anchored, as it can have no media otherwise; WebRTC parties calling
// each other do their own ICE, so NAT alone does not anchor them.
func (s *Server) wantsRelay(req *gosip.Request, targets []target) bool {
	if s.cfg.MediaRelay == nil {
		return false
	}
	caller := callerKind(req)
	allWebRTC := caller == kindWebRTC
	for _, t := range targets {
		k := transportKind(t.transport)
		if k != caller {
			return true
		}
		allWebRTC = allWebRTC && k == kindWebRTC
	}
	switch {
	case s.cfg.MediaMode == RelayNever:
		return false
	case s.cfg.MediaMode == RelayAlways:
		return true
	case allWebRTC:
		return false
	}
	for _, t := range targets {
		if t.nat {
			return true
		}
	}
	src, _ := netip.ParseAddrPort(req.Source())
	if _, lines, err := parseSDP(req.Body()); err == nil {
		for _, l := range lines {
			if !l.disabled && l.rtp.Addr() != src.Addr().Unmap() {
				return true
			}
		}
	}
	if c := req.Contact(); c != nil && reachedElsewhere(c.Address, src, req.Transport()) {
		return true
	}
	return false
}

// callerKind is what the caller of an INVITE speaks: its SDP says, or
// (late offer) its transport.
func callerKind(req *gosip.Request) legKind {
	body := req.Body()
	k := transportKind(req.Transport())
	// Only an m-line whose proto has TLS/RTP/SAVP makes an SDP a WebRTC
	// one (sdpmedia's IsWebRTC): without those bytes it is a plain one or
	// an unparsable one, which is the transport's kind. So over a plain
	// transport the SDP need not be parsed (that parse was 1.8 % of a
	// call's CPU).
	if k == kindPlain && !containsFold(body, "TLS/RTP/SAVP") {
		return kindPlain
	}
	if isSDP(req, body) {
		if sk, ok := sdpKind(body); ok {
			return sk
		}
	}
	return k
}

// containsFold reports whether b contains s (ASCII, compared without
// case).
func containsFold(b []byte, s string) bool {
	for i := 0; i+len(s) <= len(b); i++ {
		if b[i]|0x20 == s[0]|0x20 && bytes.EqualFold(b[i:i+len(s)], []byte(s)) {
			return true
		}
	}
	return false
}

// startMedia anchors a new call's media and rewrites the INVITE's offer
// for plain RTP callees (branches to WebRTC callees get theirs in
// branchOffer). With no SDP in the INVITE (a late offer) the session
// waits for the callee's offer in its 2xx.
func (s *Server) startMedia(c *call, req *gosip.Request, targets []target) error {
	if !s.wantsRelay(req, targets) {
		return nil
	}
	ms := newMediaSession(s.cfg.MediaRelay)
	ms.timeout = func() { go s.mediaEnded(c, 408, "media timeout") }
	ms.fail = func(err error) {
		if errors.Is(err, media.ErrICETimeout) {
			s.mediaEnded(c, 408, "ICE timeout")
		} else {
			s.mediaEnded(c, 488, "DTLS failure")
		}
	}
	ms.kind[media.A] = transportKind(req.Transport())
	if isSDP(req, req.Body()) {
		src, _ := netip.ParseAddrPort(req.Source())
		err := ms.apply(media.A, req.Body(), src.Addr(), true)
		var body []byte
		if err == nil {
			body, err = ms.render(media.B, kindPlain, netip.Addr{})
		}
		if err != nil {
			ms.close()
			return mediaError(err, s.cfg.MediaMode)
		}
		req.SetBody(body)
	}
	s.calls.setMedia(c, ms)
	return nil
}

// branchOffer gives the copy of an initial INVITE going to target t the
// offer in the form t speaks (a WebRTC callee gets ICE and DTLS-SRTP).
func (s *Server) branchOffer(fwd *gosip.Request, t target) error {
	if !isSDP(fwd, fwd.Body()) {
		return nil
	}
	ms := s.calls.media(fwd.CallID().Value())
	if ms == nil {
		return nil
	}
	body, err := ms.render(media.B, transportKind(t.transport), destAddr(t.dest))
	if err != nil {
		return mediaError(err, s.cfg.MediaMode)
	}
	fwd.SetBody(body)
	return nil
}

// mediaError maps a relay failure to the response for the INVITE.
func mediaError(err error, mode string) error {
	switch {
	case errors.Is(err, media.ErrNoPorts):
		return status(503, "Service Unavailable", fmt.Errorf("media relay: %w", err))
	case errors.Is(err, errNoCodec):
		// RFC 3261 §20.43: 305 Incompatible media format.
		return status(488, "Not Acceptable Here", err, gosip.NewHeader("Warning",
			`305 switchboard "no common codec: the callee takes none of the offered formats without transcoding"`))
	case errors.Is(err, errBadSDP):
		if mode == RelayNAT {
			return nil // not anchorable: the call proceeds unrelayed
		}
		return status(488, "Not Acceptable Here", err)
	}
	return status(500, "Server Internal Error", err)
}

// rewriteBody anchors an SDP body in a request or response of a call with
// a media session. fromCaller says which party sent it. A body that cannot
// be rewritten is passed on unchanged (and logged).
func (s *Server) rewriteBody(msg interface {
	Body() []byte
	SetBody([]byte)
	ContentType() *gosip.ContentTypeHeader
}, callID string, fromCaller bool, source string) {
	if !isSDP(msg, msg.Body()) {
		return
	}
	ms := s.calls.media(callID)
	if ms == nil {
		return
	}
	side := media.B
	if fromCaller {
		side = media.A
	}
	var offer bool
	switch m := msg.(type) {
	case *gosip.Request:
		// INVITE and UPDATE offer (RFC 3311); ACK and PRACK answer.
		offer = m.Method != gosip.ACK && m.Method != gosip.PRACK
	default:
		offer = !ms.isAnswer(side)
	}
	src, _ := netip.ParseAddrPort(source)
	err := ms.apply(side, msg.Body(), src.Addr(), offer)
	var body []byte
	if err == nil {
		body, err = ms.render(other(side), kindPlain, netip.Addr{})
	}
	if err != nil {
		s.log.Warn("SDP not anchored", "call_id", callID, "error", err)
		return
	}
	msg.SetBody(body)
}

// mediaEnded ends a call whose media stopped (Config.Timeout of the relay)
// or whose WebRTC leg failed (ICE timeout, DTLS failure): a BYE to each
// party with the reason, and the record says the switch hung up.
func (s *Server) mediaEnded(c *call, code int, reason string) {
	d := s.calls.endBySwitch(c, code, reason)
	if d == nil {
		return
	}
	s.log.Info("call ended by the switch", "call_id", c.id, "reason", reason)
	for _, bye := range d.byes() {
		s.sendBye(bye, reason)
	}
}

// sendBye sends a BYE the switch generated, in its own transaction, and
// waits for its answer; reason goes into its Reason header (RFC 3326).
func (s *Server) sendBye(b byeSpec, reason string) {
	t := b.target
	req := gosip.NewRequest(gosip.BYE, t.uri)
	req.AppendHeader(gosip.HeaderClone(b.from))
	req.AppendHeader(gosip.HeaderClone(b.to))
	cid := gosip.CallIDHeader(b.callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&gosip.CSeqHeader{SeqNo: b.cseq, MethodName: gosip.BYE})
	mf := gosip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.AppendHeader(gosip.NewHeader("Reason", `SIP;text="`+reason+`"`))
	req.SetBody(nil)
	out, ok := s.ifaceFor(t.transport, t.dest)
	if !ok {
		return
	}
	req.PrependHeader(out.via(gosip.GenerateBranchN(16)))
	req.SetTransport(strings.ToUpper(out.transport))
	req.SetDestination(t.dest)
	if out.transport == "udp" {
		req.Laddr = out.laddr
	}
	if tx := s.startOwn(req); tx != nil {
		awaitFinal(tx)
	}
}

func isSDP(msg interface {
	ContentType() *gosip.ContentTypeHeader
}, body []byte) bool {
	if len(body) == 0 {
		return false
	}
	ct := msg.ContentType()
	return ct == nil || strings.HasPrefix(strings.ToLower(ct.Value()), "application/sdp")
}

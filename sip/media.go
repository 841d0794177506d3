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
// rewrites each SDP so the other party sends to the relay, and keeps the
// same ports across re-INVITEs (hold, resume, a party that moved).
type mediaSession struct {
	relay *media.Relay

	mu      sync.Mutex
	streams []*media.Stream
	closed  bool
	timeout func()
	// last SDP each side sent and what it became: a retransmitted 2xx or a
	// re-sent offer is answered from here without touching the streams
	// (which would reset their latching).
	lastIn, lastOut [2][]byte
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

// apply takes an SDP sent by the party on side, tells the relay where that
// party wants media, and returns the SDP to pass to the other party, which
// points at the relay. sipSource is the party's SIP source address: media
// from there is accepted before the stream latches.
func (m *mediaSession) apply(side media.Side, body []byte, sipSource netip.Addr) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, errors.New("media session closed")
	}
	if bytes.Equal(m.lastIn[side], body) {
		return m.lastOut[side], nil
	}
	sd, lines, err := parseSDP(body)
	if err != nil {
		return nil, err
	}
	for len(m.streams) < len(lines) {
		st, err := m.relay.NewStream(m.timeout)
		if err != nil {
			return nil, err
		}
		m.streams = append(m.streams, st)
	}
	other := media.B
	if side == media.B {
		other = media.A
	}
	ports := make([]int, len(lines))
	for i, l := range lines {
		if l.disabled {
			continue
		}
		allowed := []netip.Addr{}
		if sipSource.IsValid() {
			allowed = append(allowed, sipSource.Unmap())
		}
		m.streams[i].SetPeer(side, media.Peer{
			RTP: l.rtp, RTCP: l.rtcp, RTCPMux: l.mux, Allowed: allowed,
			ClockRate: l.clock, ClockRates: l.clockRates,
		})
		ports[i] = m.streams[i].LocalPort(other)
	}
	out, err := rewriteSDP(sd, m.relay.PublicIP(), ports)
	if err != nil {
		return nil, err
	}
	m.lastIn[side], m.lastOut[side] = append([]byte(nil), body...), out
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
// anchored: always, never, or (nat) when the caller's SDP names another
// address than it sends SIP from, or a callee contact is behind NAT.
func (s *Server) wantsRelay(req *gosip.Request, targets []target) bool {
	switch {
	case s.cfg.MediaRelay == nil || s.cfg.MediaMode == RelayNever:
		return false
	case s.cfg.MediaMode == RelayAlways:
		return true
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

// startMedia anchors a new call's media and rewrites the INVITE's offer.
// With no SDP in the INVITE (a late offer) the session waits for the
// callee's offer in its 2xx.
func (s *Server) startMedia(c *call, req *gosip.Request, targets []target) error {
	if !s.wantsRelay(req, targets) {
		return nil
	}
	ms := &mediaSession{relay: s.cfg.MediaRelay}
	ms.timeout = func() { go s.mediaTimeout(c) }
	if isSDP(req, req.Body()) {
		src, _ := netip.ParseAddrPort(req.Source())
		body, err := ms.apply(media.A, req.Body(), src.Addr())
		if err != nil {
			ms.close()
			return mediaError(err, s.cfg.MediaMode)
		}
		req.SetBody(body)
	}
	s.calls.setMedia(c, ms)
	return nil
}

// mediaError maps a relay failure to the response for the INVITE.
func mediaError(err error, mode string) error {
	switch {
	case errors.Is(err, media.ErrNoPorts):
		return status(503, "Service Unavailable", fmt.Errorf("media relay: %w", err))
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
	src, _ := netip.ParseAddrPort(source)
	body, err := ms.apply(side, msg.Body(), src.Addr())
	if err != nil {
		s.log.Warn("SDP not anchored", "call_id", callID, "error", err)
		return
	}
	msg.SetBody(body)
}

// mediaTimeout ends a call whose media stopped (Config.Timeout of the
// relay): a BYE to each party, and the record says the switch hung up.
func (s *Server) mediaTimeout(c *call) {
	d := s.calls.endBySwitch(c, 408, "media timeout")
	if d == nil {
		return
	}
	s.log.Info("call ended: no media", "call_id", c.id)
	for _, bye := range d.byes() {
		s.sendBye(bye, "media timeout")
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
	out, ok := s.ifaceFor(t.transport)
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

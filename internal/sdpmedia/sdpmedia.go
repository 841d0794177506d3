// Package sdpmedia reads what an SDP body (RFC 4566, RFC 8866) says about
// its media lines: transport, addresses, RTCP (RFC 3605, RFC 5761), codecs
// (a=rtpmap, a=fmtp, a=rtcp-fb), direction (RFC 3264), and the ICE
// (RFC 8839) and DTLS-SRTP (RFC 8122, RFC 5763) attributes of WebRTC
// parties. The proxy (package sip) and the gateway both read SDP through
// it; each writes its own, as their outputs differ.
package sdpmedia

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
)

// ErrBadSDP means a body could not be read as SDP, or has no media line.
var ErrBadSDP = errors.New("unusable SDP")

// SDP directions (RFC 3264 §5.1, §6.1).
const (
	SendRecv = "sendrecv"
	SendOnly = "sendonly"
	RecvOnly = "recvonly"
	Inactive = "inactive"
)

// IsDirection reports whether an attribute name is a direction.
func IsDirection(k string) bool {
	return k == SendRecv || k == SendOnly || k == RecvOnly || k == Inactive
}

// Session is a parsed SDP.
type Session struct {
	// SD is pion's parse of the body, for callers that rewrite it.
	SD *sdp.SessionDescription
	// Media holds one entry per m-line, in order.
	Media []Media
	// Bundle lists the mids of a=group:BUNDLE (RFC 8843), if any.
	Bundle []string
	// ICELite is the session's a=ice-lite.
	ICELite bool
}

// Codec is one payload format of an m-line: what a=rtpmap, a=fmtp and
// a=rtcp-fb say about one payload type.
type Codec struct {
	PT       uint8
	Name     string // encoding name as written (PCMU, opus, VP8, ...)
	Clock    uint32
	Channels uint16 // 0 when not given
	Fmtp     string
	Feedback []string // a=rtcp-fb values without the payload type ("nack pli")
}

// Fingerprint is an a=fingerprint (RFC 8122 §5).
type Fingerprint struct{ Hash, Value string }

// Media is what one m-line says, session-level values applied.
type Media struct {
	Kind    string // audio, video, application, ...
	Port    int    // 0: rejected or disabled (RFC 3264 §6)
	Proto   string // RTP/AVP, UDP/TLS/RTP/SAVPF, ...
	Formats []string
	Addr    netip.Addr     // c= of the m-line or the session
	RTCP    netip.AddrPort // a=rtcp (RFC 3605); zero: RTP port + 1
	Mux     bool           // a=rtcp-mux (RFC 5761)
	Codecs  []Codec        // formats with a known name, in the m-line's order
	Dir     string         // direction, sendrecv when none is written
	Mid     string         // a=mid (RFC 5888)

	ICEUfrag, ICEPwd string        // a=ice-ufrag, a=ice-pwd (RFC 8839 §5.4)
	Fingerprints     []Fingerprint // a=fingerprint
	Setup            string        // a=setup (RFC 4145 §4)
	BundleOnly       bool          // a=bundle-only (RFC 8843 §6)
}

// StaticPT are the RFC 3551 §6 payload types an SDP may use without rtpmap.
var StaticPT = map[uint8]Codec{
	0:  {PT: 0, Name: "PCMU", Clock: 8000},
	3:  {PT: 3, Name: "GSM", Clock: 8000},
	4:  {PT: 4, Name: "G723", Clock: 8000},
	8:  {PT: 8, Name: "PCMA", Clock: 8000},
	9:  {PT: 9, Name: "G722", Clock: 8000},
	13: {PT: 13, Name: "CN", Clock: 8000},
	18: {PT: 18, Name: "G729", Clock: 8000},
}

// RTPAddr is where the party wants RTP.
func (m Media) RTPAddr() netip.AddrPort { return netip.AddrPortFrom(m.Addr, uint16(m.Port)) }

// RTCPAddr is where the party wants RTCP.
func (m Media) RTCPAddr() netip.AddrPort {
	switch {
	case m.Mux:
		return m.RTPAddr()
	case m.RTCP.IsValid():
		return m.RTCP
	}
	return netip.AddrPortFrom(m.Addr, uint16(m.Port+1))
}

// IsWebRTC reports whether the m-line is DTLS-SRTP with ICE, the WebRTC
// transport (RFC 8827, RFC 8834): UDP/TLS/RTP/SAVP(F).
func (m Media) IsWebRTC() bool {
	return strings.Contains(strings.ToUpper(m.Proto), "TLS/RTP/SAVP")
}

// ClockRates maps the m-line's payload types to their clock rates.
func (m Media) ClockRates() map[uint8]uint32 {
	out := make(map[uint8]uint32, len(m.Codecs))
	for _, c := range m.Codecs {
		if c.Clock > 0 {
			out[c.PT] = c.Clock
		}
	}
	return out
}

// Parse reads an SDP body.
func Parse(body []byte) (*Session, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(string(body)); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	if len(sd.MediaDescriptions) == 0 {
		return nil, fmt.Errorf("%w: no media lines", ErrBadSDP)
	}
	s := &Session{SD: &sd}
	// Session-level values apply to every m-line without its own
	// (RFC 4566 §5.7, RFC 3264 §5.1, RFC 8839 §5.4, RFC 8122 §5).
	var sess Media
	sess.Dir = SendRecv
	sess.Addr, _ = ConnAddr(sd.ConnectionInformation)
	for _, a := range sd.Attributes {
		switch {
		case IsDirection(a.Key):
			sess.Dir = a.Key
		case a.Key == "group":
			if f := strings.Fields(a.Value); len(f) > 1 && f[0] == "BUNDLE" {
				s.Bundle = f[1:]
			}
		case a.Key == "ice-lite":
			s.ICELite = true
		default:
			transportAttr(&sess, a)
		}
	}
	for i, md := range sd.MediaDescriptions {
		m, err := parseMedia(md, sess)
		if err != nil {
			return nil, fmt.Errorf("m-line %d: %w", i, err)
		}
		s.Media = append(s.Media, m)
	}
	return s, nil
}

// transportAttr reads the ICE and DTLS attributes, which may be written at
// session or media level.
func transportAttr(m *Media, a sdp.Attribute) bool {
	switch a.Key {
	case "ice-ufrag":
		m.ICEUfrag = a.Value
	case "ice-pwd":
		m.ICEPwd = a.Value
	case "setup":
		m.Setup = strings.ToLower(strings.TrimSpace(a.Value))
	case "fingerprint":
		h, v, ok := strings.Cut(strings.TrimSpace(a.Value), " ")
		if !ok {
			return true
		}
		m.Fingerprints = append(m.Fingerprints, Fingerprint{Hash: strings.ToLower(h), Value: strings.TrimSpace(v)})
	default:
		return false
	}
	return true
}

func parseMedia(md *sdp.MediaDescription, sess Media) (Media, error) {
	m := Media{
		Kind:         md.MediaName.Media,
		Port:         md.MediaName.Port.Value,
		Proto:        strings.Join(md.MediaName.Protos, "/"),
		Formats:      md.MediaName.Formats,
		Dir:          sess.Dir,
		Addr:         sess.Addr,
		ICEUfrag:     sess.ICEUfrag,
		ICEPwd:       sess.ICEPwd,
		Setup:        sess.Setup,
		Fingerprints: sess.Fingerprints,
	}
	if a, ok := ConnAddr(md.ConnectionInformation); ok {
		m.Addr = a
	}
	if m.Port < 0 || m.Port > 65535 {
		return m, fmt.Errorf("%w: port %d", ErrBadSDP, m.Port)
	}
	byPT := map[uint8]*Codec{}
	var order []uint8
	for _, f := range md.MediaName.Formats {
		pt, err := strconv.ParseUint(f, 10, 7)
		if err != nil {
			continue // not RTP (m=application ... webrtc-datachannel)
		}
		c := StaticPT[uint8(pt)]
		c.PT = uint8(pt)
		byPT[uint8(pt)] = &c
		order = append(order, uint8(pt))
	}
	var wildcardFB []string
	ownFP := false
	for _, a := range md.Attributes {
		switch {
		case IsDirection(a.Key):
			m.Dir = a.Key
		case a.Key == "mid":
			m.Mid = a.Value
		case a.Key == "rtcp-mux":
			m.Mux = true
		case a.Key == "bundle-only":
			m.BundleOnly = true
		case a.Key == "rtcp":
			if ap, ok := ParseRTCPAttr(a.Value, m.Addr); ok {
				m.RTCP = ap
			}
		case a.Key == "rtpmap":
			parseRTPMap(a.Value, byPT)
		case a.Key == "fmtp":
			pt, rest, ok := strings.Cut(a.Value, " ")
			if c := lookupPT(byPT, pt); ok && c != nil {
				c.Fmtp = strings.TrimSpace(rest)
			}
		case a.Key == "rtcp-fb":
			pt, rest, ok := strings.Cut(a.Value, " ")
			if !ok {
				continue
			}
			if pt == "*" {
				wildcardFB = append(wildcardFB, strings.TrimSpace(rest))
			} else if c := lookupPT(byPT, pt); c != nil {
				c.Feedback = append(c.Feedback, strings.TrimSpace(rest))
			}
		case a.Key == "fingerprint":
			if !ownFP { // media-level fingerprints replace the session's
				m.Fingerprints, ownFP = nil, true
			}
			transportAttr(&m, a)
		default:
			transportAttr(&m, a)
		}
	}
	for _, pt := range order {
		c := byPT[pt]
		if c.Name == "" {
			continue // dynamic type without rtpmap: unusable
		}
		c.Feedback = append(c.Feedback, wildcardFB...)
		m.Codecs = append(m.Codecs, *c)
	}
	return m, nil
}

// ParseRTCPAttr reads a=rtcp (RFC 3605): a port, and maybe an address
// (else addr, the m-line's).
func ParseRTCPAttr(v string, addr netip.Addr) (netip.AddrPort, bool) {
	f := strings.Fields(v)
	if len(f) == 0 {
		return netip.AddrPort{}, false
	}
	p, err := strconv.ParseUint(f[0], 10, 16)
	if err != nil {
		return netip.AddrPort{}, false
	}
	if len(f) == 4 {
		if x, err := netip.ParseAddr(f[3]); err == nil {
			addr = x.Unmap()
		}
	}
	return netip.AddrPortFrom(addr, uint16(p)), true
}

// parseRTPMap reads a=rtpmap (RFC 4566 §6: "pt name/clock[/channels]")
// into the codec of its payload type, when the m-line lists it.
func parseRTPMap(v string, byPT map[uint8]*Codec) {
	pt, rest, ok := strings.Cut(v, " ")
	c := lookupPT(byPT, pt)
	if !ok || c == nil {
		return
	}
	parts := strings.Split(strings.TrimSpace(rest), "/")
	c.Name = parts[0]
	c.Clock, c.Channels = 0, 0
	if len(parts) > 1 {
		r, _ := strconv.ParseUint(parts[1], 10, 32)
		c.Clock = uint32(r)
	}
	if len(parts) > 2 {
		ch, _ := strconv.ParseUint(parts[2], 10, 16)
		c.Channels = uint16(ch)
	}
}

func lookupPT(m map[uint8]*Codec, s string) *Codec {
	pt, err := strconv.ParseUint(s, 10, 7)
	if err != nil {
		return nil
	}
	return m[uint8(pt)]
}

// ConnAddr reads a c= line's address (without a multicast TTL).
func ConnAddr(ci *sdp.ConnectionInformation) (netip.Addr, bool) {
	if ci == nil || ci.Address == nil {
		return netip.Addr{}, false
	}
	host, _, _ := strings.Cut(ci.Address.Address, "/")
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

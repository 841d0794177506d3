package gateway

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
)

// SDP directions (RFC 3264 §5.1, §6.1).
const (
	dirSendRecv = "sendrecv"
	dirSendOnly = "sendonly"
	dirRecvOnly = "recvonly"
	dirInactive = "inactive"
)

// reverseDir is the direction an answerer writes for an offered one
// (RFC 3264 §6.1): what the offerer only sends, the answerer only receives.
func reverseDir(d string) string {
	switch d {
	case dirSendOnly:
		return dirRecvOnly
	case dirRecvOnly:
		return dirSendOnly
	}
	return d
}

// sends and receives report what a party whose SDP says d does.
func sends(d string) bool    { return d == dirSendRecv || d == dirSendOnly }
func receives(d string) bool { return d == dirSendRecv || d == dirRecvOnly }

// intersectDir keeps what both directions allow.
func intersectDir(a, b string) string {
	s, r := sends(a) && sends(b), receives(a) && receives(b)
	switch {
	case s && r:
		return dirSendRecv
	case s:
		return dirSendOnly
	case r:
		return dirRecvOnly
	}
	return dirInactive
}

// sdpDir is the direction an m-line of a party means: one without a usable
// address (c=0.0.0.0) is old-style hold, so the party does not receive
// (RFC 3264 §8.4).
func sdpDir(m mediaDesc) string {
	if !sdpAddrValid(m.Addr) {
		return intersectDir(m.Dir, dirRecvOnly)
	}
	return m.Dir
}

// sdpAddrValid reports whether an SDP address can receive media.
func sdpAddrValid(a netip.Addr) bool { return a.IsValid() && !a.IsUnspecified() }

// mediaDesc is what one m-line says.
type mediaDesc struct {
	Kind    string // audio, video, application, ...
	Port    int    // 0: rejected or disabled (RFC 3264 §6)
	Proto   string
	Formats []string
	Addr    netip.Addr     // c= of the m-line or the session
	RTCP    netip.AddrPort // a=rtcp (RFC 3605); zero: RTP port + 1
	Mux     bool           // a=rtcp-mux (RFC 5761)
	Codecs  []codec
	Dir     string
	Mid     string
}

// rtpAddr is where the party wants RTP, RTCP.
func (m mediaDesc) rtpAddr() netip.AddrPort {
	return netip.AddrPortFrom(m.Addr, uint16(m.Port))
}

func (m mediaDesc) rtcpAddr() netip.AddrPort {
	switch {
	case m.Mux:
		return m.rtpAddr()
	case m.RTCP.IsValid():
		return m.RTCP
	}
	return netip.AddrPortFrom(m.Addr, uint16(m.Port+1))
}

// session is a parsed SDP.
type session struct {
	Media []mediaDesc
	raw   string
}

// parseSDP reads an SDP body (a browser's or a SIP party's).
func parseSDP(body string) (*session, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(body); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	if len(sd.MediaDescriptions) == 0 {
		return nil, fmt.Errorf("%w: no media", ErrBadSDP)
	}
	sessAddr, _ := connAddr(sd.ConnectionInformation)
	sessDir := dirSendRecv
	for _, a := range sd.Attributes {
		if isDir(a.Key) {
			sessDir = a.Key
		}
	}
	s := &session{raw: body}
	for _, md := range sd.MediaDescriptions {
		m, err := parseMedia(md, sessAddr, sessDir)
		if err != nil {
			return nil, err
		}
		s.Media = append(s.Media, m)
	}
	return s, nil
}

// parseMedia reads one m-line and its attributes; the session's address
// and direction apply where the line has none (RFC 4566 §5.7, RFC 3264
// §5.1).
func parseMedia(md *sdp.MediaDescription, sessAddr netip.Addr, sessDir string) (mediaDesc, error) {
	m := mediaDesc{
		Kind:    md.MediaName.Media,
		Port:    md.MediaName.Port.Value,
		Proto:   strings.Join(md.MediaName.Protos, "/"),
		Formats: md.MediaName.Formats,
		Dir:     sessDir,
	}
	if a, ok := connAddr(md.ConnectionInformation); ok {
		m.Addr = a
	} else {
		m.Addr = sessAddr
	}
	if m.Port < 0 || m.Port > 65535 {
		return m, fmt.Errorf("%w: port %d", ErrBadSDP, m.Port)
	}
	byPT := map[uint8]*codec{}
	var order []uint8
	for _, f := range md.MediaName.Formats {
		pt, err := strconv.ParseUint(f, 10, 7)
		if err != nil {
			continue // not RTP (m=application ... webrtc-datachannel)
		}
		c := staticPT[uint8(pt)]
		c.PT = uint8(pt)
		byPT[uint8(pt)] = &c
		order = append(order, uint8(pt))
	}
	var wildcardFB []string
	for _, a := range md.Attributes {
		switch {
		case isDir(a.Key):
			m.Dir = a.Key
		case a.Key == "mid":
			m.Mid = a.Value
		case a.Key == "rtcp-mux":
			m.Mux = true
		case a.Key == "rtcp":
			if ap, ok := parseRTCPAttr(a.Value, m.Addr); ok {
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

// parseRTCPAttr reads a=rtcp (RFC 3605): a port, and maybe an address
// (else addr, the m-line's).
func parseRTCPAttr(v string, addr netip.Addr) (netip.AddrPort, bool) {
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
func parseRTPMap(v string, byPT map[uint8]*codec) {
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

func lookupPT(m map[uint8]*codec, s string) *codec {
	pt, err := strconv.ParseUint(s, 10, 7)
	if err != nil {
		return nil
	}
	return m[uint8(pt)]
}

func isDir(k string) bool {
	return k == dirSendRecv || k == dirSendOnly || k == dirRecvOnly || k == dirInactive
}

func connAddr(ci *sdp.ConnectionInformation) (netip.Addr, bool) {
	if ci == nil || ci.Address == nil {
		return netip.Addr{}, false
	}
	host, _, _ := strings.Cut(ci.Address.Address, "/") // multicast TTL
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// sipMedia is one m-line of an SDP the gateway sends to the SIP side.
type sipMedia struct {
	Kind     string
	Proto    string   // RTP/AVP (default) or RTP/AVPF, as offered
	Port     int      // 0: rejected
	RTCPPort int      // written as a=rtcp
	Formats  []string // for a rejected line: the offered formats
	Codecs   []codec
	Dir      string
}

// sipSDP writes an SDP for the SIP side: plain RTP on the gateway's
// sockets at ip. It is kept short (see usable): feedback common to every
// format of a line is written once with the "*" wildcard (RFC 4585 §4.2),
// and a=rtcp (RFC 3605) only when RTCP is not on the next port.
func sipSDP(sessID, version uint64, ip netip.Addr, media []sipMedia) []byte {
	at := "IP4"
	if ip.Is6() {
		at = "IP6"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "v=0\r\no=- %d %d IN %s %s\r\ns=-\r\nc=IN %s %s\r\nt=0 0\r\n", sessID, version, at, ip, at, ip)
	for _, m := range media {
		proto := m.Proto
		if proto == "" {
			proto = "RTP/AVP"
		}
		if m.Port == 0 {
			// RFC 3264 §6: a rejected line keeps the offer's transport and
			// formats.
			f := m.Formats
			if len(f) == 0 {
				f = []string{"0"}
			}
			fmt.Fprintf(&b, "m=%s 0 %s %s\r\n", m.Kind, proto, strings.Join(f, " "))
			continue
		}
		fmt.Fprintf(&b, "m=%s %d %s", m.Kind, m.Port, proto)
		for _, c := range m.Codecs {
			fmt.Fprintf(&b, " %d", c.PT)
		}
		b.WriteString("\r\n")
		common := commonFeedback(m.Codecs)
		for _, c := range m.Codecs {
			fmt.Fprintf(&b, "a=rtpmap:%d %s\r\n", c.PT, c.rtpmap())
			if c.Fmtp != "" {
				fmt.Fprintf(&b, "a=fmtp:%d %s\r\n", c.PT, c.Fmtp)
			}
			if common == nil {
				for _, f := range relayedFeedback(c.Feedback) {
					fmt.Fprintf(&b, "a=rtcp-fb:%d %s\r\n", c.PT, f)
				}
			}
		}
		for _, f := range common {
			fmt.Fprintf(&b, "a=rtcp-fb:* %s\r\n", f)
		}
		if m.RTCPPort != m.Port+1 {
			fmt.Fprintf(&b, "a=rtcp:%d\r\n", m.RTCPPort)
		}
		if m.Dir == "" {
			m.Dir = dirSendRecv
		}
		fmt.Fprintf(&b, "a=%s\r\n", m.Dir)
	}
	return []byte(b.String())
}

// commonFeedback returns the relayed feedback when every format of a line
// has the same, nil otherwise.
func commonFeedback(cs []codec) []string {
	var first []string
	for i, c := range cs {
		fb := relayedFeedback(c.Feedback)
		if c.isDTMF() {
			continue
		}
		if i == 0 {
			first = fb
			continue
		}
		if strings.Join(fb, ",") != strings.Join(first, ",") {
			return nil
		}
	}
	if len(first) == 0 {
		return nil
	}
	return first
}

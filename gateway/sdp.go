package gateway

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/switchboard/switchboard/internal/sdpmedia"
)

// SDP directions (RFC 3264 §5.1, §6.1).
const (
	dirSendRecv = sdpmedia.SendRecv
	dirSendOnly = sdpmedia.SendOnly
	dirRecvOnly = sdpmedia.RecvOnly
	dirInactive = sdpmedia.Inactive
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

// parseSDP reads an SDP body (a browser's or a SIP party's) through
// internal/sdpmedia, the reader the proxy uses too.
func parseSDP(body string) (*session, error) {
	sd, err := sdpmedia.Parse([]byte(body))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	s := &session{raw: body}
	for _, m := range sd.Media {
		d := mediaDesc{
			Kind: m.Kind, Port: m.Port, Proto: m.Proto, Formats: m.Formats, Addr: m.Addr,
			RTCP: m.RTCP, Mux: m.Mux, Dir: m.Dir, Mid: m.Mid,
		}
		for _, c := range m.Codecs {
			d.Codecs = append(d.Codecs, codec(c))
		}
		s.Media = append(s.Media, d)
	}
	return s, nil
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

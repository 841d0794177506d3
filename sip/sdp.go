package sip

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"

	"github.com/switchboard/switchboard/internal/sdpmedia"
	"github.com/switchboard/switchboard/media"
)

// errBadSDP means a body could not be parsed as SDP, or its media lines
// cannot be relayed (answered 488 Not Acceptable Here).
var errBadSDP = errors.New("unusable SDP")

// errNoCodec means no media line of an offer has a format the party it goes
// to can take without transcoding (488 with Warning 305).
var errNoCodec = errors.New("no common codec")

// sdpMedia is what one m-line of an SDP says about where its sender wants
// media: the input of the relay's Peer.
type sdpMedia struct {
	kind       string         // audio, video, ...
	rtp        netip.AddrPort // c= address and m= port; port 0 = stream disabled
	rtcp       netip.AddrPort // a=rtcp (RFC 3605), zero when absent
	mux        bool           // a=rtcp-mux (RFC 5761)
	clockRates map[uint8]uint32
	clock      uint32 // clock rate of the first format
	disabled   bool   // port 0 (RFC 3264 §8.2)
	info       sdpmedia.Media
}

// webRTC is the relay's Peer.WebRTC for a WebRTC m-line, nil for plain RTP.
func (m sdpMedia) webRTC() *media.WebRTCPeer {
	if !m.info.IsWebRTC() {
		return nil
	}
	p := &media.WebRTCPeer{Ufrag: m.info.ICEUfrag, Pwd: m.info.ICEPwd, Setup: m.info.Setup}
	for _, f := range m.info.Fingerprints {
		p.Fingerprints = append(p.Fingerprints, media.Fingerprint{Hash: f.Hash, Value: f.Value})
	}
	return p
}

// parseSDP reads the media lines of an SDP body.
func parseSDP(body []byte) (*sdp.SessionDescription, []sdpMedia, error) {
	s, err := sdpmedia.Parse(body)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", errBadSDP, err)
	}
	out := make([]sdpMedia, 0, len(s.Media))
	for i, md := range s.Media {
		m := sdpMedia{kind: md.Kind, clockRates: md.ClockRates(), info: md}
		if md.Port == 0 {
			m.disabled = true
			out = append(out, m)
			continue
		}
		if !md.Addr.IsValid() {
			return nil, nil, fmt.Errorf("%w: m-line %d has no connection address", errBadSDP, i)
		}
		if md.IsWebRTC() && (md.ICEUfrag == "" || md.ICEPwd == "" || len(md.Fingerprints) == 0) {
			// DTLS-SRTP needs both (RFC 8839 §5.4, RFC 8122 §5).
			return nil, nil, fmt.Errorf("%w: m-line %d is %s without ICE credentials or fingerprint", errBadSDP, i, md.Proto)
		}
		m.rtp = md.RTPAddr()
		m.rtcp = md.RTCP
		m.mux = md.Mux
		if len(md.Formats) > 0 {
			if pt, err := strconv.ParseUint(md.Formats[0], 10, 8); err == nil {
				m.clock = m.clockRates[uint8(pt)]
			}
		}
		out = append(out, m)
	}
	return s.SD, out, nil
}

// isWebRTCSDP reports whether an SDP's enabled media use the WebRTC
// transport, and whether it could be read at all.
func isWebRTCSDP(body []byte) (webrtc, ok bool) {
	s, err := sdpmedia.Parse(body)
	if err != nil {
		return false, false
	}
	for _, m := range s.Media {
		if m.Port != 0 && m.IsWebRTC() {
			return true, true
		}
	}
	return false, true
}

// sdpForm says how to write an SDP for the party it goes to.
type sdpForm struct {
	ip    netip.Addr
	ports []int // relay port per m-line (RTCP on port+1 unless muxed)

	// webrtc: the party speaks ICE and DTLS-SRTP; the relay writes its own
	// ICE credentials (ice, one per m-line), certificate fingerprint and
	// a single host candidate. convert: the party's kind differs from the
	// sender's, so transport lines are rewritten either way.
	webrtc, convert bool
	ice             [][2]string
	fingerprint     media.Fingerprint
	offer           bool     // the SDP is an offer (a=setup:actpass)
	theirSetup      []string // in an answer: the a=setup of the party's offer, per m-line
}

// Formats a WebRTC party (a browser) takes, by media kind and lower-case
// name: the codecs every browser implements (RFC 7874 §3, RFC 7742 §5),
// telephone-event (RFC 4733) and comfort noise, and the video formats
// Chromium, Firefox and Safari decode, with their retransmission format.
var webrtcFormats = map[string]map[string]bool{
	"audio": {"opus": true, "g722": true, "pcmu": true, "pcma": true, "telephone-event": true, "cn": true},
	"video": {"vp8": true, "vp9": true, "h264": true, "av1": true, "rtx": true},
}

// Formats that only make sense with RTP/AVPF feedback or the WebRTC
// stack's redundancy: not offered to a plain RTP party.
var webrtcOnlyFormats = map[string]bool{"rtx": true, "red": true, "ulpfec": true, "flexfec-03": true}

// Attributes the relay writes itself, or that would let media bypass it.
var transportAttrs = map[string]bool{
	"candidate": true, "end-of-candidates": true, "remote-candidates": true,
	"ice-ufrag": true, "ice-pwd": true, "ice-options": true, "ice-lite": true, "ice-mismatch": true,
	"fingerprint": true, "setup": true, "connection": true, "crypto": true, "tls-id": true,
	"rtcp": true, "rtcp-mux": true, "rtcp-mux-only": true, "rtcp-rsize": true, "bundle-only": true,
}

// rewriteSDP points every enabled m-line of sd at ip and the given ports,
// so the other party sends its media to the relay, for a party of the same
// kind as the sender: it drops what would let media bypass the relay (ICE
// candidates) and keeps everything else — codecs, telephone-event,
// directions (hold), rtcp-mux — as the sender wrote it.
func rewriteSDP(sd *sdp.SessionDescription, ip netip.Addr, ports []int) ([]byte, error) {
	return renderSDP(sd, sdpForm{ip: ip, ports: ports})
}

// renderSDP writes sd for the party it goes to (see sdpForm). Converting
// between WebRTC and plain RTP (rtpengine's ICE=force/DTLS=passive one way,
// ICE=remove with RTP/AVP the other) keeps the codecs the receiving kind
// can take; an offer left with none fails with errNoCodec.
func renderSDP(sd *sdp.SessionDescription, f sdpForm) ([]byte, error) {
	if len(f.ports) != len(sd.MediaDescriptions) {
		return nil, fmt.Errorf("%w: %d ports for %d m-lines", errBadSDP, len(f.ports), len(sd.MediaDescriptions))
	}
	addrType := "IP4"
	if f.ip.Is6() {
		addrType = "IP6"
	}
	conn := func() *sdp.ConnectionInformation {
		return &sdp.ConnectionInformation{NetworkType: "IN", AddressType: addrType, Address: &sdp.Address{Address: f.ip.String()}}
	}
	sd.Origin.AddressType = addrType
	sd.Origin.UnicastAddress = f.ip.String()
	if sd.ConnectionInformation != nil {
		sd.ConnectionInformation = conn()
	}
	if f.convert || f.webrtc {
		sd.Attributes = slices.DeleteFunc(sd.Attributes, func(a sdp.Attribute) bool {
			return transportAttrs[a.Key] || (a.Key == "group" && strings.HasPrefix(a.Value, "BUNDLE"))
		})
	}
	if f.webrtc {
		// RFC 8445 §6.1.1: a lite agent says so at session level.
		sd.Attributes = append(sd.Attributes, sdp.Attribute{Key: "ice-lite"})
	}
	usable := false
	for i, md := range sd.MediaDescriptions {
		if md.MediaName.Port.Value == 0 {
			continue
		}
		if f.convert {
			if !convertFormats(md, f.webrtc) {
				md.MediaName.Port.Value = 0 // nothing the party can take (RFC 3264 §6)
				continue
			}
		}
		usable = true
		md.MediaName.Port.Value = f.ports[i]
		md.ConnectionInformation = conn()
		switch {
		case f.webrtc:
			writeWebRTC(md, i, f)
		case f.convert:
			md.MediaName.Protos = []string{"RTP", "AVP"}
			md.Attributes = slices.DeleteFunc(md.Attributes, func(a sdp.Attribute) bool {
				return transportAttrs[a.Key] || a.Key == "rtcp-fb" || a.Key == "extmap"
			})
		default:
			attrs := md.Attributes[:0]
			for _, a := range md.Attributes {
				switch a.Key {
				case "candidate", "end-of-candidates", "remote-candidates":
					continue
				case "rtcp":
					a.Value = strconv.Itoa(f.ports[i] + 1)
				}
				attrs = append(attrs, a)
			}
			md.Attributes = attrs
		}
	}
	if f.convert && f.offer && !usable {
		return nil, errNoCodec
	}
	return sd.Marshal()
}

// writeWebRTC gives m-line i the relay's ICE-lite and DTLS-SRTP transport
// (RFC 8839 §5, RFC 8122 §5, RFC 5763 §5, RFC 5761 §5.1.1).
func writeWebRTC(md *sdp.MediaDescription, i int, f sdpForm) {
	md.MediaName.Protos = []string{"UDP", "TLS", "RTP", "SAVPF"}
	mid := ""
	attrs := md.Attributes[:0]
	for _, a := range md.Attributes {
		if transportAttrs[a.Key] {
			continue
		}
		if a.Key == "mid" {
			mid = a.Value
		}
		attrs = append(attrs, a)
	}
	if mid == "" {
		attrs = append(attrs, sdp.Attribute{Key: "mid", Value: strconv.Itoa(i)})
	}
	setup := "actpass"
	if !f.offer {
		setup = "passive" // the relay waits for the party's ClientHello
		if i < len(f.theirSetup) && f.theirSetup[i] == "passive" {
			setup = "active"
		}
	}
	attrs = append(attrs,
		sdp.Attribute{Key: "ice-ufrag", Value: f.ice[i][0]},
		sdp.Attribute{Key: "ice-pwd", Value: f.ice[i][1]},
		sdp.Attribute{Key: "fingerprint", Value: f.fingerprint.String()},
		sdp.Attribute{Key: "setup", Value: setup},
		sdp.Attribute{Key: "rtcp-mux"},
		sdp.Attribute{Key: "candidate", Value: fmt.Sprintf("1 1 UDP 2130706431 %s %d typ host", f.ip, f.ports[i])},
		sdp.Attribute{Key: "end-of-candidates"},
	)
	md.Attributes = attrs
}

// convertFormats keeps the formats of an m-line that a party of the other
// kind can take (WebRTC: webrtcFormats; plain: all but webrtcOnlyFormats)
// and their attributes, and gives video sent to a browser the picture-loss
// feedback that lets it ask for key frames (RFC 4585 §6.3.1, RFC 5104
// §4.3.1). It reports whether a media format is left.
func convertFormats(md *sdp.MediaDescription, toWebRTC bool) bool {
	names := map[string]string{} // payload type → lower-case name
	for _, a := range md.Attributes {
		if a.Key == "rtpmap" {
			pt, rest, _ := strings.Cut(a.Value, " ")
			name, _, _ := strings.Cut(strings.TrimSpace(rest), "/")
			names[pt] = strings.ToLower(name)
		}
	}
	for pt, c := range sdpmedia.StaticPT {
		if _, ok := names[strconv.Itoa(int(pt))]; !ok {
			names[strconv.Itoa(int(pt))] = strings.ToLower(c.Name)
		}
	}
	keep := map[string]bool{}
	media := false
	var kept []string
	for _, pt := range md.MediaName.Formats {
		name := names[pt]
		ok := !webrtcOnlyFormats[name]
		if toWebRTC {
			ok = webrtcFormats[md.MediaName.Media][name]
		}
		if !ok {
			continue
		}
		keep[pt] = true
		kept = append(kept, pt)
		if name != "telephone-event" && name != "cn" && name != "rtx" {
			media = true
		}
	}
	if !media {
		return false
	}
	md.MediaName.Formats = kept
	hasFB := map[string]bool{}
	md.Attributes = slices.DeleteFunc(md.Attributes, func(a sdp.Attribute) bool {
		switch a.Key {
		case "rtpmap", "fmtp", "rtcp-fb":
			pt, rest, _ := strings.Cut(a.Value, " ")
			if a.Key == "rtcp-fb" {
				hasFB[pt+" "+strings.TrimSpace(rest)] = true
			}
			return pt != "*" && !keep[pt]
		}
		return false
	})
	if toWebRTC && md.MediaName.Media == "video" {
		for _, pt := range kept {
			if names[pt] == "rtx" {
				continue
			}
			for _, fb := range []string{"nack pli", "ccm fir"} {
				if !hasFB[pt+" "+fb] && !hasFB["* "+fb] {
					md.Attributes = append(md.Attributes, sdp.Attribute{Key: "rtcp-fb", Value: pt + " " + fb})
				}
			}
		}
	}
	return true
}

package sip

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
)

// errBadSDP means a body could not be parsed as SDP, or its media lines
// cannot be relayed (answered 488 Not Acceptable Here).
var errBadSDP = errors.New("unusable SDP")

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
}

// parseSDP reads the media lines of an SDP body.
func parseSDP(body []byte) (*sdp.SessionDescription, []sdpMedia, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(string(body)); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", errBadSDP, err)
	}
	if len(sd.MediaDescriptions) == 0 {
		return nil, nil, fmt.Errorf("%w: no media lines", errBadSDP)
	}
	sessIP, sessOK := connAddr(sd.ConnectionInformation)
	out := make([]sdpMedia, 0, len(sd.MediaDescriptions))
	for i, md := range sd.MediaDescriptions {
		m := sdpMedia{kind: md.MediaName.Media, clockRates: map[uint8]uint32{}}
		ip, ok := connAddr(md.ConnectionInformation)
		if !ok {
			ip, ok = sessIP, sessOK
		}
		port := md.MediaName.Port.Value
		if port == 0 {
			m.disabled = true
			out = append(out, m)
			continue
		}
		if !ok {
			return nil, nil, fmt.Errorf("%w: m-line %d has no connection address", errBadSDP, i)
		}
		if port < 0 || port > 65535 {
			return nil, nil, fmt.Errorf("%w: m-line %d port %d", errBadSDP, i, port)
		}
		m.rtp = netip.AddrPortFrom(ip, uint16(port))
		for _, a := range md.Attributes {
			switch a.Key {
			case "rtcp-mux":
				m.mux = true
			case "rtcp":
				// a=rtcp:port [nettype addrtype addr]
				f := strings.Fields(a.Value)
				if len(f) == 0 {
					continue
				}
				p, err := strconv.ParseUint(f[0], 10, 16)
				if err != nil {
					continue
				}
				rip := ip
				if len(f) == 4 {
					if x, err := netip.ParseAddr(f[3]); err == nil {
						rip = x
					}
				}
				m.rtcp = netip.AddrPortFrom(rip, uint16(p))
			case "rtpmap":
				// a=rtpmap:PT name/rate[/channels]
				pt, rest, ok := strings.Cut(a.Value, " ")
				if !ok {
					continue
				}
				n, err := strconv.ParseUint(pt, 10, 8)
				if err != nil {
					continue
				}
				_, rate, _ := strings.Cut(rest, "/")
				rate, _, _ = strings.Cut(rate, "/")
				r, err := strconv.ParseUint(rate, 10, 32)
				if err == nil && r > 0 {
					m.clockRates[uint8(n)] = uint32(r)
				}
			}
		}
		if len(md.MediaName.Formats) > 0 {
			if pt, err := strconv.ParseUint(md.MediaName.Formats[0], 10, 8); err == nil {
				m.clock = m.clockRates[uint8(pt)]
			}
		}
		out = append(out, m)
	}
	return &sd, out, nil
}

func connAddr(ci *sdp.ConnectionInformation) (netip.Addr, bool) {
	if ci == nil || ci.Address == nil {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(ci.Address.Address)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// rewriteSDP points every enabled m-line of sd at ip and the given ports
// (one per m-line; RTCP on port+1 unless muxed), so the other party sends
// its media to the relay. It drops what would let media bypass the relay
// (ICE candidates) and keeps everything else — codecs, telephone-event,
// directions (hold), rtcp-mux — as the sender wrote it.
func rewriteSDP(sd *sdp.SessionDescription, ip netip.Addr, ports []int) ([]byte, error) {
	if len(ports) != len(sd.MediaDescriptions) {
		return nil, fmt.Errorf("%w: %d ports for %d m-lines", errBadSDP, len(ports), len(sd.MediaDescriptions))
	}
	addrType := "IP4"
	if ip.Is6() {
		addrType = "IP6"
	}
	conn := func() *sdp.ConnectionInformation {
		return &sdp.ConnectionInformation{NetworkType: "IN", AddressType: addrType, Address: &sdp.Address{Address: ip.String()}}
	}
	sd.Origin.AddressType = addrType
	sd.Origin.UnicastAddress = ip.String()
	if sd.ConnectionInformation != nil {
		sd.ConnectionInformation = conn()
	}
	for i, md := range sd.MediaDescriptions {
		if md.MediaName.Port.Value == 0 {
			continue
		}
		md.MediaName.Port.Value = ports[i]
		md.ConnectionInformation = conn()
		attrs := md.Attributes[:0]
		for _, a := range md.Attributes {
			switch a.Key {
			case "candidate", "end-of-candidates", "remote-candidates":
				continue
			case "rtcp":
				a.Value = strconv.Itoa(ports[i] + 1)
			}
			attrs = append(attrs, a)
		}
		md.Attributes = attrs
	}
	return sd.Marshal()
}

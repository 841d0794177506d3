package gateway

import (
	"strconv"
	"strings"

	"github.com/pion/webrtc/v4"
)

// codec is one payload format of an m-line: what a=rtpmap, a=fmtp and
// a=rtcp-fb say about one payload type.
type codec struct {
	PT       uint8
	Name     string // encoding name as written (PCMU, opus, VP8, ...)
	Clock    uint32
	Channels uint16 // 0 when not given
	Fmtp     string
	Feedback []string // a=rtcp-fb values without the payload type ("nack pli")
}

// Codecs relayed without transcoding. Browsers support them all; the SIP
// side gets those it supports. RFC 3551 names the static audio ones.
var supportedCodecs = map[string]map[string]uint32{
	"audio": {"opus": 48000, "g722": 8000, "pcmu": 8000, "pcma": 8000, "telephone-event": 0},
	"video": {"vp8": 90000, "h264": 90000},
}

// feedbackRelayed is the RTCP feedback the gateway can honour end to end:
// picture loss and full intra requests are passed between the legs so that
// video recovers (RFC 4585 §6.3.1, RFC 5104 §4.3.1). NACK is not: nothing
// on the path keeps packets to retransmit.
var feedbackRelayed = map[string]bool{"nack pli": true, "ccm fir": true}

func (c codec) lname() string { return strings.ToLower(c.Name) }

// isDTMF reports whether c is RFC 4733 telephone-event.
func (c codec) isDTMF() bool { return c.lname() == "telephone-event" }

func (c codec) supported(kind string) bool {
	rate, ok := supportedCodecs[kind][c.lname()]
	if !ok {
		return false
	}
	if c.isDTMF() {
		return c.Clock == 8000 || c.Clock == 48000
	}
	return rate == c.Clock
}

func (c codec) channels() uint16 {
	if c.Channels == 0 {
		return 1
	}
	return c.Channels
}

// fmtpParam returns the value of one fmtp parameter, "" when absent.
func (c codec) fmtpParam(name string) string {
	for _, p := range strings.Split(c.Fmtp, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(k, name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// h264Profile returns profile_idc and profile-iop of an H264 format (the
// part of profile-level-id that must match, RFC 6184 §8.2.2) and its
// packetization mode.
func (c codec) h264Profile() (string, string) {
	pli := strings.ToLower(c.fmtpParam("profile-level-id"))
	if len(pli) >= 4 {
		pli = pli[:4]
	} else {
		pli = "420a" // RFC 6184 default: Baseline, level 1.0 (profile part 42 00)
	}
	mode := c.fmtpParam("packetization-mode")
	if mode == "" {
		mode = "0"
	}
	return pli, mode
}

// same reports whether a and b are the same format, whatever their payload
// types.
func (c codec) same(o codec) bool {
	if !strings.EqualFold(c.Name, o.Name) || c.Clock != o.Clock {
		return false
	}
	if c.lname() == "opus" {
		return true // opus is always /2 in SDP (RFC 7587 §7)
	}
	if c.channels() != o.channels() {
		return false
	}
	if c.lname() == "h264" {
		p1, m1 := c.h264Profile()
		p2, m2 := o.h264Profile()
		return p1 == p2 && m1 == m2
	}
	return true
}

// relayedFeedback keeps the feedback the gateway passes between the legs.
func relayedFeedback(fb []string) []string {
	var out []string
	for _, f := range fb {
		if feedbackRelayed[strings.ToLower(f)] {
			out = append(out, strings.ToLower(f))
		}
	}
	return out
}

// capability is c as pion describes it.
func (c codec) capability(kind string) webrtc.RTPCodecParameters {
	p := webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType:    kind + "/" + c.Name,
			ClockRate:   c.Clock,
			Channels:    c.Channels,
			SDPFmtpLine: c.Fmtp,
		},
		PayloadType: webrtc.PayloadType(c.PT),
	}
	if c.lname() == "opus" {
		p.Channels = 2
	}
	for _, f := range relayedFeedback(c.Feedback) {
		t, param, _ := strings.Cut(f, " ")
		p.RTCPFeedback = append(p.RTCPFeedback, webrtc.RTCPFeedback{Type: t, Parameter: param})
	}
	return p
}

// usable filters the formats of an m-line to those the gateway relays. For
// video it keeps one H264 variant (browsers offer a dozen; packetization
// mode 1 preferred) and gives video formats the relayed feedback;
// telephone-event is kept only at the clock rate of a kept audio codec. The
// SIP offer must fit in a UDP datagram (sipgo refuses more than 1300 bytes,
// RFC 3261 §18.1.1), so it stays short.
func usable(kind string, in []codec) []codec {
	var out []codec
	h264 := -1
	for i, c := range in {
		if c.supported(kind) && c.lname() == "h264" {
			if _, mode := c.h264Profile(); mode == "1" {
				h264 = i
				break
			}
			if h264 < 0 {
				h264 = i
			}
		}
	}
	clocks := map[uint32]bool{}
	for i, c := range in {
		if !c.supported(kind) || c.isDTMF() || c.lname() == "h264" && i != h264 {
			continue
		}
		if kind == "video" {
			c.Feedback = []string{"nack pli", "ccm fir"}
		} else {
			c.Feedback = nil
		}
		clocks[c.Clock] = true
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil
	}
	for _, c := range in {
		if c.isDTMF() && c.supported(kind) && clocks[c.Clock] {
			c.Feedback = nil
			out = append(out, c)
		}
	}
	return out
}

// codecPair is one format both legs agreed on, with each leg's payload type.
type codecPair struct {
	Web, SIP codec
}

// agree pairs the formats an answer accepted with those of the offer they
// answer. offerIsWeb says which leg made the offer. The result follows the
// answer's order of preference and holds a media format besides
// telephone-event, or is empty.
func agree(offer, answer []codec, offerIsWeb bool) []codecPair {
	var out []codecPair
	media := false
	used := map[uint8]bool{}
	for _, a := range answer {
		for _, o := range offer {
			if used[o.PT] || !o.same(a) {
				continue
			}
			used[o.PT] = true
			if offerIsWeb {
				out = append(out, codecPair{Web: o, SIP: a})
			} else {
				out = append(out, codecPair{Web: a, SIP: o})
			}
			if !a.isDTMF() {
				media = true
			}
			break
		}
	}
	if !media {
		return nil
	}
	return out
}

// ptMap translates payload types from one leg to the other; noPT marks a
// type that is not relayed.
type ptMap [128]uint8

const noPT = 0xff

func newPTMaps(pairs []codecPair) (sipToWeb, webToSIP *ptMap, sipDTMF int) {
	sipToWeb, webToSIP = new(ptMap), new(ptMap)
	for i := range sipToWeb {
		sipToWeb[i], webToSIP[i] = noPT, noPT
	}
	sipDTMF = -1
	for _, p := range pairs {
		sipToWeb[p.SIP.PT&0x7f] = p.Web.PT
		webToSIP[p.Web.PT&0x7f] = p.SIP.PT
		if p.SIP.isDTMF() && sipDTMF < 0 {
			sipDTMF = int(p.SIP.PT)
		}
	}
	return sipToWeb, webToSIP, sipDTMF
}

func (c codec) rtpmap() string {
	s := c.Name + "/" + strconv.FormatUint(uint64(c.Clock), 10)
	if c.lname() == "opus" {
		return s + "/2"
	}
	if c.Channels > 1 {
		s += "/" + strconv.FormatUint(uint64(c.Channels), 10)
	}
	return s
}

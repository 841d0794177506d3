package sip

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/pion/sdp/v3"

	"github.com/switchboard/switchboard/internal/sdpmedia"
	"github.com/switchboard/switchboard/media"
)

// A Chromium offer as JsSIP sends it (BUNDLE, ICE, DTLS, rtcp-mux, opus
// first, RTX for video), trimmed.
const chromeOffer = "v=0\r\n" +
	"o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n" +
	"s=-\r\nt=0 0\r\n" +
	"a=group:BUNDLE 0 1\r\n" +
	"a=extmap-allow-mixed\r\n" +
	"a=msid-semantic: WMS\r\n" +
	"m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\n" +
	"c=IN IP4 0.0.0.0\r\n" +
	"a=rtcp:9 IN IP4 0.0.0.0\r\n" +
	"a=candidate:1 1 udp 2122260223 192.168.1.20 50000 typ host generation 0\r\n" +
	"a=ice-ufrag:Zx7B\r\n" +
	"a=ice-pwd:0cOT3w9ZAq0OFzN5tvG1D4ed\r\n" +
	"a=ice-options:trickle\r\n" +
	"a=fingerprint:sha-256 3C:9E:1D:5E:2D:F6:4A:4B:39:2F:2A:0E:BB:59:D9:42:55:8F:54:5C:24:0C:75:9C:34:7C:15:57:1E:0C:7B:F0\r\n" +
	"a=setup:actpass\r\n" +
	"a=mid:0\r\n" +
	"a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n" +
	"a=sendrecv\r\n" +
	"a=rtcp-mux\r\n" +
	"a=rtpmap:111 opus/48000/2\r\n" +
	"a=rtcp-fb:111 transport-cc\r\n" +
	"a=fmtp:111 minptime=10;useinbandfec=1\r\n" +
	"a=rtpmap:63 red/48000/2\r\n" +
	"a=fmtp:63 111/111\r\n" +
	"a=rtpmap:9 G722/8000\r\n" +
	"a=rtpmap:0 PCMU/8000\r\n" +
	"a=rtpmap:8 PCMA/8000\r\n" +
	"a=rtpmap:13 CN/8000\r\n" +
	"a=rtpmap:110 telephone-event/48000\r\n" +
	"a=rtpmap:126 telephone-event/8000\r\n" +
	"a=ssrc:1001 cname:x\r\n" +
	"m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n" +
	"c=IN IP4 0.0.0.0\r\n" +
	"a=ice-ufrag:Zx7B\r\n" +
	"a=ice-pwd:0cOT3w9ZAq0OFzN5tvG1D4ed\r\n" +
	"a=fingerprint:sha-256 3C:9E:1D:5E:2D:F6:4A:4B:39:2F:2A:0E:BB:59:D9:42:55:8F:54:5C:24:0C:75:9C:34:7C:15:57:1E:0C:7B:F0\r\n" +
	"a=setup:actpass\r\n" +
	"a=mid:1\r\n" +
	"a=sendrecv\r\n" +
	"a=rtcp-mux\r\n" +
	"a=rtcp-rsize\r\n" +
	"a=rtpmap:96 VP8/90000\r\n" +
	"a=rtcp-fb:96 nack\r\n" +
	"a=rtcp-fb:96 nack pli\r\n" +
	"a=rtpmap:97 rtx/90000\r\n" +
	"a=fmtp:97 apt=96\r\n"

const plainOffer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
	"m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n" +
	"m=video 4002 RTP/AVP 100\r\na=rtpmap:100 VP8/90000\r\na=sendrecv\r\n"

func TestRenderWebRTCToPlain(t *testing.T) {
	sd, _, err := parseSDP([]byte(chromeOffer))
	if err != nil {
		t.Fatal(err)
	}
	out, err := renderSDP(sd, sdpForm{ip: netip.MustParseAddr("192.0.2.1"), ports: []int{20000, 20004}, convert: true, offer: true})
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	for _, gone := range []string{"SAVPF", "candidate", "ice-", "fingerprint", "setup", "rtcp-mux", "BUNDLE", "rtx", "red/", "rtcp-fb", "a=rtcp:9"} {
		if strings.Contains(s, gone) {
			t.Errorf("plain offer still has %q:\n%s", gone, s)
		}
	}
	got, err := sdpmedia.Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	a, v := got.Media[0], got.Media[1]
	if a.Proto != "RTP/AVP" || a.Port != 20000 || a.Addr.String() != "192.0.2.1" || strings.Join(a.Formats, " ") != "111 9 0 8 13 110 126" {
		t.Errorf("audio m-line %+v", a)
	}
	if v.Proto != "RTP/AVP" || v.Port != 20004 || strings.Join(v.Formats, " ") != "96" {
		t.Errorf("video m-line %+v", v)
	}
}

func TestRenderPlainToWebRTC(t *testing.T) {
	sd, _, err := parseSDP([]byte(plainOffer))
	if err != nil {
		t.Fatal(err)
	}
	fp := media.Fingerprint{Hash: "sha-256", Value: "AA:BB"}
	out, err := renderSDP(sd, sdpForm{ip: netip.MustParseAddr("192.0.2.1"), ports: []int{20000, 20004}, convert: true, webrtc: true,
		offer: true, fingerprint: fp, ice: [][2]string{{"u1", "p1"}, {"u2", "p2"}}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := sdpmedia.Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	if !got.ICELite {
		t.Error("no a=ice-lite")
	}
	for i, m := range got.Media {
		if !m.IsWebRTC() || !m.Mux || m.Setup != "actpass" || m.ICEUfrag != [2]string{"u1", "u2"}[i] || len(m.Fingerprints) != 1 || m.Mid == "" {
			t.Errorf("m%d = %+v", i, m)
		}
	}
	s := string(out)
	if !strings.Contains(s, "a=candidate:1 1 UDP 2130706431 192.0.2.1 20000 typ host") || !strings.Contains(s, "a=rtcp-fb:100 nack pli") {
		t.Errorf("no candidate or picture-loss feedback:\n%s", s)
	}
	// The answer to a browser's offer waits for its ClientHello.
	out, err = renderSDP(mustSD(t, plainOffer), sdpForm{ip: netip.MustParseAddr("192.0.2.1"), ports: []int{20000, 20004}, convert: true, webrtc: true,
		fingerprint: fp, ice: [][2]string{{"u1", "p1"}, {"u2", "p2"}}, theirSetup: []string{"actpass", "passive"}})
	if err != nil {
		t.Fatal(err)
	}
	if s := string(out); !strings.Contains(s, "a=setup:passive") || !strings.Contains(s, "a=setup:active") {
		t.Errorf("answer setup:\n%s", s)
	}
}

func TestRenderNoCommonCodec(t *testing.T) {
	g729 := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 18\r\n"
	_, err := renderSDP(mustSD(t, g729), sdpForm{ip: netip.MustParseAddr("192.0.2.1"), ports: []int{20000}, convert: true, webrtc: true,
		offer: true, ice: [][2]string{{"u", "p"}}})
	if !errors.Is(err, errNoCodec) {
		t.Fatalf("err = %v, want errNoCodec", err)
	}
	if st := mediaError(err, RelayAlways); st == nil || !strings.Contains(st.Error(), "codec") {
		t.Fatalf("mediaError = %v", st)
	}
}

func mustSD(t *testing.T, body string) *sdp.SessionDescription {
	t.Helper()
	sd, _, err := parseSDP([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return sd
}

// FuzzRenderSDP: whatever SDP a party sends, writing it in either form for
// the other party neither panics nor yields an SDP the reader refuses.
func FuzzRenderSDP(f *testing.F) {
	f.Add([]byte(chromeOffer), true)
	f.Add([]byte(plainOffer), false)
	f.Fuzz(func(t *testing.T, body []byte, toWebRTC bool) {
		sd, lines, err := parseSDP(body)
		if err != nil || len(lines) > 16 {
			return
		}
		n := len(sd.MediaDescriptions)
		form := sdpForm{ip: netip.MustParseAddr("192.0.2.1"), ports: make([]int, n), convert: true, webrtc: toWebRTC,
			offer: true, ice: make([][2]string, n), fingerprint: media.Fingerprint{Hash: "sha-256", Value: "AA"}}
		for i := range form.ports {
			form.ports[i] = 20000 + 4*i
			form.ice[i] = [2]string{"ufrag", "password"}
		}
		out, err := renderSDP(sd, form)
		if err != nil {
			return
		}
		if _, err := sdpmedia.Parse(out); err != nil {
			t.Fatalf("rendered SDP does not parse: %v\n%s", err, out)
		}
	})
}

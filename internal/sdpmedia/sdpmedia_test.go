package sdpmedia

import (
	"net/netip"
	"strings"
	"testing"
)

const webrtcOffer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" +
	"a=group:BUNDLE 0 1\r\n" +
	"a=fingerprint:sha-256 AA:BB\r\n" +
	"a=ice-ufrag:sess\r\na=ice-pwd:sesspwd\r\n" +
	"m=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\nc=IN IP4 0.0.0.0\r\n" +
	"a=mid:0\r\na=setup:actpass\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\na=rtcp-fb:* transport-cc\r\n" +
	"m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\n" +
	"a=mid:1\r\na=ice-ufrag:vid\r\na=ice-pwd:vidpwd\r\na=fingerprint:SHA-1 CC:DD\r\na=setup:ACTIVE\r\na=bundle-only\r\na=rtpmap:96 VP8/90000\r\na=sendonly\r\n"

func TestParseWebRTC(t *testing.T) {
	s, err := Parse([]byte(webrtcOffer))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(s.Bundle, " ") != "0 1" || s.ICELite {
		t.Errorf("session: bundle %v lite %v", s.Bundle, s.ICELite)
	}
	a, v := s.Media[0], s.Media[1]
	if !a.IsWebRTC() || a.ICEUfrag != "sess" || a.ICEPwd != "sesspwd" || a.Setup != "actpass" || !a.Mux ||
		len(a.Fingerprints) != 1 || a.Fingerprints[0] != (Fingerprint{"sha-256", "AA:BB"}) || a.Mid != "0" {
		t.Errorf("audio %+v: session-level ICE and fingerprint apply", a)
	}
	if len(a.Codecs) != 2 || a.Codecs[0].Name != "opus" || a.Codecs[0].Channels != 2 || a.Codecs[1].Name != "PCMU" ||
		strings.Join(a.Codecs[0].Feedback, ",") != "transport-cc" {
		t.Errorf("audio codecs %+v", a.Codecs)
	}
	if v.ICEUfrag != "vid" || v.Setup != "active" || len(v.Fingerprints) != 1 || v.Fingerprints[0].Hash != "sha-1" ||
		!v.BundleOnly || v.Dir != SendOnly || v.ClockRates()[96] != 90000 {
		t.Errorf("video %+v: media-level values win", v)
	}
	if a.RTPAddr() != netip.MustParseAddrPort("0.0.0.0:9") || a.RTCPAddr() != a.RTPAddr() {
		t.Errorf("addresses %v %v", a.RTPAddr(), a.RTCPAddr())
	}
}

func TestParseRejects(t *testing.T) {
	for name, body := range map[string]string{
		"not sdp":  "hello",
		"no media": "v=0\r\no=a 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\n",
		"bad port": "v=0\r\no=a 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 70000 RTP/AVP 0\r\n",
	} {
		if _, err := Parse([]byte(body)); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

// FuzzParse: nothing an SDP body holds makes the reader panic.
func FuzzParse(f *testing.F) {
	f.Add([]byte(webrtcOffer))
	f.Add([]byte("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 8 101\r\na=rtcp:4001 IN IP4 1.2.3.5\r\na=rtpmap:101 telephone-event/8000\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Parse(b)
		if err != nil {
			return
		}
		for _, m := range s.Media {
			_ = m.RTCPAddr()
			_ = m.ClockRates()
			_ = m.IsWebRTC()
		}
	})
}

package gateway

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// chromeOffer is the shape of Chrome's offer for a call with audio and
// video (trimmed: fewer H264 variants).
const chromeOffer = "v=0\r\n" +
	"o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n" +
	"s=-\r\nt=0 0\r\n" +
	"a=group:BUNDLE 0 1\r\n" +
	"a=msid-semantic: WMS\r\n" +
	"m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\n" +
	"c=IN IP4 0.0.0.0\r\n" +
	"a=rtcp:9 IN IP4 0.0.0.0\r\n" +
	"a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n" +
	"a=mid:0\r\na=sendrecv\r\na=rtcp-mux\r\n" +
	"a=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n" +
	"a=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\n" +
	"a=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:13 CN/8000\r\n" +
	"a=rtpmap:110 telephone-event/48000\r\na=rtpmap:126 telephone-event/8000\r\n" +
	"m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 104 105 106 107 45\r\n" +
	"c=IN IP4 0.0.0.0\r\n" +
	"a=mid:1\r\na=recvonly\r\na=rtcp-mux\r\n" +
	"a=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 goog-remb\r\na=rtcp-fb:96 transport-cc\r\na=rtcp-fb:96 ccm fir\r\na=rtcp-fb:96 nack\r\na=rtcp-fb:96 nack pli\r\n" +
	"a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n" +
	"a=rtpmap:102 H264/90000\r\na=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f\r\n" +
	"a=rtpmap:103 rtx/90000\r\na=fmtp:103 apt=102\r\n" +
	"a=rtpmap:104 H264/90000\r\na=fmtp:104 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f\r\n" +
	"a=rtpmap:105 rtx/90000\r\na=fmtp:105 apt=104\r\n" +
	"a=rtpmap:106 H264/90000\r\na=fmtp:106 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n" +
	"a=rtpmap:107 rtx/90000\r\na=fmtp:107 apt=106\r\n" +
	"a=rtpmap:45 AV1/90000\r\n"

func TestParseBrowserOffer(t *testing.T) {
	s, err := parseSDP(chromeOffer)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Media) != 2 || s.Media[0].Kind != "audio" || s.Media[1].Kind != "video" {
		t.Fatalf("media %+v", s.Media)
	}
	if s.Media[1].Dir != dirRecvOnly || s.Media[0].Mid != "0" || !s.Media[0].Mux {
		t.Fatalf("attributes %+v", s.Media)
	}
	audio := usable("audio", s.Media[0].Codecs)
	var names []string
	for _, c := range audio {
		names = append(names, c.rtpmap())
	}
	want := "opus/48000/2 G722/8000 PCMU/8000 PCMA/8000 telephone-event/48000 telephone-event/8000"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("usable audio: %s\nwant %s", got, want)
	}
	video := usable("video", s.Media[1].Codecs)
	names = names[:0]
	for _, c := range video {
		names = append(names, c.Name)
		if strings.Join(c.Feedback, ",") != "nack pli,ccm fir" {
			t.Errorf("%s feedback %v", c.Name, c.Feedback)
		}
	}
	if got := strings.Join(names, " "); got != "VP8 H264" || video[1].Fmtp != "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f" {
		t.Errorf("usable video: %s %v (want VP8 and the first H264 with packetization mode 1)", got, video)
	}
}

func TestStaticPayloadTypes(t *testing.T) {
	s, err := parseSDP("v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8 0 99\r\na=rtcp:4003\r\na=sendonly\r\n")
	if err != nil {
		t.Fatal(err)
	}
	m := s.Media[0]
	if len(m.Codecs) != 2 || m.Codecs[0].Name != "PCMA" || m.Codecs[1].Name != "PCMU" {
		t.Fatalf("codecs %+v (dynamic 99 without rtpmap is unusable)", m.Codecs)
	}
	if m.rtpAddr() != netip.MustParseAddrPort("10.0.0.1:4000") || m.rtcpAddr() != netip.MustParseAddrPort("10.0.0.1:4003") || m.Dir != dirSendOnly {
		t.Fatalf("addresses %v %v dir %s", m.rtpAddr(), m.rtcpAddr(), m.Dir)
	}
}

func TestAgree(t *testing.T) {
	web := []codec{
		{PT: 111, Name: "opus", Clock: 48000, Channels: 2},
		{PT: 0, Name: "PCMU", Clock: 8000},
		{PT: 126, Name: "telephone-event", Clock: 8000},
	}
	for _, tc := range []struct {
		name   string
		answer []codec
		want   string // web PT -> SIP PT pairs
	}{
		{"same types", []codec{{PT: 0, Name: "PCMU", Clock: 8000}, {PT: 126, Name: "telephone-event", Clock: 8000}}, "0>0 126>126"},
		{"other dynamic type", []codec{{PT: 0, Name: "pcmu", Clock: 8000}, {PT: 101, Name: "telephone-event", Clock: 8000}}, "0>0 126>101"},
		{"answer order wins", []codec{{PT: 0, Name: "PCMU", Clock: 8000}, {PT: 96, Name: "opus", Clock: 48000, Channels: 2}}, "0>0 111>96"},
		{"only DTMF", []codec{{PT: 126, Name: "telephone-event", Clock: 8000}}, ""},
		{"nothing", []codec{{PT: 18, Name: "G729", Clock: 8000}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, p := range agree(web, tc.answer, true) {
				got = append(got, strconv.Itoa(int(p.Web.PT))+">"+strconv.Itoa(int(p.SIP.PT)))
			}
			if s := strings.Join(got, " "); s != tc.want {
				t.Fatalf("got %q, want %q", s, tc.want)
			}
		})
	}
	sw, ws, dtmf := newPTMaps(agree(web, []codec{{PT: 0, Name: "PCMU", Clock: 8000}, {PT: 101, Name: "telephone-event", Clock: 8000}}, true))
	if sw[101] != 126 || ws[126] != 101 || sw[111] != noPT || dtmf != 101 {
		t.Fatalf("maps: sip101->%d web126->%d sip111->%d dtmf %d", sw[101], ws[126], sw[111], dtmf)
	}
}

func TestH264Matching(t *testing.T) {
	a := codec{Name: "H264", Clock: 90000, Fmtp: "profile-level-id=42e01f;packetization-mode=1"}
	b := codec{Name: "h264", Clock: 90000, Fmtp: "packetization-mode=1;profile-level-id=42E028"}
	c := codec{Name: "H264", Clock: 90000, Fmtp: "profile-level-id=42e01f"}
	if !a.same(b) {
		t.Error("same profile, other level: should match")
	}
	if a.same(c) {
		t.Error("packetization modes 1 and 0 must not match")
	}
}

func TestSIPSDPRoundTrip(t *testing.T) {
	body := sipSDP(7, 3, netip.MustParseAddr("127.0.0.1"), []sipMedia{
		{Kind: "audio", Port: 20000, RTCPPort: 20001, Dir: dirSendOnly, Codecs: []codec{
			{PT: 111, Name: "opus", Clock: 48000, Channels: 2, Fmtp: "minptime=10"},
			{PT: 126, Name: "telephone-event", Clock: 8000, Fmtp: "0-15"}}},
		{Kind: "video", Port: 0, Formats: []string{"96"}},
	})
	s, err := parseSDP(string(body))
	if err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	a := s.Media[0]
	if a.Port != 20000 || a.rtcpAddr().Port() != 20001 || a.Dir != dirSendOnly || len(a.Codecs) != 2 ||
		a.Codecs[0].rtpmap() != "opus/48000/2" || a.Codecs[0].Fmtp != "minptime=10" {
		t.Fatalf("audio %+v\n%s", a, body)
	}
	if s.Media[1].Port != 0 {
		t.Fatalf("rejected video %+v", s.Media[1])
	}
}

func TestDirections(t *testing.T) {
	for _, tc := range []struct{ a, b, want string }{
		{dirSendRecv, dirSendOnly, dirSendOnly},
		{dirRecvOnly, dirSendOnly, dirInactive},
		{dirSendRecv, reverseDir(dirSendOnly), dirRecvOnly},
		{dirInactive, dirSendRecv, dirInactive},
	} {
		if got := intersectDir(tc.a, tc.b); got != tc.want {
			t.Errorf("%s ∩ %s = %s, want %s", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"bob", "sip:bob@example.com"},
		{"+1 (555) 123-4567", "sip:+15551234567@example.com"},
		{"*97", "sip:*97@example.com"},
		{"carol@other.org", "sip:carol@other.org"},
		{"sip:dave@example.com;transport=tcp", "sip:dave@example.com;transport=tcp"},
		{"sips:eve@example.com", "sip:eve@example.com"},
	} {
		u, err := parseTarget(tc.in, "example.com")
		if err != nil || u.String() != tc.want {
			t.Errorf("%q: %v %v, want %s", tc.in, u.String(), err, tc.want)
		}
	}
	for _, bad := range []string{"", "a b", "bob<script>", "sip:example.com", strings.Repeat("x", 300)} {
		if _, err := parseTarget(bad, "example.com"); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestWantsKeyframe(t *testing.T) {
	rr := []byte{0x80, 201, 0, 1, 0, 0, 0, 1}
	pli := []byte{0x81, 206, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2}
	fir := []byte{0x84, 206, 0, 4, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 1, 0, 0, 0}
	nack := []byte{0x81, 205, 0, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 1, 0, 0}
	cases := []struct {
		name string
		b    []byte
		want bool
	}{
		{"RR", rr, false},
		{"RR+PLI", append(append([]byte{}, rr...), pli...), true},
		{"FIR", fir, true},
		{"NACK", nack, false},
		{"truncated", pli[:10], false},
		{"garbage", []byte{1, 2, 3, 4, 5}, false},
	}
	for _, tc := range cases {
		if got := wantsKeyframe(tc.b); got != tc.want {
			t.Errorf("%s: %v", tc.name, got)
		}
	}
}

func FuzzParseSDP(f *testing.F) {
	f.Add(chromeOffer)
	f.Add("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 1 RTP/AVP 0\r\n")
	f.Fuzz(func(t *testing.T, s string) {
		sess, err := parseSDP(s)
		if err != nil {
			return
		}
		for _, m := range sess.Media {
			_ = usable(m.Kind, m.Codecs)
			_ = m.rtcpAddr()
			agree(m.Codecs, m.Codecs, true)
		}
	})
}

func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"bob", "sip:a@b", "+1 555", "a@b;c=d", "sips:x@y?z=1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := parseTarget(s, "example.com")
		if err == nil && (u.User == "" || u.Host == "") {
			t.Fatalf("%q gave %v", s, u)
		}
	})
}

func FuzzWantsKeyframe(f *testing.F) {
	f.Add([]byte{0x81, 206, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2})
	f.Fuzz(func(t *testing.T, b []byte) { wantsKeyframe(b) })
}

// TestInviteFitsUDP checks that the INVITE for a browser's audio and video
// offer, with digest credentials, stays within the 1300 bytes sipgo sends
// over UDP (RFC 3261 §18.1.1).
func TestInviteFitsUDP(t *testing.T) {
	web, err := parseSDP(chromeOffer)
	if err != nil {
		t.Fatal(err)
	}
	var media []sipMedia
	for i, m := range web.Media {
		media = append(media, sipMedia{Kind: m.Kind, Port: 10000 + 2*i, RTCPPort: 10001 + 2*i, Codecs: usable(m.Kind, m.Codecs), Dir: dirSendRecv})
	}
	body := sipSDP(4294967295, 1, netip.MustParseAddr("127.0.0.1"), media)
	target := sip.Uri{Scheme: "sip", User: "carol", Host: "switchboard.local"}
	d := &dialog{callID: sip.GenerateTagN(24), local: sip.Uri{Scheme: "sip", User: "alice", Host: "switchboard.local"},
		localTag: sip.GenerateTagN(16), remote: target, remoteTarget: target,
		contact: sip.Uri{Scheme: "sip", User: "wrtc-0123456789abcdef", Host: "127.0.0.1", Port: 54321, UriParams: sip.HeaderParams{{K: "transport", V: "udp"}}}}
	inv := d.newRequest(sip.INVITE)
	inv.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	inv.SetBody(body)
	u := &sipUA{local: netip.MustParseAddrPort("127.0.0.1:54321"), agent: DefaultUserAgent, proxy: "127.0.0.1:5060"}
	u.prepare(inv)
	inv.AppendHeader(sip.NewHeader("Proxy-Authorization", `Digest username="alice", realm="switchboard.local", nonce="GOrw9FcbZUnB1ohOhIGbzJuyOfnONBy5", uri="sip:carol@switchboard.local", algorithm=MD5, cnonce="41fb5c1a6a0e62eb", qop=auth, nc=00000001, response="ca555c4811fb123452116134c5bd9986"`))
	if n := len(inv.String()); n > 1300 {
		t.Errorf("INVITE is %d bytes, more than sipgo sends over UDP:\n%s", n, inv.String())
	} else {
		t.Logf("INVITE %d bytes, SDP %d bytes", n, len(body))
	}
}

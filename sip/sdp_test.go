package sip

import (
	"net/netip"
	"strings"
	"testing"
)

const offerAudio = "v=0\r\no=alice 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n" +
	"m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n"

const offerAV = "v=0\r\no=alice 1 2 IN IP4 10.0.0.5\r\ns=-\r\nt=0 0\r\n" +
	"m=audio 4000 RTP/AVP 111 0\r\nc=IN IP4 10.0.0.5\r\na=rtpmap:111 opus/48000/2\r\na=rtcp-mux\r\na=candidate:1 1 UDP 2130706431 10.0.0.5 4000 typ host\r\n" +
	"m=video 4002 RTP/AVP 96\r\nc=IN IP4 10.0.0.6\r\na=rtpmap:96 VP8/90000\r\na=rtcp:4009 IN IP4 10.0.0.7\r\n"

const holdOffer = "v=0\r\no=alice 1 3 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n" +
	"m=audio 4000 RTP/AVP 0\r\na=sendonly\r\n"

const disabledVideo = "v=0\r\no=bob 1 1 IN IP4 10.1.0.9\r\ns=-\r\nc=IN IP4 10.1.0.9\r\nt=0 0\r\n" +
	"m=audio 5000 RTP/AVP 0\r\nm=video 0 RTP/AVP 96\r\n"

func TestParseSDP(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []sdpMedia
	}{
		{"audio with telephone-event", offerAudio, []sdpMedia{{kind: "audio", rtp: ap("10.0.0.5:4000"), clock: 8000}}},
		{"audio+video, mux, rtcp attr, per-media c=", offerAV, []sdpMedia{
			{kind: "audio", rtp: ap("10.0.0.5:4000"), mux: true, clock: 48000},
			{kind: "video", rtp: ap("10.0.0.6:4002"), rtcp: ap("10.0.0.7:4009"), clock: 90000},
		}},
		{"hold", holdOffer, []sdpMedia{{kind: "audio", rtp: ap("10.0.0.5:4000"), clock: 8000}}}, // PCMU: static 8 kHz
		{"disabled stream", disabledVideo, []sdpMedia{{kind: "audio", rtp: ap("10.1.0.9:5000"), clock: 8000}, {kind: "video", disabled: true}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, got, err := parseSDP([]byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d media, want %d", len(got), len(tc.want))
			}
			for i, w := range tc.want {
				g := got[i]
				if g.kind != w.kind || g.rtp != w.rtp || g.rtcp != w.rtcp || g.mux != w.mux || g.disabled != w.disabled || g.clock != w.clock {
					t.Errorf("m%d = %+v, want %+v", i, g, w)
				}
			}
		})
	}
}

func TestParseSDPRejects(t *testing.T) {
	for name, body := range map[string]string{
		"not sdp":       "hello",
		"no media":      "v=0\r\no=a 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\n",
		"no connection": "v=0\r\no=a 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, _, err := parseSDP([]byte(body)); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestRewriteSDP(t *testing.T) {
	relay := netip.MustParseAddr("203.0.113.10")
	tests := []struct {
		name     string
		body     string
		ports    []int
		contains []string
		absent   []string
	}{
		{"audio offer", offerAudio, []int{20000},
			[]string{"c=IN IP4 203.0.113.10", "m=audio 20000 RTP/AVP 0 8 101", "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16", "a=sendrecv", "o=alice 1 1 IN IP4 203.0.113.10"},
			[]string{"10.0.0.5"}},
		{"audio+video", offerAV, []int{20000, 20004},
			[]string{"m=audio 20000", "m=video 20004", "a=rtcp-mux", "a=rtcp:20005", "a=rtpmap:96 VP8/90000"},
			[]string{"candidate", "10.0.0."}},
		{"hold keeps direction", holdOffer, []int{20008}, []string{"a=sendonly", "m=audio 20008"}, []string{"10.0.0.5"}},
		{"disabled stream stays 0", disabledVideo, []int{20000, 0}, []string{"m=audio 20000", "m=video 0 RTP/AVP 96"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sd, _, err := parseSDP([]byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			out, err := rewriteSDP(sd, relay, tc.ports)
			if err != nil {
				t.Fatal(err)
			}
			s := string(out)
			for _, c := range tc.contains {
				if !strings.Contains(s, c) {
					t.Errorf("missing %q in\n%s", c, s)
				}
			}
			for _, c := range tc.absent {
				if strings.Contains(s, c) {
					t.Errorf("unexpected %q in\n%s", c, s)
				}
			}
			// The result must parse again and point only at the relay.
			_, lines, err := parseSDP(out)
			if err != nil {
				t.Fatalf("rewritten SDP does not parse: %v", err)
			}
			for i, l := range lines {
				if !l.disabled && (l.rtp.Addr() != relay || int(l.rtp.Port()) != tc.ports[i]) {
					t.Errorf("m%d points at %v", i, l.rtp)
				}
			}
		})
	}
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// FuzzRewriteSDP feeds arbitrary bodies through the SDP path of the proxy:
// parse, then rewrite what parsed; neither may panic, and a rewrite must
// parse again.
func FuzzRewriteSDP(f *testing.F) {
	for _, s := range []string{offerAudio, offerAV, holdOffer, disabledVideo, "", "v=0\r\n", "m=audio 99999 RTP/AVP 0\r\n"} {
		f.Add([]byte(s))
	}
	relay := netip.MustParseAddr("192.0.2.1")
	f.Fuzz(func(t *testing.T, body []byte) {
		sd, lines, err := parseSDP(body)
		if err != nil {
			return
		}
		ports := make([]int, len(lines))
		for i := range ports {
			ports[i] = 30000 + 4*i
		}
		out, err := rewriteSDP(sd, relay, ports)
		if err != nil {
			return
		}
		if _, _, err := parseSDP(out); err != nil {
			t.Fatalf("rewrite of a parsable SDP does not parse: %v\n%q", err, out)
		}
	})
}

package main

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// browserSDP is the browser's offer as a WebRTC stack writes it for one
// audio m-line: ICE credentials and host candidate, DTLS fingerprint and
// setup, rtcp-mux, PCMU.
func browserSDP(br browserOffer) string {
	ip, port := br.addr.Addr().String(), strconv.Itoa(int(br.addr.Port()))
	return "v=0\r\no=- 1 1 IN IP4 " + ip + "\r\ns=-\r\nc=IN IP4 " + ip + "\r\nt=0 0\r\n" +
		"a=group:BUNDLE 0\r\na=msid-semantic: WMS\r\n" +
		"m=audio " + port + " UDP/TLS/RTP/SAVPF 0\r\n" +
		"a=rtpmap:0 PCMU/8000\r\n" +
		"a=ice-ufrag:" + br.ufrag + "\r\na=ice-pwd:" + br.pwd + "\r\n" +
		"a=fingerprint:" + br.fingerprint + "\r\na=setup:" + br.setup + "\r\n" +
		"a=mid:0\r\na=rtcp-mux\r\na=sendrecv\r\n" +
		"a=candidate:1 1 udp 2130706431 " + ip + " " + port + " typ host\r\n" +
		"a=end-of-candidates\r\n"
}

var (
	reUfrag  = regexp.MustCompile(`(?m)^a=ice-ufrag:(\S+)`)
	rePwd    = regexp.MustCompile(`(?m)^a=ice-pwd:(\S+)`)
	reFP     = regexp.MustCompile(`(?m)^a=fingerprint:(\S+ \S+)`)
	reSetup  = regexp.MustCompile(`(?m)^a=setup:(\S+)`)
	reCand   = regexp.MustCompile(`(?m)^a=candidate:\S+ 1 (?i:udp) \d+ ([0-9.]+) (\d+) typ host`)
	reProtoA = regexp.MustCompile(`(?m)^m=audio \d+ (\S+) `)
)

// parseRelayAnswer reads the relay's SDP towards the browser.
func parseRelayAnswer(sdp string) (relayAnswer, error) {
	var a relayAnswer
	one := func(re *regexp.Regexp, what string) (string, error) {
		m := re.FindStringSubmatch(sdp)
		if m == nil {
			return "", fmt.Errorf("no %s in the SDP towards the browser: %q", what, sdp)
		}
		return m[1], nil
	}
	var err error
	if p, err := one(reProtoA, "m=audio"); err != nil || p != "UDP/TLS/RTP/SAVPF" {
		return a, fmt.Errorf("SDP towards the browser has proto %q, want UDP/TLS/RTP/SAVPF: %q", p, sdp)
	}
	if a.ufrag, err = one(reUfrag, "a=ice-ufrag"); err != nil {
		return a, err
	}
	if a.pwd, err = one(rePwd, "a=ice-pwd"); err != nil {
		return a, err
	}
	if a.setup, err = one(reSetup, "a=setup"); err != nil {
		return a, err
	}
	if a.setup != "passive" {
		return a, fmt.Errorf("relay answered a=setup:%s, want passive", a.setup)
	}
	for _, m := range reFP.FindAllStringSubmatch(sdp, -1) {
		a.fingerprints = append(a.fingerprints, m[1])
	}
	if len(a.fingerprints) == 0 {
		return a, fmt.Errorf("no a=fingerprint in the SDP towards the browser: %q", sdp)
	}
	if m := reCand.FindStringSubmatch(sdp); m != nil {
		ip, err := netip.ParseAddr(m[1])
		if err != nil {
			return a, err
		}
		port, _ := strconv.Atoi(m[2])
		a.addr = netip.AddrPortFrom(ip, uint16(port))
	} else if a.addr, err = sdpAddr(sdp); err != nil {
		return a, err
	}
	return a, nil
}

// newRTCCall has the browser call the phone through rtpengine, as Kamailio
// does for a WebRTC client: the offer (the browser's SDP) goes to the phone
// with ICE=remove and RTP/AVP, the answer (the phone's SDP) to the browser
// with ICE=force and DTLS=passive.
func (e *rtpengine) newRTCCall(i int, br browserOffer, b netip.AddrPort) (relayAnswer, netip.AddrPort, error) {
	id := fmt.Sprintf("bench-rtc-%s-%d", e.run, i)
	off, err := e.do(map[string]any{
		"command": "offer", "call-id": id, "from-tag": "a", "sdp": browserSDP(br),
		"ICE": "remove", "transport-protocol": "RTP/AVP", "rtcp-mux": []string{"demux"},
	})
	if err != nil {
		return relayAnswer{}, netip.AddrPort{}, err
	}
	e.calls = append(e.calls, id)
	toPhone := fmt.Sprint(off["sdp"])
	if strings.Contains(toPhone, "a=ice-") || strings.Contains(toPhone, "a=fingerprint") {
		return relayAnswer{}, netip.AddrPort{}, fmt.Errorf("rtpengine left ICE or DTLS in the SDP towards the phone: %q", toPhone)
	}
	toB, err := sdpAddr(toPhone) // the phone sends here
	if err != nil {
		return relayAnswer{}, netip.AddrPort{}, err
	}
	ans, err := e.do(map[string]any{
		"command": "answer", "call-id": id, "from-tag": "a", "to-tag": "b", "sdp": phoneSDP(b),
		"ICE": "force", "DTLS": "passive",
	})
	if err != nil {
		return relayAnswer{}, netip.AddrPort{}, err
	}
	ra, err := parseRelayAnswer(fmt.Sprint(ans["sdp"]))
	return ra, toB, err
}

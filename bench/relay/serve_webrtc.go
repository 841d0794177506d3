package main

import (
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/switchboard/switchboard/media"
)

// serveWebRTC answers the control command
//
//	WEBRTC <phoneIP:port> <ufrag> <pwd> <setup> <fp-hash> <fp-value>
//	  -> OK <portA> <portB> <ufrag> <pwd> <fp-hash> <fp-value>
//
// which creates a stream whose side A is a WebRTC leg for a browser with
// those ICE credentials, a=setup and certificate fingerprint (it latches on
// the browser's first valid connectivity check) and whose side B is the
// plain RTP phone. The answer is what the relay's SDP towards the browser
// would carry: its port, ICE credentials and certificate fingerprint.
func serveWebRTC(r *media.Relay, f []string, w io.Writer) (*media.Stream, error) {
	if len(f) != 7 {
		return nil, fmt.Errorf("want WEBRTC phone ufrag pwd setup fp-hash fp-value")
	}
	b, err := netip.ParseAddrPort(f[1])
	if err != nil {
		return nil, err
	}
	br := browserOffer{ufrag: f[2], pwd: f[3], setup: f[4], fingerprint: f[5] + " " + f[6]}
	s, ans, toB, err := newRTCStream(r, br, b)
	if err != nil {
		return nil, err
	}
	fmt.Fprintln(w, "OK", ans.addr.Port(), toB.Port(), ans.ufrag, ans.pwd, ans.fingerprints[0])
	return s, nil
}

// newRTCStream creates a stream of r whose side A is a WebRTC leg for the
// browser and whose side B is the plain RTP phone at b, as the proxy does
// for a WebRTC⇄plain call. It returns what the relay's SDP towards the
// browser says, and where the phone sends.
func newRTCStream(r *media.Relay, br browserOffer, b netip.AddrPort) (*media.Stream, relayAnswer, netip.AddrPort, error) {
	hash, value, _ := strings.Cut(br.fingerprint, " ")
	s, err := r.NewStream(nil)
	if err != nil {
		return nil, relayAnswer{}, netip.AddrPort{}, err
	}
	s.SetPeer(media.A, media.Peer{RTCPMux: true, WebRTC: &media.WebRTCPeer{
		Ufrag: br.ufrag, Pwd: br.pwd, Setup: br.setup,
		Fingerprints: []media.Fingerprint{{Hash: hash, Value: value}},
	}})
	s.SetPeer(media.B, media.Peer{RTP: b})
	ufrag, pwd := s.LocalICE(media.A)
	fp := r.Fingerprint()
	lo := netip.MustParseAddr("127.0.0.1")
	return s, relayAnswer{
		addr: netip.AddrPortFrom(lo, uint16(s.LocalPort(media.A))), ufrag: ufrag, pwd: pwd,
		fingerprints: []string{fp.String()}, setup: "passive",
	}, netip.AddrPortFrom(lo, uint16(s.LocalPort(media.B))), nil
}

// newRTCCall sets up call i on the relay process with the WEBRTC command.
func (s *switchboard) newRTCCall(_ int, br browserOffer, b netip.AddrPort) (relayAnswer, netip.AddrPort, error) {
	f, err := s.do(fmt.Sprintf("WEBRTC %s %s %s %s %s", b, br.ufrag, br.pwd, br.setup, br.fingerprint))
	if err != nil {
		return relayAnswer{}, netip.AddrPort{}, err
	}
	if len(f) != 6 {
		return relayAnswer{}, netip.AddrPort{}, fmt.Errorf("WEBRTC: answer %q", f)
	}
	var pa, pb uint16
	fmt.Sscan(f[0], &pa)
	fmt.Sscan(f[1], &pb)
	lo := netip.MustParseAddr("127.0.0.1")
	return relayAnswer{
		addr: netip.AddrPortFrom(lo, pa), ufrag: f[2], pwd: f[3],
		fingerprints: []string{f[4] + " " + f[5]}, setup: "passive",
	}, netip.AddrPortFrom(lo, pb), nil
}

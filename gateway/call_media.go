package gateway

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
)

// allocStreams opens the RTP/RTCP sockets of the m-lines the gateway
// relays: the first audio and the first video line with a usable codec
// (and, on the SIP side, plain RTP: the SIP leg has no SRTP). The result is
// indexed like media; nil where nothing is relayed.
func (c *call) allocStreams(media []mediaDesc, sipSide bool) ([]*stream, error) {
	out := make([]*stream, len(media))
	seen := map[string]bool{}
	for i, m := range media {
		if (m.Kind != "audio" && m.Kind != "video") || m.Port == 0 || seen[m.Kind] || len(usable(m.Kind, m.Codecs)) == 0 {
			continue
		}
		if sipSide && !plainRTP(m.Proto) {
			continue
		}
		rtpC, rtcpC, err := c.g.ports.pair()
		if err != nil {
			for _, s := range out {
				if s != nil {
					s.close()
				}
			}
			return nil, err
		}
		seen[m.Kind] = true
		s := newStream(i, m.Kind, rtpC, rtcpC, c.log)
		s.onDTMF = func(d string) { c.post(event{kind: evDTMF, digit: d}) }
		out[i] = s
	}
	return out, nil
}

// plainRTP reports whether an m-line's transport is RTP without SRTP
// (RFC 3551 RTP/AVP, RFC 4585 RTP/AVPF).
func plainRTP(proto string) bool {
	return strings.EqualFold(proto, "RTP/AVP") || strings.EqualFold(proto, "RTP/AVPF")
}

// startStreams runs the SIP-side packet loops of every stream.
func (c *call) startStreams() {
	for _, s := range c.streams {
		if s != nil {
			st := s
			c.media.spawn(func() {
				var wg sync.WaitGroup
				st.start(&wg)
				wg.Wait()
			})
		}
	}
}

// sdpBody renders localMedia with the next SDP version (RFC 3264 §8: each
// new offer or answer increments it).
func (c *call) sdpBody() []byte {
	c.sdpVersion++
	return sipSDP(c.sdpID, c.sdpVersion, c.g.sipIP, c.localMedia)
}

// applyRemote takes the SIP party's new SDP (in a re-INVITE or an answer to
// ours): where it wants media and whether it sends and receives.
func (c *call) applyRemote(s *session) {
	for i, m := range s.Media {
		if i >= len(c.streams) || c.streams[i] == nil || i >= len(c.localMedia) {
			continue
		}
		st := c.streams[i]
		if m.Port == 0 {
			st.setDirection(false, false)
			continue
		}
		st.setRemote(m)
		ours, remoteDir := c.localMedia[i].Dir, sdpDir(m)
		st.setDirection(sends(remoteDir) && receives(ours), receives(remoteDir) && sends(ours))
	}
}

// applyRemoteBody is applyRemote for an SDP body (of an ACK or a 2xx),
// when there is one and it parses.
func (c *call) applyRemoteBody(body []byte) {
	if len(body) == 0 {
		return
	}
	if s, err := parseSDP(string(body)); err == nil {
		c.applyRemote(s)
	}
}

// iceWatch is the timer that ends the call when the browser's media
// connection does not come up, or stays down, for Config.ICETimeout.
type iceWatch struct {
	timer *time.Timer
	C     <-chan time.Time // nil while disarmed
}

// arm starts (or restarts) the timer.
func (w *iceWatch) arm(d time.Duration) {
	if w.timer != nil {
		w.timer.Stop()
	}
	w.timer = time.NewTimer(d)
	w.C = w.timer.C
}

// disarm stops the timer.
func (w *iceWatch) disarm() {
	if w.timer != nil {
		w.timer.Stop()
	}
	w.C = nil
}

// armICE starts the ICE timer of the call.
func (c *call) armICE() { c.ice.arm(c.g.cfg.ICETimeout) }

// peerState handles a peer connection's state change. It returns an error
// code and message when the call must end.
func (c *call) peerState(p *peer, s webrtc.PeerConnectionState) (string, string) {
	if p != c.peer {
		return "", ""
	}
	switch s {
	case webrtc.PeerConnectionStateConnected:
		c.ice.disarm()
		if !p.up {
			p.up = true
			c.log.Debug("browser media connected")
			for _, st := range c.streams {
				if st != nil {
					st.keyframeToSIP()
				}
			}
		}
	case webrtc.PeerConnectionStateDisconnected:
		c.armICE()
	case webrtc.PeerConnectionStateFailed:
		if !p.up && p.iceUp.Load() || p.pc.ICEConnectionState() == webrtc.ICEConnectionStateConnected ||
			p.pc.ICEConnectionState() == webrtc.ICEConnectionStateCompleted {
			return errDTLSFailed, "the browser's DTLS-SRTP handshake failed"
		}
		if p.up {
			return errICEFailed, "lost the media connection to the browser"
		}
		return errICEFailed, "the browser's media connection (ICE) could not be established"
	case webrtc.PeerConnectionStateClosed:
		if !p.up {
			// pion closes the connection itself when the DTLS handshake
			// fails (a wrong fingerprint), racing its own move to Failed;
			// an ICE failure ends in Failed, never in Closed.
			return errDTLSFailed, "the browser's DTLS-SRTP handshake failed"
		}
		return errICEFailed, "the browser's media connection closed"
	}
	return "", ""
}

// iceExpired is the error for an ICE timer that fired.
func (c *call) iceExpired() (string, string) {
	if c.peer != nil && c.peer.up {
		return errICEFailed, "lost the media connection to the browser"
	}
	return errICEFailed, fmt.Sprintf("the browser's media connection did not come up within %s", c.g.cfg.ICETimeout)
}

package gateway

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
)

// gatherTimeout bounds ICE gathering for the gateway's own candidates (host
// candidates only, so it is quick).
const gatherTimeout = 5 * time.Second

// settingEngine builds the pion settings shared by every peer connection:
// host candidates on the configured addresses and port range, no mDNS, and
// the ICE timeouts that end a call whose browser has vanished.
func settingEngine(cfg *Config, logs pionLogs) (webrtc.SettingEngine, error) {
	var se webrtc.SettingEngine
	se.LoggerFactory = logs
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6})
	if cfg.UDPPortMin > 0 {
		if err := se.SetEphemeralUDPPortRange(uint16(cfg.UDPPortMin), uint16(cfg.UDPPortMax)); err != nil {
			return se, fmt.Errorf("ICE port range: %w", err)
		}
	}
	// pion calls a connection disconnected after this much silence; the
	// call's own timer (ICETimeout) then decides when it has failed.
	disconnected := min(5*time.Second, cfg.ICETimeout/2)
	se.SetICETimeouts(disconnected, cfg.ICETimeout, 2*time.Second)
	if len(cfg.ICEIPs) > 0 {
		allowed := map[netip.Addr]bool{}
		for _, s := range cfg.ICEIPs {
			a := netip.MustParseAddr(s)
			allowed[a.Unmap()] = true
			if a.IsLoopback() {
				se.SetIncludeLoopbackCandidate(true)
			}
		}
		se.SetIPFilter(func(ip net.IP) bool {
			a, ok := netip.AddrFromSlice(ip)
			return ok && allowed[a.Unmap()]
		})
	} else if cfg.ICELoopback || !hasNonLoopbackAddr() {
		se.SetIncludeLoopbackCandidate(true)
	}
	if cfg.PublicIP != "" {
		// 1:1 NAT: host candidates carry the public address instead of the
		// local one (what SetNAT1To1IPs with a host type did).
		if err := se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{
			External: []string{cfg.PublicIP}, AsCandidateType: webrtc.ICECandidateTypeHost, Mode: webrtc.ICEAddressRewriteReplace,
		}); err != nil {
			return se, fmt.Errorf("public_ip: %w", err)
		}
	}
	return se, nil
}

// hasNonLoopbackAddr reports whether an interface that is up has an
// address other than loopback and link-local.
func hasNonLoopbackAddr() bool {
	ifs, err := net.Interfaces()
	if err != nil {
		return true
	}
	for _, i := range ifs {
		if i.Flags&net.FlagUp == 0 || i.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := i.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && !ipn.IP.IsLinkLocalUnicast() {
				return true
			}
		}
	}
	return false
}

// peerMedia is one m-line of the browser leg: the stream it relays and the
// codecs (with the browser leg's payload types).
type peerMedia struct {
	stream *stream
	codecs []codec
	dir    webrtc.RTPTransceiverDirection // for an offer we make
}

// peer is the gateway's WebRTC peer connection toward one browser tab.
type peer struct {
	pc      *webrtc.PeerConnection
	tab     *tab
	media   []peerMedia
	tracks  []*relayTrack
	remote  bool // remote description set
	pending []webrtc.ICECandidateInit
	up      bool // connected once
	// iceUp is set once ICE has connected (pion's ICE callback): when the
	// connection then fails without having come up, DTLS failed. Read at
	// the Failed event, ICEConnectionState may already say Closed: pion
	// closes ICE after a failed handshake.
	iceUp atomic.Bool
}

func kindOf(k string) webrtc.RTPCodecType {
	if k == "video" {
		return webrtc.RTPCodecTypeVideo
	}
	return webrtc.RTPCodecTypeAudio
}

// newPeer builds a peer connection whose media engine knows exactly the
// given codecs, so that whatever it negotiates the other leg can carry.
func (g *Gateway) newPeer(c *call, t *tab, media []peerMedia) (*peer, error) {
	var me webrtc.MediaEngine
	for _, m := range media {
		for _, cd := range m.codecs {
			if err := me.RegisterCodec(cd.capability(m.stream.kind), kindOf(m.stream.kind)); err != nil {
				return nil, fmt.Errorf("register codec %s: %w", cd.Name, err)
			}
		}
	}
	var ir interceptor.Registry
	if err := webrtc.ConfigureRTCPReports(&ir); err != nil {
		return nil, err
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(&me), webrtc.WithSettingEngine(g.se), webrtc.WithInterceptorRegistry(&ir))
	pc, err := api.NewPeerConnection(webrtc.Configuration{BundlePolicy: webrtc.BundlePolicyMaxBundle})
	if err != nil {
		return nil, fmt.Errorf("peer connection: %w", err)
	}
	p := &peer{pc: pc, tab: t, media: media}
	pc.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) {
		if s == webrtc.ICEConnectionStateConnected || s == webrtc.ICEConnectionStateCompleted {
			p.iceUp.Store(true)
		}
	})
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		c.post(event{kind: evPeerState, peer: p, pcState: s})
	})
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for _, m := range p.media {
			if m.stream.kind == tr.Kind().String() {
				st := m.stream
				c.media.spawn(func() { st.webLoop(tr) })
				return
			}
		}
	})
	return p, nil
}

// addTracks gives every m-line a relay track. With offer set it adds
// transceivers in the streams' order (the gateway offers); otherwise the
// tracks attach to the transceivers the browser's offer created.
func (p *peer) addTracks(c *call, offer bool) error {
	for i, m := range p.media {
		tr := newRelayTrack(kindOf(m.stream.kind), fmt.Sprintf("%s%d", m.stream.kind, i), "switchboard")
		var sender *webrtc.RTPSender
		if offer {
			tc, err := p.pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: m.dir})
			if err != nil {
				return fmt.Errorf("add %s transceiver: %w", m.stream.kind, err)
			}
			sender = tc.Sender()
		} else {
			s, err := p.pc.AddTrack(tr)
			if err != nil {
				return fmt.Errorf("add %s track: %w", m.stream.kind, err)
			}
			sender = s
		}
		p.tracks = append(p.tracks, tr)
		st := m.stream
		if sender != nil {
			c.media.spawn(func() { st.senderRTCPLoop(sender) })
		}
	}
	return nil
}

// localDescription sets d as the local description and returns it with
// the gateway's candidates, once gathered.
func (p *peer) localDescription(d webrtc.SessionDescription) (string, error) {
	done := webrtc.GatheringCompletePromise(p.pc)
	if err := p.pc.SetLocalDescription(d); err != nil {
		return "", fmt.Errorf("set local description: %w", err)
	}
	select {
	case <-done:
	case <-time.After(gatherTimeout):
		return "", errors.New("ICE gathering timed out")
	}
	return p.pc.LocalDescription().SDP, nil
}

// answer applies the browser's offer and returns the gateway's answer.
func (p *peer) answer(c *call, offer string) (string, error) {
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	p.remote = true
	if err := p.addTracks(c, false); err != nil {
		return "", err
	}
	p.flushICE()
	ans, err := p.pc.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("create answer: %w", err)
	}
	return p.localDescription(ans)
}

// offer returns the gateway's offer to the browser.
func (p *peer) offer(c *call) (string, error) {
	if err := p.addTracks(c, true); err != nil {
		return "", err
	}
	o, err := p.pc.CreateOffer(nil)
	if err != nil {
		return "", fmt.Errorf("create offer: %w", err)
	}
	return p.localDescription(o)
}

// accept applies the browser's answer to the gateway's offer.
func (p *peer) accept(answer string) error {
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		return fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	p.remote = true
	p.flushICE()
	return nil
}

// addICE adds a candidate the browser trickled, or keeps it until the
// remote description is set.
func (p *peer) addICE(cand webrtc.ICECandidateInit) error {
	if !p.remote {
		if len(p.pending) < 64 {
			p.pending = append(p.pending, cand)
		}
		return nil
	}
	return p.pc.AddICECandidate(cand)
}

func (p *peer) flushICE() {
	for _, cand := range p.pending {
		_ = p.pc.AddICECandidate(cand)
	}
	p.pending = nil
}

// use makes the streams relay to and from this peer.
func (p *peer) use() {
	for i, m := range p.media {
		if i < len(p.tracks) {
			m.stream.track.Store(p.tracks[i])
		}
		m.stream.pc.Store(p.pc)
	}
}

func (p *peer) close() {
	_ = p.pc.Close()
}

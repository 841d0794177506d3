package media

import (
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base32"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/pion/dtls/v3/pkg/crypto/fingerprint"
	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// WebRTC legs. A side of a Stream is a WebRTC leg when its party speaks
// ICE and DTLS-SRTP (an SDP with UDP/TLS/RTP/SAVPF, RFC 5764 and RFC 8843's
// WebRTC profile), which the relay terminates as rtpengine does with
// ICE=force and DTLS=passive:
//
//   - ICE as a lite agent (RFC 8445 §2.5): the relay has one host candidate,
//     the side's RTP port, and only answers the party's connectivity checks,
//     authenticated with the short-term credentials it wrote in the SDP
//     (LocalICE). The party's source of a valid check becomes the side's
//     address; a check with USE-CANDIDATE moves it.
//   - DTLS-SRTP (RFC 5763, RFC 5764) on the same port, the relay's
//     certificate being Relay.Fingerprint; server unless the party said
//     a=setup:passive.
//   - SRTP and SRTCP from the party are decrypted in place and relayed as
//     RTP and RTCP; RTP and RTCP towards the party are encrypted in place.
//     RTCP is multiplexed on the RTP port (RFC 5761), as WebRTC requires.
//
// The demultiplexing of the first byte follows RFC 7983 §7.

// WebRTCPeer is what a WebRTC party's SDP says about its ICE and DTLS.
type WebRTCPeer struct {
	// Ufrag and Pwd are the party's a=ice-ufrag and a=ice-pwd.
	Ufrag, Pwd string
	// Fingerprints are the party's a=fingerprint lines: its DTLS
	// certificate must match one of them (RFC 8122 §5).
	Fingerprints []Fingerprint
	// Setup is the party's a=setup (RFC 4145 §4): "actpass", "active" or
	// "passive". The relay is the DTLS client only when it is "passive".
	Setup string
}

// Fingerprint is one a=fingerprint attribute (RFC 8122 §5).
type Fingerprint struct {
	// Hash is the hash function's name as SDP writes it, e.g. "sha-256".
	Hash string
	// Value is the hash in upper-case hex bytes separated by colons.
	Value string
}

// String returns the attribute value, "sha-256 AB:CD:…".
func (f Fingerprint) String() string { return f.Hash + " " + f.Value }

// ErrDTLS and ErrICETimeout are what a WebRTC leg's failure wraps.
var (
	// ErrICETimeout: the party did not complete an ICE check and the DTLS
	// handshake within Config.ICETimeout.
	ErrICETimeout = errors.New("ICE timeout")
	// ErrDTLS: the DTLS handshake failed, or the party's certificate does
	// not match the fingerprint in its SDP.
	ErrDTLS = errors.New("DTLS failure")
)

// identity is the relay's DTLS certificate, made at New (as every WebRTC
// endpoint does: RFC 8827 §6.5 wants no certificate authority here, only
// the fingerprint exchanged in the signed signalling).
type identity struct {
	cert tls.Certificate
	fp   Fingerprint
}

func newIdentity() (*identity, error) {
	cert, err := selfsign.GenerateSelfSigned()
	if err != nil {
		return nil, fmt.Errorf("media: DTLS certificate: %w", err)
	}
	x, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("media: DTLS certificate: %w", err)
	}
	v, err := fingerprint.Fingerprint(x, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("media: DTLS fingerprint: %w", err)
	}
	return &identity{cert: cert, fp: Fingerprint{Hash: "sha-256", Value: strings.ToUpper(v)}}, nil
}

// Fingerprint returns the fingerprint of the relay's DTLS certificate, for
// the a=fingerprint line of the SDP sent to WebRTC parties.
func (r *Relay) Fingerprint() Fingerprint { return r.id.fp }

// rtcLeg is the WebRTC state of one side. The Stream's lock guards it,
// except for the handshake goroutine's own variables.
type rtcLeg struct {
	ufrag, pwd string // the relay's ICE credentials for this side
	issued     bool   // LocalICE was asked: the party has the relay's SDP

	remote    WebRTCPeer
	hasRemote bool
	remoteSet chan struct{} // closed when the party's SDP is known

	checked bool           // a valid connectivity check arrived
	addr    netip.AddrPort // where the party's checks come from (selected pair)

	dtls    *dtlsSession
	in, out *srtp.Context // decrypt what the party sends, encrypt towards it
	ready   bool          // SRTP keys are in place
	failed  bool
	since   int64 // relay clock when the leg was armed (peer set and SDP issued)

	rtpHdr  rtp.Header // scratch headers for the packet path
	rtcpHdr rtcp.Header
}

// LocalICE returns the relay's ICE credentials for side, for the
// a=ice-ufrag and a=ice-pwd lines of the SDP sent to that side's party.
// Asking makes the side a WebRTC leg (if it was not) and keeps the
// credentials for the stream's life.
func (s *Stream) LocalICE(side Side) (ufrag, pwd string) {
	if !side.valid() {
		return "", ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.rtcLocked(side)
	if !l.issued {
		l.issued = true
		s.armRTC(l)
	}
	return l.ufrag, l.pwd
}

// IsWebRTC reports whether side is a WebRTC leg.
func (s *Stream) IsWebRTC(side Side) bool {
	if !side.valid() {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.legs[side].rtc != nil
}

// OnFailure sets the function told, once, that a WebRTC leg of the stream
// failed: ICE or DTLS did not complete within Config.ICETimeout, or the
// handshake failed. The error wraps ErrICETimeout or ErrDTLS. It is called
// from a goroutine of the relay and must not block.
func (s *Stream) OnFailure(f func(err error)) {
	s.mu.Lock()
	s.onFailure = f
	s.mu.Unlock()
}

// rtcLocked returns side's WebRTC state, creating it. The caller holds s.mu.
func (s *Stream) rtcLocked(side Side) *rtcLeg {
	l := &s.legs[side]
	if l.rtc == nil {
		l.rtc = &rtcLeg{ufrag: randomToken(8), pwd: randomToken(24), remoteSet: make(chan struct{})}
	}
	return l.rtc
}

// setRemoteLocked records a WebRTC party's SDP. The caller holds s.mu.
func (s *Stream) setRemoteLocked(side Side, p WebRTCPeer) {
	l := s.rtcLocked(side)
	first := !l.hasRemote
	l.remote = p
	l.remote.Fingerprints = append([]Fingerprint(nil), p.Fingerprints...)
	l.hasRemote = true
	if first {
		close(l.remoteSet)
		s.armRTC(l)
	}
	// The relay is the DTLS client when the party waits (a=setup:passive)
	// and it knows where the party is.
	if l.dtls == nil && l.checked && isPassive(p.Setup) {
		s.startDTLS(side, nil)
	}
}

// armRTC starts the leg's ICE clock once the party has both the relay's SDP
// and has sent its own: before, it cannot start its checks.
func (s *Stream) armRTC(l *rtcLeg) {
	if l.issued && l.hasRemote && l.since == 0 {
		l.since = max(s.r.clock(), 1)
	}
}

// randomToken returns n characters of [A-Z2-7] from crypto/rand: ICE
// credentials need 24 bits (ufrag) and 128 bits (pwd) of randomness
// (RFC 8445 §5.3), n=8 gives 40 and n=24 gives 120+.
func randomToken(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("media: crypto/rand: " + err.Error())
	}
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b)[:n]
}

// rtcFail marks side failed and tells the owner, once per stream. The
// caller holds s.mu; the owner is told from a goroutine of its own.
func (s *Stream) rtcFail(side Side, err error) {
	l := s.legs[side].rtc
	if l == nil || l.failed || s.closed {
		return
	}
	l.failed = true
	s.r.rtcFailures.Add(1)
	s.r.log.Info("WebRTC leg failed", "side", side, "port", s.legs[side].port, "err", err)
	if f := s.onFailure; f != nil && s.failOnce.CompareAndSwap(false, true) {
		go f(fmt.Errorf("side %v: %w", side, err))
	}
}

// scanRTC fails the WebRTC legs that did not become ready in time.
func (r *Relay) scanRTC(now int64) {
	limit := int64(r.cfg.ICETimeout)
	if limit <= 0 {
		return
	}
	r.mu.Lock()
	streams := make([]*Stream, 0, len(r.streams))
	for s := range r.streams {
		if s.hasRTC.Load() {
			streams = append(streams, s)
		}
	}
	r.mu.Unlock()
	for _, s := range streams {
		s.mu.Lock()
		for side := A; side <= B; side++ {
			l := s.legs[side].rtc
			if l == nil || l.ready || l.failed || l.since == 0 || now-l.since < limit {
				continue
			}
			err := ErrICETimeout
			if l.checked {
				err = fmt.Errorf("%w: no DTLS handshake after ICE", ErrICETimeout)
			}
			s.rtcFail(side, err)
		}
		s.mu.Unlock()
	}
}

// closeRTC stops the handshakes of a stream being closed and waits for
// them. The caller does not hold s.mu.
func (s *Stream) closeRTC() {
	s.mu.Lock()
	var sessions []*dtlsSession
	for i := range s.legs {
		if l := s.legs[i].rtc; l != nil && l.dtls != nil {
			sessions = append(sessions, l.dtls)
		}
	}
	s.mu.Unlock()
	for _, d := range sessions {
		d.close()
	}
	s.rtcWG.Wait()
}

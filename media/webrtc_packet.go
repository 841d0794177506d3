package media

import (
	"bytes"
	"net/netip"
	"strings"

	"github.com/pion/stun/v4"
)

// What the first byte of a datagram on a WebRTC leg's port says it is
// (RFC 7983 §7).
const (
	muxSTUN = iota
	muxDTLS
	muxRTP // RTP or RTCP (SRTP or SRTCP)
	muxOther
)

func demux(b []byte) int {
	if len(b) == 0 {
		return muxOther
	}
	switch c := b[0]; {
	case c <= 3:
		return muxSTUN
	case c >= 20 && c <= 63:
		return muxDTLS
	case c >= 128 && c <= 191:
		return muxRTP
	}
	return muxOther
}

// acceptRTC handles a datagram on a WebRTC leg before the relaying common
// to every leg. It returns the datagram to relay, decrypted in place, with
// relay true; or, with relay false, a reply to send back to `from` from the
// same socket (a STUN answer, written over b) or nothing. The caller holds
// s.mu.
func (s *Stream) acceptRTC(side Side, b []byte, from netip.AddrPort, now int64) (out []byte, reply, relay bool) {
	lg := &s.legs[side]
	l := lg.rtc
	switch demux(b) {
	case muxSTUN:
		resp, ok := s.answerCheck(side, b, from, now)
		return resp, ok, false
	case muxDTLS:
		if from != l.addr || l.failed {
			lg.dropped[dropStranger]++
			return nil, false, false
		}
		switch {
		case l.dtls != nil:
			if !l.dtls.deliver(b) {
				lg.dropped[dropNotReady]++
			}
		case isPassive(l.remote.Setup):
			lg.dropped[dropNotReady]++ // we are the client and have not started yet
		default:
			s.startDTLS(side, b)
		}
		s.lastActive.Store(now)
		return nil, false, false
	case muxRTP:
		if from != l.addr {
			lg.dropped[dropStranger]++
			return nil, false, false
		}
		if !l.ready {
			lg.dropped[dropNotReady]++
			return nil, false, false
		}
		var err error
		if len(b) > 1 && isRTCPType(b[1]) {
			out, err = l.in.DecryptRTCP(b, b, &l.rtcpHdr)
		} else {
			out, err = l.in.DecryptRTP(b, b, &l.rtpHdr)
		}
		if err != nil {
			lg.dropped[dropAuth]++
			return nil, false, false
		}
		return out, false, true
	}
	lg.dropped[dropMalformed]++
	return nil, false, false
}

// answerCheck answers an ICE connectivity check as a lite agent (RFC 8445
// §7.3): a Binding request whose USERNAME starts with the relay's ufrag and
// whose MESSAGE-INTEGRITY verifies with the relay's password gets a
// Binding success response with XOR-MAPPED-ADDRESS, and its source becomes
// the party's address (the first valid check, then any with USE-CANDIDATE:
// the controlling agent nominates, §8.1.1). The response is written over b.
func (s *Stream) answerCheck(side Side, b []byte, from netip.AddrPort, now int64) ([]byte, bool) {
	lg := &s.legs[side]
	l := lg.rtc
	m := &stun.Message{Raw: b}
	if err := m.Decode(); err != nil || m.Type != stun.BindingRequest {
		lg.dropped[dropMalformed]++
		return nil, false
	}
	var user stun.Username
	if err := user.GetFrom(m); err != nil || !bytes.HasPrefix(user, []byte(l.ufrag+":")) {
		lg.dropped[dropAuth]++
		return nil, false
	}
	if err := stun.NewShortTermIntegrity(l.pwd).Check(m); err != nil {
		lg.dropped[dropAuth]++
		return nil, false
	}
	if m.Contains(stun.AttrFingerprint) {
		if err := stun.Fingerprint.Check(m); err != nil {
			lg.dropped[dropAuth]++
			return nil, false
		}
	}
	if !l.checked || (m.Contains(stun.AttrUseCandidate) && from != l.addr) {
		l.checked = true
		l.addr = from
		lg.latched = [2]netip.AddrPort{from, from}
		if l.dtls == nil && l.hasRemote && isPassive(l.remote.Setup) {
			s.startDTLS(side, nil)
		}
	}
	s.lastActive.Store(now)
	resp, err := stun.Build(m, stun.BindingSuccess,
		&stun.XORMappedAddress{IP: from.Addr().AsSlice(), Port: int(from.Port())},
		stun.NewShortTermIntegrity(l.pwd), stun.Fingerprint)
	if err != nil || len(resp.Raw) > cap(b) {
		return nil, false
	}
	return append(b[:0], resp.Raw...), true
}

// sealRTC encrypts, in place, a packet leaving towards a WebRTC party. The
// caller holds s.mu.
func (s *Stream) sealRTC(to Side, kind pktKind, b []byte) ([]byte, bool) {
	l := s.legs[to].rtc
	if !l.ready {
		return nil, false
	}
	var out []byte
	var err error
	if kind == kindRTCP {
		out, err = l.out.EncryptRTCP(b, b, &l.rtcpHdr)
	} else {
		out, err = l.out.EncryptRTP(b, b, &l.rtpHdr)
	}
	return out, err == nil
}

func isPassive(setup string) bool { return strings.EqualFold(setup, "passive") }

package media

import "encoding/binary"

// Sizes of the fixed headers (RFC 3550 §5.1 and §6.4).
const (
	rtpHeaderLen  = 12
	rtcpHeaderLen = 8
)

// pktKind is what a datagram that passed classification is.
type pktKind uint8

const (
	kindRTP pktKind = iota
	kindRTCP
)

// dropReason says why a datagram was not relayed. Its String is the
// `reason` label of switchboard_media_packets_dropped_total.
type dropReason uint8

const (
	// dropMalformed: not RTP or RTCP (version is not 2, a non-RTCP payload
	// type on an RTCP port, lengths inside the header that do not add up).
	dropMalformed dropReason = iota
	// dropTruncated: shorter than the fixed RTP (12 bytes) or RTCP (8 bytes)
	// header, or than the header's CSRC list and extension.
	dropTruncated
	// dropStranger: the source is not the latched address, or before
	// latching its IP is not in the allowed set.
	dropStranger
	// dropUnroutable: no address is known yet for the other party.
	dropUnroutable
	// dropOversize: the datagram did not fit the receive buffer.
	dropOversize
	// dropSendError: the kernel refused to send it on.
	dropSendError
	// dropNotReady: SRTP or DTLS on a WebRTC leg whose handshake has not
	// reached the point where it could be used.
	dropNotReady
	// dropAuth: a STUN check or SRTP/SRTCP packet on a WebRTC leg that did
	// not authenticate (wrong credentials, bad tag, replay).
	dropAuth
	numDropReasons
)

var dropReasonNames = [numDropReasons]string{
	dropMalformed:  "malformed",
	dropTruncated:  "truncated",
	dropStranger:   "stranger",
	dropUnroutable: "unroutable",
	dropOversize:   "oversize",
	dropSendError:  "send_error",
	dropNotReady:   "not_ready",
	dropAuth:       "auth",
}

func (r dropReason) String() string {
	if r < numDropReasons {
		return dropReasonNames[r]
	}
	return "unknown"
}

// classify tells what a datagram received on a side's RTP port (rtcpPort
// false) or RTCP port (rtcpPort true) is, or why it must be dropped. It reads
// only the header and never panics, whatever b holds.
func classify(b []byte, rtcpPort bool) (pktKind, dropReason, bool) {
	if len(b) < 2 {
		return 0, dropTruncated, false
	}
	// RFC 3550 §5.1 (RTP) and §6.4.1 (RTCP): version is the top two bits.
	if b[0]>>6 != 2 {
		return 0, dropMalformed, false
	}
	// RFC 5761 §4: with RTP and RTCP multiplexed on one port, a second byte
	// of 192..223 is an RTCP packet type (RTP payload types 64..95 with the
	// marker bit set are excluded from use for this reason).
	if isRTCPType(b[1]) {
		if r, ok := checkRTCP(b); !ok {
			return 0, r, false
		}
		return kindRTCP, 0, true
	}
	if rtcpPort {
		return 0, dropMalformed, false
	}
	if r, ok := checkRTP(b); !ok {
		return 0, r, false
	}
	return kindRTP, 0, true
}

func isRTCPType(b1 byte) bool { return b1 >= 192 && b1 <= 223 }

// checkRTCP validates the first header of a (compound) RTCP packet.
func checkRTCP(b []byte) (dropReason, bool) {
	if len(b) < rtcpHeaderLen {
		return dropTruncated, false
	}
	// RFC 3550 §6.4.1: length is in 32-bit words minus one.
	n := (int(binary.BigEndian.Uint16(b[2:4])) + 1) * 4
	if n > len(b) {
		return dropTruncated, false
	}
	return 0, true
}

// checkRTP validates an RTP header: the fixed part, the CSRC list, the
// header extension and the padding count (RFC 3550 §5.1, §5.3.1).
func checkRTP(b []byte) (dropReason, bool) {
	if len(b) < rtpHeaderLen {
		return dropTruncated, false
	}
	hdr := rtpHeaderLen + 4*int(b[0]&0x0f)
	if b[0]&0x10 != 0 { // X: a 4-byte extension header, then length words
		if hdr+4 > len(b) {
			return dropTruncated, false
		}
		hdr += 4 + 4*int(binary.BigEndian.Uint16(b[hdr+2:hdr+4]))
	}
	if hdr > len(b) {
		return dropTruncated, false
	}
	if b[0]&0x20 != 0 { // P: the last octet counts the padding, itself included
		pad := int(b[len(b)-1])
		if pad == 0 || hdr+pad > len(b) {
			return dropMalformed, false
		}
	}
	return 0, true
}

// rtpFields are the header fields the statistics need.
type rtpFields struct {
	pt   uint8
	seq  uint16
	ts   uint32
	ssrc uint32
}

// parseRTP reads the fields of a header that passed checkRTP.
func parseRTP(b []byte) rtpFields {
	_ = b[11]
	return rtpFields{
		pt:   b[1] & 0x7f,
		seq:  binary.BigEndian.Uint16(b[2:4]),
		ts:   binary.BigEndian.Uint32(b[4:8]),
		ssrc: binary.BigEndian.Uint32(b[8:12]),
	}
}

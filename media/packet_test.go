package media

import (
	"encoding/binary"
	"testing"
)

// rtpPacket builds an RTP packet with a payload of n bytes.
func rtpPacket(pt uint8, seq uint16, ts, ssrc uint32, n int) []byte {
	b := make([]byte, rtpHeaderLen+n)
	b[0] = 0x80
	b[1] = pt
	binary.BigEndian.PutUint16(b[2:], seq)
	binary.BigEndian.PutUint32(b[4:], ts)
	binary.BigEndian.PutUint32(b[8:], ssrc)
	return b
}

// rtcpPacket builds a receiver report with no report blocks (8 bytes).
func rtcpPacket(ssrc uint32) []byte {
	b := make([]byte, 8)
	b[0] = 0x80
	b[1] = 201                           // RR
	binary.BigEndian.PutUint16(b[2:], 1) // length in words minus one
	binary.BigEndian.PutUint32(b[4:], ssrc)
	return b
}

func TestClassify(t *testing.T) {
	withCSRC := rtpPacket(0, 1, 0, 1, 160)
	withCSRC[0] |= 2 // two CSRCs: header 20 bytes
	shortCSRC := rtpPacket(0, 1, 0, 1, 4)
	shortCSRC[0] |= 2
	ext := rtpPacket(0, 1, 0, 1, 20)
	ext[0] |= 0x10
	binary.BigEndian.PutUint16(ext[14:], 2) // 4 + 8 bytes of extension
	badExt := rtpPacket(0, 1, 0, 1, 20)
	badExt[0] |= 0x10
	binary.BigEndian.PutUint16(badExt[14:], 100)
	pad := rtpPacket(0, 1, 0, 1, 10)
	pad[0] |= 0x20
	pad[len(pad)-1] = 4
	badPad := rtpPacket(0, 1, 0, 1, 10)
	badPad[0] |= 0x20
	badPad[len(badPad)-1] = 0
	hugePad := rtpPacket(0, 1, 0, 1, 10)
	hugePad[0] |= 0x20
	hugePad[len(hugePad)-1] = 200
	longRTCP := rtcpPacket(1)
	binary.BigEndian.PutUint16(longRTCP[2:], 7)
	stun := make([]byte, 20) // STUN binding request: top bits 00
	stun[1] = 1
	markerPT96 := rtpPacket(96|0x80, 1, 0, 1, 10) // marker bit, PT 96: second byte 224
	rtcpOnRTPPort := rtcpPacket(1)

	tests := []struct {
		name     string
		b        []byte
		rtcpPort bool
		kind     pktKind
		reason   dropReason
		ok       bool
	}{
		{"rtp", rtpPacket(0, 1, 160, 1, 160), false, kindRTP, 0, true},
		{"rtp header only", rtpPacket(8, 1, 160, 1, 0), false, kindRTP, 0, true},
		{"rtp marker pt96", markerPT96, false, kindRTP, 0, true},
		{"rtp csrc", withCSRC, false, kindRTP, 0, true},
		{"rtp csrc truncated", shortCSRC, false, 0, dropTruncated, false},
		{"rtp extension", ext, false, kindRTP, 0, true},
		{"rtp extension truncated", badExt, false, 0, dropTruncated, false},
		{"rtp padding", pad, false, kindRTP, 0, true},
		{"rtp zero padding", badPad, false, 0, dropMalformed, false},
		{"rtp padding too long", hugePad, false, 0, dropMalformed, false},
		{"rtp 11 bytes", rtpPacket(0, 1, 0, 1, 0)[:11], false, 0, dropTruncated, false},
		{"empty", nil, false, 0, dropTruncated, false},
		{"one byte", []byte{0x80}, false, 0, dropTruncated, false},
		{"version 0 (stun)", stun, false, 0, dropMalformed, false},
		{"version 1", []byte{0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, false, 0, dropMalformed, false},
		{"version 3", []byte{0xc0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, false, 0, dropMalformed, false},
		{"rtcp on rtcp port", rtcpPacket(1), true, kindRTCP, 0, true},
		{"rtcp muxed on rtp port", rtcpOnRTPPort, false, kindRTCP, 0, true},
		{"rtcp 7 bytes", rtcpPacket(1)[:7], true, 0, dropTruncated, false},
		{"rtcp 4 bytes muxed", rtcpPacket(1)[:4], false, 0, dropTruncated, false},
		{"rtcp length past end", longRTCP, true, 0, dropTruncated, false},
		{"rtp on rtcp port", rtpPacket(0, 1, 0, 1, 160), true, 0, dropMalformed, false},
		{"pt 192 lower bound", append([]byte{0x80, 192, 0, 1}, make([]byte, 4)...), false, kindRTCP, 0, true},
		{"pt 223 upper bound", append([]byte{0x80, 223, 0, 1}, make([]byte, 4)...), false, kindRTCP, 0, true},
		{"second byte 191 is rtp", rtpPacket(191, 1, 0, 1, 0), false, kindRTP, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kind, reason, ok := classify(tt.b, tt.rtcpPort)
			if ok != tt.ok || (ok && kind != tt.kind) || (!ok && reason != tt.reason) {
				t.Errorf("classify = (%v, %v, %v), want (%v, %v, %v)", kind, reason, ok, tt.kind, tt.reason, tt.ok)
			}
		})
	}
}

func TestParseRTP(t *testing.T) {
	f := parseRTP(rtpPacket(0x80|111, 0xfffe, 0xdeadbeef, 0x01020304, 0))
	want := rtpFields{pt: 111, seq: 0xfffe, ts: 0xdeadbeef, ssrc: 0x01020304}
	if f != want {
		t.Fatalf("parseRTP = %+v, want %+v", f, want)
	}
}

func TestDropReasonString(t *testing.T) {
	for r := dropReason(0); r < numDropReasons; r++ {
		if r.String() == "" || r.String() == "unknown" {
			t.Errorf("reason %d has no name", r)
		}
	}
	if numDropReasons.String() != "unknown" {
		t.Error("out of range reason should be unknown")
	}
}

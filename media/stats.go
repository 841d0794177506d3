package media

import (
	"net/netip"
	"time"
)

// LegStats describes what a Stream received from the party on one side.
// Packets and Bytes count RTP only; RTCP is counted apart. Dropped counts
// datagrams that arrived at the side's ports and were not relayed, whatever
// the reason (garbage, truncated, strangers, nowhere to send).
type LegStats struct {
	// Packets and Bytes count RTP packets accepted from the party (UDP
	// payload bytes).
	Packets, Bytes uint64
	// RTCPPackets and RTCPBytes count RTCP packets accepted from the party,
	// on the RTCP port or multiplexed on the RTP port (RFC 5761).
	RTCPPackets, RTCPBytes uint64
	// Lost is the number of RTP packets missing from the sequence the party
	// sent (RFC 3550 §A.3: expected minus received, never negative), summed
	// over the synchronisation sources it used.
	Lost uint64
	// Jitter is the interarrival jitter of the party's RTP (RFC 3550 §A.8),
	// as a duration.
	Jitter time.Duration
	// Dropped counts datagrams that reached this side's ports and were not
	// relayed.
	Dropped uint64
	// Latched is the address this side's RTP port latched onto, or the zero
	// value if it has not latched.
	Latched netip.AddrPort
}

// Sequence number tracking limits of RFC 3550 §A.1.
const (
	maxDropout  = 3000
	maxMisorder = 100
	seqMod      = 1 << 16
)

// rxStats tracks the sequence numbers and interarrival jitter of the RTP a
// side receives, after RFC 3550 §A.1, §A.3 and §A.8. It is not safe for
// concurrent use; the Stream's lock guards it.
type rxStats struct {
	started  bool
	ssrc     uint32
	baseSeq  uint32 // first extended sequence number of this run
	maxSeq   uint16 // highest sequence number seen
	cycles   uint32 // count of sequence number wraps, shifted left 16
	badSeq   uint32 // seq+1 of the last large jump, seqMod+1 if none
	received uint64 // packets received in this run

	lostPrior int64 // lost in earlier runs (other SSRCs, restarts)

	haveTransit bool
	transitPT   uint8
	transit     uint32 // last relative transit time, in timestamp units
	jitter16    int64  // jitter in nanoseconds, times 16
}

// update accounts one RTP packet that arrived at arrival (nanoseconds on
// any monotonic clock), whose payload type runs at rate Hz.
func (s *rxStats) update(f rtpFields, arrival int64, rate uint32) {
	if !s.started || f.ssrc != s.ssrc {
		s.restart(f)
	} else {
		// RFC 3550 §A.1 update_seq, without probation: the source was
		// already vetted by latching.
		udelta := f.seq - s.maxSeq
		switch {
		case udelta < maxDropout:
			// In order, with a permissible gap.
			if f.seq < s.maxSeq {
				s.cycles += seqMod // sequence number wrapped
			}
			s.maxSeq = f.seq
			s.received++
		case int(udelta) <= seqMod-maxMisorder:
			// A very large jump. Two packets in sequence after it mean
			// the sender restarted its sequence: start a new run.
			if uint32(f.seq) != s.badSeq {
				s.badSeq = (uint32(f.seq) + 1) & (seqMod - 1)
				return
			}
			s.restart(f) // counts f
		default:
			// Duplicate or reordered packet.
			s.received++
		}
	}
	s.updateJitter(f, arrival, rate)
}

// restart begins a new run at f (RFC 3550 §A.1 init_seq), keeping the losses
// of the previous one.
func (s *rxStats) restart(f rtpFields) {
	if s.started {
		s.lostPrior += s.runLost()
	}
	s.started = true
	s.ssrc = f.ssrc
	s.baseSeq = uint32(f.seq)
	s.maxSeq = f.seq
	s.cycles = 0
	s.badSeq = seqMod + 1
	s.received = 1
	s.haveTransit = false
}

// runLost is expected minus received in the current run (RFC 3550 §A.3); it
// is negative when duplicates outnumber losses.
func (s *rxStats) runLost() int64 {
	if !s.started {
		return 0
	}
	extMax := uint64(s.cycles) + uint64(s.maxSeq)
	expected := int64(extMax - uint64(s.baseSeq) + 1)
	return expected - int64(s.received)
}

// lost returns the cumulative number of packets lost, clamped at zero.
func (s *rxStats) lost() uint64 {
	l := s.lostPrior + s.runLost()
	if l < 0 {
		return 0
	}
	return uint64(l)
}

// updateJitter is RFC 3550 §A.8: J += (|D(i-1,i)| - J)/16, where D is the
// difference of relative transit times. It keeps J in nanoseconds so that a
// change of clock rate (payload type) does not change the unit; the transit
// reference is reset when the payload type changes, since the two timestamp
// clocks are unrelated.
func (s *rxStats) updateJitter(f rtpFields, arrival int64, rate uint32) {
	if rate == 0 {
		rate = 8000
	}
	sec, rem := arrival/1e9, arrival%1e9
	units := uint32(sec*int64(rate) + rem*int64(rate)/1e9)
	transit := units - f.ts
	if !s.haveTransit || s.transitPT != f.pt {
		s.haveTransit, s.transitPT, s.transit = true, f.pt, transit
		return
	}
	d := int64(int32(transit - s.transit))
	s.transit = transit
	if d < 0 {
		d = -d
	}
	dns := d * 1e9 / int64(rate)
	s.jitter16 += dns - (s.jitter16+8)>>4
}

// jitter returns the current jitter estimate.
func (s *rxStats) jitter() time.Duration { return time.Duration(s.jitter16 >> 4) }

// staticClockRates are the RTP clock rates of the static payload types of
// RFC 3551 §6, tables 4 and 5; zero means unassigned or dynamic.
var staticClockRates = [128]uint32{
	0: 8000, 3: 8000, 4: 8000, 5: 8000, 6: 16000, 7: 8000, 8: 8000, 9: 8000,
	10: 44100, 11: 44100, 12: 8000, 13: 8000, 14: 90000, 15: 8000,
	16: 11025, 17: 22050, 18: 8000,
	25: 90000, 26: 90000, 28: 90000, 31: 90000, 32: 90000, 33: 90000, 34: 90000,
}

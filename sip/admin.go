package sip

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/switchboard/switchboard/media"
)

// What the operations console (package admin) reads of the switch and asks
// of it: the calls in progress with their media, hanging one up, the flood
// bans, whether the switch drains.

// ErrNoCall is returned by Hangup for a Call-ID the switch has no call for.
var ErrNoCall = errors.New("no such call")

// Call states of CallInfo.State.
const (
	CallSetup    = "setup"    // INVITE forwarded, nothing heard yet
	CallRinging  = "ringing"  // a provisional answer came
	CallAnswered = "answered" // a 2xx came
)

// CallInfo is a snapshot of one call in progress.
type CallInfo struct {
	ID       string    `json:"id"`
	Caller   string    `json:"caller"` // From URI user@host
	Callee   string    `json:"callee"` // Request-URI user@host as dialled
	State    string    `json:"state"`
	Started  time.Time `json:"started"`
	Answered time.Time `json:"answered,omitzero"`
	// Media lists, per relayed media stream, what the relay received from
	// each party; empty when the call's media is not relayed.
	Media []LegInfo `json:"media"`
}

// LegInfo is what the relay received from one party on one media stream.
type LegInfo struct {
	Stream  int           `json:"stream"` // index of the m-line
	Party   string        `json:"party"`  // caller or callee
	Codec   string        `json:"codec"`  // e.g. "PCMU/8000", from the SDP; "" if unknown
	Packets uint64        `json:"packets"`
	Bytes   uint64        `json:"bytes"`
	Lost    uint64        `json:"lost"`
	Jitter  time.Duration `json:"jitter_ns"`
	Latched string        `json:"latched,omitempty"` // the address media comes from
}

// Calls returns a snapshot of the calls in progress, oldest first.
func (s *Server) Calls() []CallInfo {
	s.calls.mu.Lock()
	list := make([]*call, 0, len(s.calls.calls))
	infos := make([]CallInfo, 0, len(s.calls.calls))
	for _, c := range s.calls.calls {
		list = append(list, c)
		ci := CallInfo{ID: c.id, Callee: c.callee, Started: c.started, State: CallSetup}
		if c.dlg.callerFrom != nil {
			ci.Caller = uriUserHost(c.dlg.callerFrom.Address)
		}
		switch {
		case c.answered:
			ci.State, ci.Answered = CallAnswered, c.answeredAt
		case c.ringing:
			ci.State = CallRinging
		}
		infos = append(infos, ci)
	}
	s.calls.mu.Unlock()
	for i, c := range list {
		s.calls.mu.Lock()
		ms := c.ms
		s.calls.mu.Unlock()
		if ms != nil {
			infos[i].Media = ms.legs()
		}
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].Started.Before(infos[j].Started) })
	return infos
}

// CallsStarted returns the number of calls admitted since the server
// started.
func (s *Server) CallsStarted() uint64 { return s.calls.startedCount.Load() }

// CallCount returns the number of calls in progress (Calls' length,
// without the snapshot).
func (s *Server) CallCount() int {
	s.calls.mu.Lock()
	defer s.calls.mu.Unlock()
	return len(s.calls.calls)
}

// legs returns the per-party statistics of the session's streams.
func (m *mediaSession) legs() []LegInfo {
	m.mu.Lock()
	streams := append([]*media.Stream(nil), m.streams...)
	offer, answer := m.lastIn[media.A], m.lastIn[media.B]
	m.mu.Unlock()
	var out []LegInfo
	for i, st := range streams {
		// The answer's first format is what both parties send; before
		// there is one, the offer's first.
		codec := sdpCodec(answer, i)
		if codec == "" {
			codec = sdpCodec(offer, i)
		}
		for _, side := range []media.Side{media.A, media.B} {
			ls := st.Stats(side)
			l := LegInfo{Stream: i, Party: "caller", Codec: codec, Packets: ls.Packets, Bytes: ls.Bytes, Lost: ls.Lost, Jitter: ls.Jitter}
			if side == media.B {
				l.Party = "callee"
			}
			if ls.Latched.IsValid() {
				l.Latched = ls.Latched.String()
			}
			out = append(out, l)
		}
	}
	return out
}

// staticPayloads names the static RTP payload types of RFC 3551 §6 that
// phones use without an rtpmap.
var staticPayloads = map[string]string{
	"0": "PCMU/8000", "3": "GSM/8000", "4": "G723/8000", "8": "PCMA/8000",
	"9": "G722/8000", "13": "CN/8000", "18": "G729/8000",
}

// sdpCodec returns the first format of the n-th m-line of sdp as
// "name/rate", or "".
func sdpCodec(sdp []byte, n int) string {
	if len(sdp) == 0 {
		return ""
	}
	mline := -1
	pt := ""
	for _, line := range bytes.Split(sdp, []byte("\n")) {
		line = bytes.TrimRight(line, "\r")
		switch {
		case bytes.HasPrefix(line, []byte("m=")):
			mline++
			if mline > n {
				return staticPayloads[pt]
			}
			if mline == n {
				f := bytes.Fields(line)
				if len(f) < 4 {
					return ""
				}
				pt = string(f[3])
			}
		case mline == n && pt != "" && bytes.HasPrefix(line, []byte("a=rtpmap:")):
			id, enc, ok := bytes.Cut(line[len("a=rtpmap:"):], []byte(" "))
			if ok && string(id) == pt {
				return string(bytes.TrimSpace(enc))
			}
		}
	}
	return staticPayloads[pt]
}

// Hangup ends the call with that Call-ID as the switch: an answered call
// gets a BYE to each party (with reason in its Reason header, RFC 3326),
// awaited until ctx ends; a call still being set up is cancelled (RFC 3261
// §16.10: CANCEL to each branch, 487 to the caller). Its record says the
// switch ended it. ErrNoCall when there is no such call.
func (s *Server) Hangup(ctx context.Context, callID, reason string) error {
	reason = cleanReason(reason)
	s.calls.mu.Lock()
	c, ok := s.calls.calls[callID]
	answered := ok && c.answered
	s.calls.mu.Unlock()
	if !ok {
		return ErrNoCall
	}
	if !answered {
		if c.hangup == nil {
			return ErrNoCall
		}
		c.hangupOnce.Do(func() { close(c.hangup) })
		return nil
	}
	d := s.calls.endBySwitch(c, 200, reason)
	if d == nil {
		return ErrNoCall // ended meanwhile
	}
	s.log.Info("call hung up by operator", "call_id", callID, "reason", reason)
	var wg sync.WaitGroup
	for _, bye := range d.byes() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.sendBye(bye, reason)
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return nil
}

// Draining reports whether the switch is draining (Drain or Shutdown
// began): it takes no new calls.
func (s *Server) Draining() bool { return s.draining.Load() }

// FloodBan is a source the flood limit drops.
type FloodBan struct {
	Addr  netip.Addr `json:"addr"`
	Until time.Time  `json:"until"`
}

// FloodBanned returns the sources the flood limit (FloodConfig) drops now.
func (s *Server) FloodBanned() []FloodBan {
	f := s.flood
	now := f.now()
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []FloodBan
	for ip, e := range f.sources.m {
		if now.Before(e.until) {
			out = append(out, FloodBan{Addr: ip, Until: e.until})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr.Less(out[j].Addr) })
	return out
}

// LiftFloodBan ends the flood ban of addr, and reports whether there was
// one.
func (s *Server) LiftFloodBan(addr netip.Addr) bool {
	f := s.flood
	now := f.now()
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.sources.m[addr.Unmap()]
	if e == nil || !now.Before(e.until) {
		return false
	}
	e.until, e.n, e.start = time.Time{}, 0, now
	return true
}

// cleanReason makes an operator's reason fit a quoted Reason header: a
// short line of printable characters without quotes or backslashes.
func cleanReason(r string) string {
	b := make([]byte, 0, len(r))
	for i := 0; i < len(r) && len(b) < 64; i++ {
		c := r[i]
		if c >= 0x20 && c < 0x7f && c != '"' && c != '\\' {
			b = append(b, c)
		}
	}
	if len(b) == 0 {
		return "hung up by operator"
	}
	return string(b)
}

package nat

import (
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"

	"github.com/switchboard/switchboard/test/internal/testbed"
)

// sipMessage is one SIP message from baresip's trace (-s): each one is
// printed as "#", then "UDP SRC -> DST", then the message.
type sipMessage struct {
	Transport string
	Src, Dst  string // ip:port
	StartLine string
	Headers   []string
	Body      string
}

// Method returns the request method, or "" for a response.
func (m sipMessage) Method() string {
	if strings.HasPrefix(m.StartLine, "SIP/2.0 ") {
		return ""
	}
	method, _, _ := strings.Cut(m.StartLine, " ")
	return method
}

// Status returns the response status code, or 0 for a request.
func (m sipMessage) Status() int {
	rest, ok := strings.CutPrefix(m.StartLine, "SIP/2.0 ")
	if !ok {
		return 0
	}
	code, _, _ := strings.Cut(rest, " ")
	n, _ := strconv.Atoi(code)
	return n
}

// Header returns the first value of the named header ("" if absent).
func (m sipMessage) Header(name string) string {
	for _, h := range m.Headers {
		k, v, ok := strings.Cut(h, ":")
		if ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// CSeqMethod returns the method named in CSeq.
func (m sipMessage) CSeqMethod() string {
	f := strings.Fields(m.Header("CSeq"))
	if len(f) == 2 {
		return f[1]
	}
	return ""
}

// SDP returns the message's session description, if it carries one.
func (m sipMessage) SDP() (sdpInfo, bool) {
	if !strings.Contains(strings.ToLower(m.Header("Content-Type")), "application/sdp") || m.Body == "" {
		return sdpInfo{}, false
	}
	return parseSDPInfo(m.Body), true
}

// Summary is one line about the message for failure reports.
func (m sipMessage) Summary() string {
	s := fmt.Sprintf("%s %s -> %s  %s", m.Transport, m.Src, m.Dst, m.StartLine)
	if c := m.Header("Contact"); c != "" {
		s += "  Contact: " + c
	}
	if sd, ok := m.SDP(); ok {
		s += "  SDP: " + sd.String()
	}
	return s
}

var traceAddrs = regexp.MustCompile(`^(UDP|TCP|TLS) (\S+) -> (\S+)$`)

// parseTrace returns the SIP messages in a baresip log (baresip -s).
func parseTrace(log string) []sipMessage {
	log = testbed.StripANSI(log)
	lines := strings.Split(strings.ReplaceAll(log, "\r", ""), "\n")
	var out []sipMessage
	for i := 0; i < len(lines); i++ {
		if strings.TrimSpace(lines[i]) != "#" || i+2 >= len(lines) {
			continue
		}
		mm := traceAddrs.FindStringSubmatch(strings.TrimSpace(lines[i+1]))
		if mm == nil {
			continue
		}
		msg := sipMessage{Transport: mm[1], Src: mm[2], Dst: mm[3], StartLine: strings.TrimSpace(lines[i+2])}
		j := i + 3
		for ; j < len(lines) && strings.TrimSpace(lines[j]) != ""; j++ {
			msg.Headers = append(msg.Headers, lines[j])
		}
		// The body runs to the next message or the end of the colour
		// escape (stripped), bounded by Content-Length.
		n, _ := strconv.Atoi(msg.Header("Content-Length"))
		var body strings.Builder
		for j++; j < len(lines) && body.Len() < n; j++ {
			if strings.TrimSpace(lines[j]) == "#" {
				break
			}
			body.WriteString(lines[j])
			body.WriteString("\r\n")
		}
		msg.Body = body.String()
		out = append(out, msg)
		i = j - 1
	}
	return out
}

// sdpInfo is what the tests check in a session description.
type sdpInfo struct {
	Conn      string // session-level c= address
	AudioConn string // c= address for the audio m-line (media level or session level)
	AudioPort int
}

func (s sdpInfo) String() string {
	return fmt.Sprintf("audio %s:%d (session c=%s)", s.AudioConn, s.AudioPort, s.Conn)
}

// AudioAddr returns the audio stream's address as ip:port.
func (s sdpInfo) AudioAddr() string {
	return net.JoinHostPort(s.AudioConn, strconv.Itoa(s.AudioPort))
}

func parseSDPInfo(body string) sdpInfo {
	var s sdpInfo
	inAudio, seenAudio := false, false
	for _, l := range strings.Split(strings.ReplaceAll(body, "\r", ""), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "m="):
			inAudio = false
			if f := strings.Fields(l[2:]); len(f) >= 2 && f[0] == "audio" && !seenAudio {
				inAudio, seenAudio = true, true
				s.AudioPort, _ = strconv.Atoi(f[1])
				s.AudioConn = s.Conn
			}
		case strings.HasPrefix(l, "c="):
			f := strings.Fields(l[2:])
			if len(f) < 3 {
				continue
			}
			if !seenAudio {
				s.Conn = f[2]
			} else if inAudio {
				s.AudioConn = f[2]
			}
		}
	}
	return s
}

// offerAnswer returns, for a phone's trace, the SDP it sent and the SDP it
// received in the INVITE transaction of callID: the caller sends the offer
// in the INVITE and receives the answer in the 2xx, the callee the other way
// round.
func offerAnswer(msgs []sipMessage, callID string, self string) (sent, received sdpInfo, err error) {
	var haveSent, haveRecv bool
	for _, m := range msgs {
		if m.Header("Call-ID") != callID || m.CSeqMethod() != "INVITE" {
			continue
		}
		if m.Method() != "INVITE" && (m.Status() < 200 || m.Status() >= 300) {
			continue
		}
		sd, ok := m.SDP()
		if !ok {
			continue
		}
		if sameHostPort(m.Src, self) {
			sent, haveSent = sd, true
		} else {
			received, haveRecv = sd, true
		}
	}
	switch {
	case !haveSent:
		err = fmt.Errorf("no SDP sent from %s in the INVITE transaction of %s", self, callID)
	case !haveRecv:
		err = fmt.Errorf("no SDP received at %s in the INVITE transaction of %s", self, callID)
	}
	return sent, received, err
}

func sameHostPort(a, b string) bool {
	ha, pa, err1 := net.SplitHostPort(a)
	hb, pb, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil {
		return a == b
	}
	ia, ib := net.ParseIP(ha), net.ParseIP(hb)
	return pa == pb && ia != nil && ia.Equal(ib)
}

var rtpFrom = regexp.MustCompile(`incoming rtp for 'audio' established, receiving from (\S+)`)

// rtpSources returns where baresip says the call's audio came from.
func rtpSources(log string) []string {
	var out []string
	for _, m := range rtpFrom.FindAllStringSubmatch(testbed.StripANSI(log), -1) {
		out = append(out, m[1])
	}
	return out
}

// legStats is one leg's line of a CDR's MEDIA column.
type legStats struct {
	Packets, Bytes, Lost, Dropped int
}

var mediaLeg = regexp.MustCompile(`m0 (caller|callee): pkts=(\d+) bytes=(\d+) lost=(\d+) jitter=\S+ dropped=(\d+)`)

// cdrMedia finds the `cdr list` row of callID and returns its first audio
// stream's per-leg statistics (caller, callee), the row, and whether the
// row was found with both legs and an end time.
func cdrMedia(out, callID string) (caller, callee legStats, row string, ok bool) {
	for _, l := range strings.Split(out, "\n") {
		if !strings.Contains(l, callID) {
			continue
		}
		row = strings.TrimSpace(l)
		var found int
		for _, m := range mediaLeg.FindAllStringSubmatch(l, -1) {
			var s legStats
			s.Packets, _ = strconv.Atoi(m[2])
			s.Bytes, _ = strconv.Atoi(m[3])
			s.Lost, _ = strconv.Atoi(m[4])
			s.Dropped, _ = strconv.Atoi(m[5])
			if m[1] == "caller" {
				caller = s
			} else {
				callee = s
			}
			found++
		}
		return caller, callee, row, found == 2
	}
	return caller, callee, "", false
}

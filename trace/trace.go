// Package trace keeps, in memory, the SIP messages of the switch's last
// calls, for the operations console's ladder diagrams (package admin).
//
// Only calls are traced: an INVITE request that is not inside a dialog
// (no To tag) opens a call's trace, and later messages with its Call-ID are
// added to it. Everything else (REGISTER, OPTIONS, MESSAGE, a flood of
// them) is looked at and dropped, so it cannot grow the store. The store is
// bounded three ways: the number of calls (oldest evicted first), the
// messages and bytes kept of one call, and the bytes kept in all.
package trace

import (
	"bytes"
	"container/list"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/switchboard/switchboard/sip"
)

// Bounds of one call's trace and of the whole store.
const (
	// MaxMessages is the number of messages kept of one call; later ones
	// are counted in Call.Dropped.
	MaxMessages = 200
	// MaxCallBytes is the bytes of messages kept of one call.
	MaxCallBytes = 256 << 10
	// maxTotalBytes bounds every trace together: past it the oldest calls
	// are evicted, whatever Config.Calls says.
	maxTotalBytes = 64 << 20
)

// Message is one SIP message of a call, as the switch received or sent it.
type Message struct {
	Time      time.Time `json:"time"`
	Direction string    `json:"direction"` // "in" (received) or "out" (sent)
	Transport string    `json:"transport"`
	// From and To are the sender's and the receiver's address.
	From string `json:"from"`
	To   string `json:"to"`
	// Method is the request method, or for a response the method of its
	// CSeq.
	Method string `json:"method"`
	// Status and Reason are set for a response.
	Status int    `json:"status,omitempty"`
	Reason string `json:"reason,omitempty"`
	CSeq   string `json:"cseq"`
	// Raw is the whole message.
	Raw string `json:"raw"`
}

// Label is the message's arrow text: the method of a request, the status
// and reason of a response.
func (m Message) Label() string {
	if m.Status != 0 {
		return strconv.Itoa(m.Status) + " " + m.Reason
	}
	return m.Method
}

// Call is the trace of one call.
type Call struct {
	CallID   string    `json:"call_id"`
	Started  time.Time `json:"started"`
	Messages []Message `json:"messages"`
	// Dropped counts the messages not kept (over MaxMessages or
	// MaxCallBytes).
	Dropped int `json:"dropped"`
}

// Store is the bounded trace store. Its Observe is a sip.Observer.
type Store struct {
	max int

	mu    sync.Mutex
	calls map[string]*list.Element // Call-ID -> element holding *entry
	order *list.List               // oldest call at the front
	bytes int                      // kept in all
}

type entry struct {
	call  Call
	bytes int
}

// New returns a store that keeps the traces of the last n calls (at
// least 1).
func New(n int) *Store {
	return &Store{max: max(n, 1), calls: map[string]*list.Element{}, order: list.New()}
}

// Observe adds m to its call's trace, if it is part of a call.
func (s *Store) Observe(m *sip.Message) {
	h, ok := scan(m.Data)
	if !ok || h.callID == "" {
		return
	}
	opens := h.status == 0 && h.method == "INVITE" && !h.toTag
	s.mu.Lock()
	defer s.mu.Unlock()
	el, ok := s.calls[h.callID]
	if !ok {
		if !opens {
			return
		}
		for s.order.Len() >= s.max {
			s.evictOldestLocked()
		}
		el = s.order.PushBack(&entry{call: Call{CallID: h.callID, Started: m.Time}})
		s.calls[h.callID] = el
	}
	e := el.Value.(*entry)
	if len(e.call.Messages) >= MaxMessages || e.bytes+len(m.Data) > MaxCallBytes {
		e.call.Dropped++
		return
	}
	msg := Message{Time: m.Time, Transport: m.Transport, Method: h.method, Status: h.status,
		Reason: h.reason, CSeq: h.cseq, Raw: string(m.Data)}
	if m.Sent {
		msg.Direction, msg.From, msg.To = "out", addr(m.Local), addr(m.Remote)
	} else {
		msg.Direction, msg.From, msg.To = "in", addr(m.Remote), addr(m.Local)
	}
	e.call.Messages = append(e.call.Messages, msg)
	e.bytes += len(m.Data)
	s.bytes += len(m.Data)
	for s.bytes > maxTotalBytes && s.order.Len() > 1 {
		s.evictOldestLocked()
	}
}

func addr(ap netip.AddrPort) string {
	if !ap.IsValid() {
		return ""
	}
	return ap.String()
}

func (s *Store) evictOldestLocked() {
	el := s.order.Front()
	if el == nil {
		return
	}
	e := el.Value.(*entry)
	s.order.Remove(el)
	delete(s.calls, e.call.CallID)
	s.bytes -= e.bytes
}

// Get returns a copy of the trace of the call with that Call-ID, its
// messages in the order they passed, and whether there is one.
func (s *Store) Get(callID string) (Call, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	el, ok := s.calls[callID]
	if !ok {
		return Call{}, false
	}
	c := el.Value.(*entry).call
	c.Messages = append([]Message(nil), c.Messages...)
	// Reads and writes are noted by different goroutines: a sent
	// response may be noted a moment before the request it answers.
	sortStable(c.Messages)
	return c, true
}

// Len returns the number of calls traced and the bytes kept.
func (s *Store) Len() (calls, bytes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.order.Len(), s.bytes
}

func sortStable(ms []Message) {
	// Insertion sort: the messages are almost always in order already.
	for i := 1; i < len(ms); i++ {
		for j := i; j > 0 && ms[j].Time.Before(ms[j-1].Time); j-- {
			ms[j], ms[j-1] = ms[j-1], ms[j]
		}
	}
	causal(ms)
}

// causal moves each response the switch sent before what its peer sent
// after receiving it, which the times can miss (a send is noted once the
// write has returned, and the goroutine may have been descheduled between
// the two while the peer's answer was read): a response to a peer's request
// with CSeq n precedes the peer's requests with a higher CSeq, and its ACK
// (CSeq n) — RFC 3261 §8.1.1.5: a UA's CSeq grows with each new request.
func causal(ms []Message) {
	for i := 1; i < len(ms); i++ {
		r := ms[i]
		if r.Direction != "out" || r.Status == 0 {
			continue
		}
		n, ok := cseqNumber(r.CSeq)
		if !ok {
			continue
		}
		j := i
		for k := i - 1; k >= 0; k-- {
			m := ms[k]
			if m.Direction != "in" || m.Status != 0 || m.From != r.To {
				continue
			}
			if mn, ok := cseqNumber(m.CSeq); ok && (mn > n || mn == n && m.Method == "ACK" && r.Method == "INVITE") {
				j = k
			}
		}
		if j < i {
			copy(ms[j+1:i+1], ms[j:i])
			ms[j] = r
		}
	}
}

func cseqNumber(cseq string) (uint64, bool) {
	num, _, _ := strings.Cut(cseq, " ")
	n, err := strconv.ParseUint(num, 10, 32)
	return n, err == nil
}

// head is what the store reads of a message's start line and headers.
type head struct {
	method string // request method, or the CSeq method of a response
	status int
	reason string
	callID string
	cseq   string
	toTag  bool
}

// scan reads the start line and the Call-ID, CSeq and To headers of a SIP
// message (RFC 3261 §7, compact forms of §7.3.3 included) without parsing
// the rest.
func scan(b []byte) (head, bool) {
	var h head
	line, rest := cutLine(b)
	if bytes.HasPrefix(line, []byte("SIP/2.0 ")) {
		f := bytes.SplitN(line[len("SIP/2.0 "):], []byte(" "), 2)
		code, err := strconv.Atoi(string(f[0]))
		if err != nil || code < 100 || code > 699 {
			return h, false
		}
		h.status = code
		if len(f) == 2 {
			h.reason = string(f[1])
		}
	} else {
		sp := bytes.IndexByte(line, ' ')
		if sp <= 0 || !bytes.HasSuffix(line, []byte(" SIP/2.0")) {
			return h, false
		}
		h.method = string(line[:sp])
	}
	for len(rest) > 0 {
		line, rest = cutLine(rest)
		if len(line) == 0 {
			break // end of the headers
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		name, value = bytes.TrimSpace(name), bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Call-ID")) || bytes.EqualFold(name, []byte("i")):
			h.callID = string(value)
		case bytes.EqualFold(name, []byte("CSeq")):
			h.cseq = string(value)
			if _, m, ok := bytes.Cut(value, []byte(" ")); ok && h.status != 0 {
				h.method = string(bytes.TrimSpace(m))
			}
		case bytes.EqualFold(name, []byte("To")) || bytes.EqualFold(name, []byte("t")):
			h.toTag = hasTag(value)
		}
	}
	return h, true
}

// hasTag reports whether a To header value has a tag parameter (outside
// its URI's angle brackets).
func hasTag(v []byte) bool {
	if i := bytes.LastIndexByte(v, '>'); i >= 0 {
		v = v[i+1:]
	}
	for _, p := range bytes.Split(v, []byte(";")) {
		k, _, _ := bytes.Cut(bytes.TrimSpace(p), []byte("="))
		if bytes.EqualFold(k, []byte("tag")) {
			return true
		}
	}
	return false
}

func cutLine(b []byte) (line, rest []byte) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return bytes.TrimRight(b, "\r"), nil
	}
	return bytes.TrimRight(b[:i], "\r"), b[i+1:]
}

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
	last  *list.Element            // the call of the last message kept: the next is often its too
	bytes int                      // kept in all
	free  [][]byte                 // chunks of evicted calls, to reuse (at most maxFree)
}

// entry is one call's trace as kept: a record of each message, and the
// messages as they were on the wire, one after the other in chunks of
// chunkSize bytes that go back to the store's free list when the call is
// evicted. Keeping a message thus costs a copy, no allocation once the
// store has warmed up (a message larger than a chunk gets a buffer of
// its own); what Message shows besides is read from the raw message when
// asked for (Get).
type entry struct {
	callID  string
	started time.Time
	recs    []record
	chunks  [][]byte
	bytes   int
	dropped int
}

// record is one message as kept: where it is in its entry's chunks
// (the message, then its local and remote address as text).
type record struct {
	at        time.Time
	chunk     uint32 // index in entry.chunks
	off       uint32 // start in that chunk
	n         uint32 // the message's length
	la, ra    uint8  // the addresses' lengths
	transport string
	sent      bool
}

// chunkSize is the size of the pieces the store keeps messages in: about
// a call's messages with SDP on one side, so that a call's trace uses one
// or two.
const chunkSize = 8 << 10

// maxFree bounds the chunks kept for reuse after a burst of calls has been
// evicted (4 MiB); beyond it they are left to the garbage collector.
const maxFree = 512

// callMessages is the room a call's trace starts with: its usual exchange
// (INVITE, 407, ACK, INVITE, 100, 180, 200, ACK, BYE, 200 on both sides),
// so that it seldom grows.
const callMessages = 24

// New returns a store that keeps the traces of the last n calls (at
// least 1).
func New(n int) *Store {
	return &Store{max: max(n, 1), calls: map[string]*list.Element{}, order: list.New()}
}

// Observe adds m to its call's trace, if it is part of a call. It is on
// the path of every message the switch receives and sends, so what is not
// kept (registrations, out-of-dialog requests, messages of calls not
// traced) costs a scan of the headers and a map lookup, without
// allocating.
func (s *Store) Observe(m *sip.Message) {
	if neverInCall(m.Method) {
		return
	}
	h, ok := scanObserve(m.Data)
	if !ok || len(h.callID) == 0 || h.skip {
		return
	}
	opens := h.status == 0 && string(h.method) == "INVITE" && !h.toTag
	s.mu.Lock()
	defer s.mu.Unlock()
	el, ok := s.last, s.last != nil && s.last.Value.(*entry).callID == string(h.callID)
	if !ok {
		el, ok = s.calls[string(h.callID)]
	}
	if !ok {
		if !opens {
			return
		}
		el = s.openLocked(string(h.callID), m.Time())
	}
	s.last = el
	e := el.Value.(*entry)
	local, remote := m.AddrText()
	if len(local) > 255 || len(remote) > 255 {
		local, remote = "", ""
	}
	n := len(m.Data) + len(local) + len(remote)
	if len(e.recs) >= MaxMessages || e.bytes+n > MaxCallBytes {
		e.dropped++
		return
	}
	ci, off := s.roomLocked(e, n)
	c := e.chunks[ci][:off]
	c = append(c, m.Data...)
	c = append(c, local...)
	c = append(c, remote...)
	e.chunks[ci] = c
	e.recs = append(e.recs, record{at: m.Time(), chunk: uint32(ci), off: uint32(off), n: uint32(len(m.Data)),
		la: uint8(len(local)), ra: uint8(len(remote)), transport: m.Transport, sent: m.Sent})
	e.bytes += n
	s.bytes += n
	for s.bytes > maxTotalBytes && s.order.Len() > 1 {
		s.evictOldestLocked()
	}
}

// roomLocked returns where in e's chunks n more bytes go: the chunk's
// index and the offset, its length now. A new chunk comes from the free
// list when the last one is full.
func (s *Store) roomLocked(e *entry, n int) (int, int) {
	if k := len(e.chunks); k > 0 {
		if c := e.chunks[k-1]; cap(c)-len(c) >= n {
			return k - 1, len(c)
		}
	}
	var c []byte
	switch {
	case n > chunkSize:
		c = make([]byte, 0, n) // a message of its own, not reused
	case len(s.free) > 0:
		c = s.free[len(s.free)-1][:0]
		s.free[len(s.free)-1] = nil
		s.free = s.free[:len(s.free)-1]
	default:
		c = make([]byte, 0, chunkSize)
	}
	e.chunks = append(e.chunks, c)
	return len(e.chunks) - 1, 0
}

// message is what the trace shows of record i of e: its text is copied
// out of the chunks, which are reused once e is evicted.
func (e *entry) message(i int) Message {
	r := &e.recs[i]
	data := e.chunks[r.chunk][r.off:]
	raw := string(data[:r.n])
	local := string(data[r.n : r.n+uint32(r.la)])
	remote := string(data[r.n+uint32(r.la) : r.n+uint32(r.la)+uint32(r.ra)])
	msg := Message{Time: r.at, Transport: r.transport, Raw: raw}
	if h, ok := scan(data[:r.n]); ok {
		msg.Method, msg.Status, msg.Reason, msg.CSeq = string(h.method), h.status, string(h.reason), string(h.cseq)
	}
	if r.sent {
		msg.Direction, msg.From, msg.To = "out", addr(local), addr(remote)
	} else {
		msg.Direction, msg.From, msg.To = "in", addr(remote), addr(local)
	}
	return msg
}

// addr is an address as the trace shows it: IPv4-mapped IPv6 addresses
// (a dual-stack socket's) as IPv4.
func addr(text string) string {
	if text == "" {
		return ""
	}
	ap, err := netip.ParseAddrPort(text)
	if err != nil {
		return text
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
}

// openLocked starts the trace of a call. When the store is full, the
// oldest call's element, entry and records are reused for it (its chunks
// go to the free list first): a switch that has been up a while opens a
// trace without allocating, but for the Call-ID and the map's entry.
func (s *Store) openLocked(id string, started time.Time) *list.Element {
	for s.order.Len() > s.max {
		s.evictOldestLocked()
	}
	var el *list.Element
	if s.order.Len() == s.max {
		el = s.order.Front()
		e := el.Value.(*entry)
		s.forgetLocked(el, e)
		*e = entry{callID: id, started: started, recs: e.recs[:0], chunks: e.chunks[:0]}
		s.order.MoveToBack(el)
	} else {
		el = s.order.PushBack(&entry{callID: id, started: started, recs: make([]record, 0, callMessages)})
	}
	s.calls[id] = el
	return el
}

func (s *Store) evictOldestLocked() {
	el := s.order.Front()
	if el == nil {
		return
	}
	s.forgetLocked(el, el.Value.(*entry))
	s.order.Remove(el)
}

// forgetLocked takes the call of el out of the index and the byte count,
// and its chunks to the free list.
func (s *Store) forgetLocked(el *list.Element, e *entry) {
	delete(s.calls, e.callID)
	if s.last == el {
		s.last = nil
	}
	s.bytes -= e.bytes
	for _, c := range e.chunks {
		if cap(c) == chunkSize && len(s.free) < maxFree {
			s.free = append(s.free, c)
		}
	}
	clear(e.chunks)
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
	e := el.Value.(*entry)
	c := Call{CallID: e.callID, Started: e.started, Dropped: e.dropped, Messages: make([]Message, len(e.recs))}
	for i := range e.recs {
		c.Messages[i] = e.message(i)
	}
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

// head is what the store reads of a message's start line and headers: the
// slices point into the message.
type head struct {
	method []byte // request method, or the CSeq method of a response
	status int
	reason []byte
	callID []byte
	cseq   []byte
	toTag  bool
	// skip is set for what is never part of a call: REGISTER and PUBLISH
	// (RFC 3261 §10, RFC 3903 §4 — never sent within a dialog) and their
	// responses.
	skip bool
}

// scan reads the start line and the Call-ID, CSeq and To headers of a SIP
// message (RFC 3261 §7, compact forms of §7.3.3 included) without parsing
// the rest, and without allocating. A request that is never part of a call
// is skipped at its start line. Of a header given twice, the first counts.
func scan(b []byte) (head, bool) { return scanHead(b, false) }

// scanObserve is scan for Observe, which needs less of most messages: the
// Call-ID, and besides only a response's CSeq (REGISTER and PUBLISH are
// skipped by it) and an INVITE's To (a tag or not: does it open a call?).
// It reads no further than those, and gives them as scan does.
func scanObserve(b []byte) (head, bool) { return scanHead(b, true) }

// The headers scanHead looks for.
const (
	wantCallID = 1 << iota
	wantCSeq
	wantTo
)

func scanHead(b []byte, lean bool) (head, bool) {
	var h head
	line, rest := cutLine(b)
	if bytes.HasPrefix(line, []byte("SIP/2.0 ")) {
		code, reason, _ := bytes.Cut(line[len("SIP/2.0 "):], []byte(" "))
		n, ok := statusCode(code)
		if !ok {
			return h, false
		}
		h.status, h.reason = n, reason
	} else {
		sp := bytes.IndexByte(line, ' ')
		if sp <= 0 || !bytes.HasSuffix(line, []byte(" SIP/2.0")) {
			return h, false
		}
		h.method = line[:sp]
		if neverInCall(h.method) {
			h.skip = true
			return h, true
		}
	}
	want := wantCallID | wantCSeq | wantTo
	if lean {
		want = wantCallID
		switch {
		case h.status != 0:
			want |= wantCSeq
		case string(h.method) == "INVITE":
			want |= wantTo
		}
	}
	got := 0
	for len(rest) > 0 && got != want {
		line, rest = cutLine(rest)
		if len(line) == 0 {
			break // the end of the headers
		}
		// Most headers are told apart by their first letter.
		switch line[0] | 0x20 {
		case 'c', 'i', 't':
		default:
			continue
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		name = bytes.TrimRight(name, " \t")
		var which int
		switch {
		case bytes.EqualFold(name, []byte("Call-ID")) || bytes.EqualFold(name, []byte("i")):
			which = wantCallID
		case bytes.EqualFold(name, []byte("CSeq")):
			which = wantCSeq
		case bytes.EqualFold(name, []byte("To")) || bytes.EqualFold(name, []byte("t")):
			which = wantTo
		}
		if which&want == 0 || got&which != 0 {
			continue
		}
		got |= which
		value = bytes.TrimSpace(value)
		switch which {
		case wantCallID:
			h.callID = value
		case wantCSeq:
			h.cseq = value
			if _, m, ok := bytes.Cut(value, []byte(" ")); ok && h.status != 0 {
				h.method = bytes.TrimSpace(m)
				if neverInCall(h.method) {
					h.skip = true
					return h, true
				}
			}
		case wantTo:
			h.toTag = hasTag(value)
		}
	}
	return h, true
}

func neverInCall[T string | []byte](method T) bool {
	return string(method) == "REGISTER" || string(method) == "PUBLISH"
}

// statusCode parses a response's three-digit status code (RFC 3261 §7.2).
func statusCode(b []byte) (int, bool) {
	if len(b) != 3 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, n >= 100 && n <= 699
}

// hasTag reports whether a To header value has a tag parameter (outside
// its URI's angle brackets).
func hasTag(v []byte) bool {
	if i := bytes.LastIndexByte(v, '>'); i >= 0 {
		v = v[i+1:]
	}
	for len(v) > 0 {
		var p []byte
		p, v, _ = bytes.Cut(v, []byte(";"))
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
		line = b
	} else {
		line, rest = b[:i], b[i+1:]
	}
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, rest
}

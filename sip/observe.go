package sip

import (
	"bytes"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gosip "github.com/emiago/sipgo/sip"
)

// Message is one SIP message the switch received or sent, as it was on the
// wire, handed to Config.Observer. Its time and addresses are worked out
// when first asked for: an observer that keeps nothing of most messages
// (the console's call traces and registrations) does not pay for them.
type Message struct {
	// Sent is true for a message the switch sent, false for one it
	// received.
	Sent bool
	// Transport is udp, tcp, tls, ws or wss.
	Transport string
	// Data is the whole message. It, and the Message itself, are only
	// valid during the call to the Observer, which copies what it keeps.
	Data []byte
	// Method, when not empty, is the message's method (for a response,
	// its CSeq's), as the sender knew it: an observer need not read the
	// headers for it. Only the REGISTER fast path sets it.
	Method string

	at            time.Time
	laddr, raddr  string // as sipgo reports them, until parsed
	local, remote netip.AddrPort
	parsed        bool
}

// NewMessage returns a Message with its time and addresses set (messages
// from elsewhere than the switch's transports, and tests).
func NewMessage(at time.Time, sent bool, transport string, local, remote netip.AddrPort, data []byte) *Message {
	return &Message{Sent: sent, Transport: transport, Data: data, at: at, local: local, remote: remote, parsed: true}
}

// Time is when the message was read or written.
func (m *Message) Time() time.Time {
	if m.at.IsZero() {
		m.at = time.Now()
	}
	return m.at
}

// Local is the switch's address.
func (m *Message) Local() netip.AddrPort {
	m.parseAddrs()
	return m.local
}

// Remote is the peer's address.
func (m *Message) Remote() netip.AddrPort {
	m.parseAddrs()
	return m.remote
}

// AddrText returns the switch's and the peer's address as host:port text,
// as the transport reported them (without parsing them).
func (m *Message) AddrText() (local, remote string) {
	if m.laddr != "" || m.raddr != "" {
		return m.laddr, m.raddr
	}
	return addrText(m.local), addrText(m.remote)
}

func addrText(ap netip.AddrPort) string {
	if !ap.IsValid() {
		return ""
	}
	return ap.String()
}

func (m *Message) parseAddrs() {
	if m.parsed {
		return
	}
	m.parsed = true
	local, _ := netip.ParseAddrPort(m.laddr)
	remote, _ := netip.ParseAddrPort(m.raddr)
	m.local, m.remote = unmapAddrPort(local), unmapAddrPort(remote)
}

// Observer is told of every SIP message the switch receives and sends
// (Config.Observer): tracing, HEP export. It is called on the transport's
// own goroutines, so it must be quick and must not block.
type Observer func(m *Message)

// sipgo v1.7.2 has one hook that sees every message on the wire, read and
// written, on every transport, retransmissions included: its SIP debug
// tracer (sip.SIPDebug with sip.SIPDebugTracer). It is a process global, and
// other sipgo user agents of the process (the WebRTC gateway's) use it too,
// so observed holds, by sipgo's transport name and local port, the
// listeners of the servers that have an Observer, and wireTracer hands each
// message to the server whose listener it passed. A switch has a handful
// of listeners: they are looked through in a slice, which costs less per
// message than hashing a key for a map.
var (
	observed     atomic.Pointer[[]observedIface]
	observedMu   sync.Mutex // serializes copy-on-write updates of observed
	installTrace sync.Once
)

// observedIface is one observed listener: sipgo's transport name ("UDP",
// "TCP" for TCP and TLS, "WS" for WS and WSS) and its local port, and
// whom to tell.
type observedIface struct {
	sipgo     string
	port      uint16
	transport string // ours: udp, tcp, tls, ws, wss
	obs       Observer
	owner     *Server
}

func sipgoTransport(t string) string {
	switch t {
	case "udp":
		return "UDP"
	case "tcp", "tls":
		return "TCP"
	}
	return "WS"
}

// observeIfaceLocked starts handing what passes through i to the server's
// Observer, if it has one.
func (s *Server) observeIfaceLocked(i iface) {
	if s.cfg.Observer == nil {
		return
	}
	installTrace.Do(func() {
		gosip.SIPDebugTracer(wireTracer{})
		gosip.SIPDebug = true
	})
	o := observedIface{sipgo: sipgoTransport(i.transport), port: uint16(i.port), transport: i.transport, obs: s.cfg.Observer, owner: s}
	updateObserved(func(l []observedIface) []observedIface {
		l = slices.DeleteFunc(l, func(v observedIface) bool { return v.sipgo == o.sipgo && v.port == o.port })
		return append(l, o)
	})
}

// unobserve stops observing the server's listeners (at Close).
func (s *Server) unobserve() {
	if s.cfg.Observer == nil {
		return
	}
	updateObserved(func(l []observedIface) []observedIface {
		return slices.DeleteFunc(l, func(v observedIface) bool { return v.owner == s })
	})
	splitters.Delete(s)
}

// updateObserved replaces the observed listeners by what f makes of a
// copy of them.
func updateObserved(f func(l []observedIface) []observedIface) {
	observedMu.Lock()
	defer observedMu.Unlock()
	var next []observedIface
	if cur := observed.Load(); cur != nil {
		next = slices.Clone(*cur)
	}
	next = f(next)
	observed.Store(&next)
}

// findObserved returns the observed listener of a sipgo transport and
// local port.
func findObserved(transport string, port uint16) (*observedIface, bool) {
	l := observed.Load()
	if l == nil {
		return nil, false
	}
	for i := range *l {
		if o := &(*l)[i]; o.port == port && o.sipgo == transport {
			return o, true
		}
	}
	return nil, false
}

// wireTracer is sipgo's debug tracer: it finds the observed listener a
// message passed through and hands the message on.
type wireTracer struct{}

func (wireTracer) SIPTraceRead(transport, laddr, raddr string, msg []byte) {
	traceWire(false, transport, laddr, raddr, msg)
}

func (wireTracer) SIPTraceWrite(transport, laddr, raddr string, msg []byte) {
	traceWire(true, transport, laddr, raddr, msg)
}

func traceWire(sent bool, transport, laddr, raddr string, data []byte) {
	port, ok := portOf(laddr)
	if !ok {
		return
	}
	o, ok := findObserved(transport, port)
	if !ok {
		return
	}
	if transport != "TCP" && len(bytes.TrimLeft(data, "\r\n")) == 0 {
		return // a keep-alive (RFC 5626 §3.5.1), not a message
	}
	msg := messages.Get().(*Message)
	defer func() {
		*msg = Message{} // holds nothing of sipgo's buffers while pooled
		messages.Put(msg)
	}()
	*msg = Message{Sent: sent, Transport: o.transport, laddr: laddr, raddr: raddr}
	if transport == "TCP" && !sent {
		// A stream read is whatever TCP delivered: part of a message,
		// or several.
		o.owner.streams().split(laddr, raddr, data, func(one []byte) {
			msg.Data = one
			o.obs(msg)
			msg.at = time.Time{} // the next one is seen a moment later
		})
		return
	}
	msg.Data = data
	o.obs(msg)
}

// observeSent tells the server's Observer of a message it sent on a UDP
// listener without sipgo's wire hook (the REGISTER fast path), with its
// method.
func (s *Server) observeSent(laddr string, remote net.Addr, data []byte, method string) {
	if s.cfg.Observer == nil {
		return
	}
	msg := messages.Get().(*Message)
	*msg = Message{Sent: true, Transport: "udp", Data: data, Method: method, laddr: laddr, raddr: remote.String()}
	s.cfg.Observer(msg)
	*msg = Message{}
	messages.Put(msg)
}

// messages recycles what traceWire hands the Observer, which keeps nothing
// of it past the call.
var messages = sync.Pool{New: func() any { return new(Message) }}

// portOf returns the port at the end of a host:port address.
func portOf(addr string) (uint16, bool) {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 || i == len(addr)-1 || len(addr)-i > 6 {
		return 0, false
	}
	n := 0
	for _, c := range addr[i+1:] {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return uint16(n), n <= 0xffff
}

func unmapAddrPort(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// streamSplitters are per server, made when first needed.
var splitters sync.Map // *Server -> *streamSplitter

func (s *Server) streams() *streamSplitter {
	if v, ok := splitters.Load(s); ok {
		return v.(*streamSplitter)
	}
	v, _ := splitters.LoadOrStore(s, &streamSplitter{partial: map[string][]byte{}})
	return v.(*streamSplitter)
}

// Bounds of the stream reassembly: connections with a message cut across
// reads, and the bytes kept of one.
const (
	maxPartialStreams = 1024
	maxPartialBytes   = 64 << 10
)

// streamSplitter cuts what TCP and TLS connections deliver into messages by
// their Content-Length (RFC 3261 §18.3), keeping the unfinished tail of each
// connection's last read.
type streamSplitter struct {
	mu      sync.Mutex
	partial map[string][]byte // laddr|raddr -> bytes of an unfinished message
}

func (p *streamSplitter) split(laddr, raddr string, data []byte, emit func([]byte)) {
	key := laddr + "|" + raddr
	p.mu.Lock()
	defer p.mu.Unlock()
	buf := data
	if prev, ok := p.partial[key]; ok {
		buf = append(prev, data...)
		delete(p.partial, key)
	}
	for {
		buf = bytes.TrimLeft(buf, "\r\n")
		if len(buf) == 0 {
			return
		}
		n := messageLength(buf)
		if n < 0 || n > len(buf) {
			break
		}
		emit(buf[:n])
		buf = buf[n:]
	}
	if len(buf) > maxPartialBytes {
		return // not SIP we can frame: dropped from the trace
	}
	if len(p.partial) >= maxPartialStreams {
		for k := range p.partial {
			delete(p.partial, k)
			break
		}
	}
	p.partial[key] = append([]byte(nil), buf...)
}

// messageLength returns the length of the message at the start of b
// (headers, blank line, Content-Length bytes of body), or -1 when its
// headers are not complete yet.
func messageLength(b []byte) int {
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		return -1
	}
	head := b[:end]
	length := 0
	for len(head) > 0 {
		line := head
		if i := bytes.Index(head, []byte("\r\n")); i >= 0 {
			line, head = head[:i], head[i+2:]
		} else {
			head = nil
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		name = bytes.TrimSpace(name)
		if bytes.EqualFold(name, []byte("Content-Length")) || bytes.EqualFold(name, []byte("l")) {
			if n, err := strconv.Atoi(string(bytes.TrimSpace(value))); err == nil && n >= 0 {
				length = n
			}
		}
	}
	return end + 4 + length
}

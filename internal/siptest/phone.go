package siptest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gosip "github.com/emiago/sipgo/sip"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// DefaultTimeout bounds every wait of a phone that is not given one.
const DefaultTimeout = 5 * time.Second

// Config describes a phone.
type Config struct {
	// Transport is "udp" (default), "tcp" or "ws".
	Transport string
	// Server is where requests go: host:port for udp and tcp, the WebSocket
	// URL (ws://host:port/sip) for ws.
	Server string
	// Local is the address to bind (udp) or dial from (tcp). Default
	// 127.0.0.1:0.
	Local string
	// User, Password and Domain make the phone's AOR sip:User@Domain and
	// its digest credentials. Domain defaults to switchboard.local.
	User, Password, Domain string
	// PacketConn, when set, is the bound UDP socket to use (Local is then
	// ignored); the phone closes it.
	PacketConn net.PacketConn
	// Name labels the phone in the trace (default User).
	Name string
	// Trace receives every message sent and received (optional).
	Trace *Trace
}

// Phone is a raw-SIP user agent for tests: it sends the SIP text it is given
// and queues what it receives, parsed. Retransmissions (same method or
// status, CSeq, top Via branch and To tag as a message already received) are
// counted and dropped, so a test sees each message once.
//
// Its Wait methods call t.Fatal on timeout and so must be called from the
// test's goroutine.
type Phone struct {
	t      testing.TB
	cfg    Config
	parser *gosip.Parser
	local  netip.AddrPort
	server net.Addr
	host   string // host in Contact and Via (an .invalid name for ws)

	pc   net.PacketConn // udp
	conn net.Conn       // tcp, ws
	wsrw io.ReadWriter
	wmu  sync.Mutex

	mu      sync.Mutex
	queue   []gosip.Message
	seen    map[string]bool
	dups    int
	changed chan struct{}
	readErr error
	done    chan struct{}

	tags      map[string]string // Call-ID -> our To tag as UAS
	regCallID string
	regCSeq   int
}

// NewPhone opens the phone's socket and starts reading. It is closed when
// the test ends.
func NewPhone(t testing.TB, cfg Config) *Phone {
	t.Helper()
	if cfg.Transport == "" {
		cfg.Transport = "udp"
	}
	cfg.Transport = strings.ToLower(cfg.Transport)
	if cfg.Local == "" {
		cfg.Local = "127.0.0.1:0"
	}
	if cfg.Domain == "" {
		cfg.Domain = "switchboard.local"
	}
	if cfg.Name == "" {
		cfg.Name = cfg.User
	}
	p := &Phone{
		t: t, cfg: cfg, parser: gosip.NewParser(), seen: map[string]bool{}, changed: make(chan struct{}),
		done: make(chan struct{}), tags: map[string]string{}, regCallID: Rand(8) + "@siptest",
	}
	switch cfg.Transport {
	case "udp":
		pc := cfg.PacketConn
		if pc == nil {
			var err error
			if pc, err = net.ListenPacket("udp", cfg.Local); err != nil {
				t.Fatalf("phone %s: %v", cfg.Name, err)
			}
		}
		p.pc = pc
		p.local = pc.LocalAddr().(*net.UDPAddr).AddrPort()
		if cfg.Server != "" {
			var err error
			if p.server, err = net.ResolveUDPAddr("udp", cfg.Server); err != nil {
				t.Fatalf("phone %s: server %q: %v", cfg.Name, cfg.Server, err)
			}
		}
		go p.readUDP()
	case "tcp":
		la, err := net.ResolveTCPAddr("tcp", cfg.Local)
		if err != nil {
			t.Fatalf("phone %s: %v", cfg.Name, err)
		}
		d := net.Dialer{LocalAddr: la, Timeout: DefaultTimeout}
		c, err := d.Dial("tcp", cfg.Server)
		if err != nil {
			t.Fatalf("phone %s: dial %s: %v", cfg.Name, cfg.Server, err)
		}
		p.conn = c
		p.server = c.RemoteAddr()
		p.local = c.LocalAddr().(*net.TCPAddr).AddrPort()
		go p.readStream(bufio.NewReader(c))
	case "ws":
		ctx, cancel := context.WithTimeout(context.Background(), DefaultTimeout)
		defer cancel()
		c, br, _, err := ws.Dialer{Protocols: []string{"sip"}}.Dial(ctx, cfg.Server)
		if err != nil {
			t.Fatalf("phone %s: websocket dial %s: %v", cfg.Name, cfg.Server, err)
		}
		p.conn = c
		p.server = c.RemoteAddr()
		p.local = c.LocalAddr().(*net.TCPAddr).AddrPort()
		var r io.Reader = c
		if br != nil {
			r = io.MultiReader(br, c)
		}
		p.wsrw = struct {
			io.Reader
			io.Writer
		}{r, c}
		p.host = Rand(4) + ".invalid"
		go p.readWS()
	default:
		t.Fatalf("phone %s: transport %q", cfg.Name, cfg.Transport)
	}
	if p.host == "" {
		p.host = p.local.Addr().String()
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// Close closes the phone's socket and waits for its reader to stop.
func (p *Phone) Close() {
	if p.pc != nil {
		p.pc.Close()
	}
	if p.conn != nil {
		p.conn.Close()
	}
	<-p.done
}

// Addr returns the phone's local address.
func (p *Phone) Addr() netip.AddrPort { return p.local }

// User returns the phone's user name.
func (p *Phone) User() string { return p.cfg.User }

// Dups returns how many retransmissions the phone has dropped.
func (p *Phone) Dups() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dups
}

// AOR returns sip:user@domain.
func (p *Phone) AOR() string { return "sip:" + p.cfg.User + "@" + p.cfg.Domain }

// Contact returns the phone's Contact URI.
func (p *Phone) Contact() string {
	switch p.cfg.Transport {
	case "tcp":
		return "sip:" + p.cfg.User + "@" + p.local.String() + ";transport=tcp"
	case "ws":
		return "sip:" + p.cfg.User + "@" + p.host + ";transport=ws"
	}
	return "sip:" + p.cfg.User + "@" + p.local.String()
}

// Via returns a Via value for the phone with the given branch.
func (p *Phone) Via(branch string) string {
	sentBy := p.local.String()
	if p.cfg.Transport == "ws" {
		sentBy = p.host
	}
	return "SIP/2.0/" + strings.ToUpper(p.cfg.Transport) + " " + sentBy + ";branch=" + branch + ";rport"
}

// Request returns a new out-of-dialog request from the phone: fresh branch,
// Call-ID and From tag, CSeq 1, To naming ruri, and a Contact for methods
// that establish something. REGISTER uses the phone's registration Call-ID
// and the next CSeq of that sequence, and has To and From set to the AOR.
func (p *Phone) Request(method, ruri string) *Msg {
	m := &Msg{Start: method + " " + ruri + " SIP/2.0"}
	m.Add("Via", p.Via(NewBranch()))
	m.Add("Max-Forwards", "70")
	m.Add("From", "<"+p.AOR()+">;tag="+Rand(4))
	to := "<" + ruri + ">"
	callID := Rand(8) + "@siptest"
	cseq := 1
	if method == "REGISTER" {
		to = "<" + p.AOR() + ">"
		callID = p.regCallID
		p.regCSeq++
		cseq = p.regCSeq
	}
	m.Add("To", to)
	m.Add("Call-ID", callID)
	m.Add("CSeq", strconv.Itoa(cseq)+" "+method)
	switch method {
	case "INVITE", "REGISTER", "SUBSCRIBE", "REFER":
		m.Add("Contact", "<"+p.Contact()+">")
	}
	m.Add("User-Agent", "siptest "+p.cfg.Name)
	return m
}

// Register returns a REGISTER for the phone's own Contact with the given
// Expires header (a negative value leaves Expires out).
func (p *Phone) Register(expires int) *Msg {
	m := p.Request("REGISTER", "sip:"+p.cfg.Domain)
	if expires >= 0 {
		m.Add("Expires", strconv.Itoa(expires))
	}
	return m
}

// Retry returns m as it is sent again in a new transaction of the same
// sequence: a new branch and the next CSeq (REGISTER also advances the
// phone's registration CSeq).
func (p *Phone) Retry(m *Msg) *Msg {
	n := m.Clone()
	n.Set("Via", p.Via(NewBranch()))
	cseq := m.CSeq() + 1
	if m.Method() == "REGISTER" && m.Get("Call-ID") == p.regCallID {
		if cseq <= p.regCSeq {
			cseq = p.regCSeq + 1
		}
		p.regCSeq = cseq
	}
	n.Set("CSeq", strconv.Itoa(cseq)+" "+m.Method())
	return n
}

// Authenticate answers the challenge in res (401 or 407) to m: for an
// INVITE it first ACKs the challenge, then it returns the retried request
// with credentials for alg (MD5 when empty), ready to send.
func (p *Phone) Authenticate(m *Msg, res *gosip.Response, alg string) *Msg {
	p.t.Helper()
	if alg == "" {
		alg = "MD5"
	}
	if m.Method() == "INVITE" {
		p.Send(Ack(m, res))
	}
	n := p.Retry(m)
	n.Del("Authorization")
	n.Del("Proxy-Authorization")
	if err := Authorize(n, res, alg, Credentials{User: p.cfg.User, Password: p.cfg.Password}); err != nil {
		p.t.Fatalf("phone %s: %v", p.cfg.Name, err)
	}
	return n
}

// SendAuthenticated sends m, expects a 401 or 407 challenge, and sends it
// again with credentials (MD5). It returns the request sent the second time;
// its responses are left for the caller to wait for.
func (p *Phone) SendAuthenticated(m *Msg) *Msg {
	p.t.Helper()
	p.Send(m)
	res := p.WaitFinal(m)
	if res.StatusCode != 401 && res.StatusCode != 407 {
		p.t.Fatalf("phone %s: %s got %d %s, want a 401/407 challenge", p.cfg.Name, m.Method(), res.StatusCode, res.Reason)
	}
	n := p.Authenticate(m, res, "MD5")
	p.Send(n)
	return n
}

// DoRegister registers the phone (Expires: expires) with digest
// authentication and returns the final response.
func (p *Phone) DoRegister(expires int) *gosip.Response {
	p.t.Helper()
	m := p.Register(expires)
	p.Send(m)
	res := p.WaitFinal(m)
	if res.StatusCode == 401 {
		m = p.Authenticate(m, res, "MD5")
		p.Send(m)
		res = p.WaitFinal(m)
	}
	return res
}

// MustRegister registers the phone and fails the test unless it gets 200.
func (p *Phone) MustRegister() {
	p.t.Helper()
	if res := p.DoRegister(3600); res.StatusCode != 200 {
		p.t.Fatalf("phone %s: REGISTER got %d %s", p.cfg.Name, res.StatusCode, res.Reason)
	}
}

// Ack returns the ACK for a non-2xx final response res to the INVITE inv
// (RFC 3261 §17.1.1.3): same branch, Request-URI and Route as the INVITE,
// To from the response.
func Ack(inv *Msg, res *gosip.Response) *Msg {
	m := &Msg{Start: "ACK " + inv.RequestURI() + " SIP/2.0"}
	m.Add("Via", inv.Get("Via"))
	for _, r := range inv.Values("Route") {
		m.Add("Route", r)
	}
	m.Add("Max-Forwards", "70")
	m.Add("From", inv.Get("From"))
	m.Add("To", res.To().Value())
	m.Add("Call-ID", inv.Get("Call-ID"))
	m.Add("CSeq", strconv.Itoa(inv.CSeq())+" ACK")
	return m
}

// Cancel returns the CANCEL for the request inv (RFC 3261 §9.1).
func Cancel(inv *Msg) *Msg {
	m := &Msg{Start: "CANCEL " + inv.RequestURI() + " SIP/2.0"}
	m.Add("Via", inv.Get("Via"))
	for _, r := range inv.Values("Route") {
		m.Add("Route", r)
	}
	m.Add("Max-Forwards", "70")
	m.Add("From", inv.Get("From"))
	m.Add("To", inv.Get("To"))
	m.Add("Call-ID", inv.Get("Call-ID"))
	m.Add("CSeq", strconv.Itoa(inv.CSeq())+" CANCEL")
	return m
}

// Send sends m (a *Msg, a gosip.Message or a string) to the server.
func (p *Phone) Send(m fmt.Stringer) {
	p.t.Helper()
	p.SendRaw(m.String())
}

// SendRaw sends text to the server as it is.
func (p *Phone) SendRaw(text string) {
	p.t.Helper()
	if err := p.write([]byte(text), p.server); err != nil {
		p.t.Fatalf("phone %s: send: %v", p.cfg.Name, err)
	}
}

// SendTo sends text to addr (udp only).
func (p *Phone) SendTo(text string, addr string) {
	p.t.Helper()
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		p.t.Fatalf("phone %s: %v", p.cfg.Name, err)
	}
	if err := p.write([]byte(text), ua); err != nil {
		p.t.Fatalf("phone %s: send: %v", p.cfg.Name, err)
	}
}

func (p *Phone) write(b []byte, to net.Addr) error {
	p.cfg.Trace.Printf("%s (%s %s) sends to %v:\n%s", p.cfg.Name, p.cfg.Transport, p.local, to, abbreviate(b))
	p.wmu.Lock()
	defer p.wmu.Unlock()
	switch p.cfg.Transport {
	case "udp":
		if to == nil {
			return errors.New("no server address")
		}
		_, err := p.pc.WriteTo(b, to)
		return err
	case "ws":
		return wsutil.WriteClientText(p.conn, b)
	}
	_, err := p.conn.Write(b)
	return err
}

func abbreviate(b []byte) string {
	if len(b) > 4096 {
		return string(b[:4096]) + fmt.Sprintf("... (%d bytes)", len(b))
	}
	return string(b)
}

// Reply sends a response to req: To gets the phone's tag for the call, an
// INVITE's 1xx/2xx gets the phone's Contact, and extra holds further
// "Name: value" header lines. It returns the response sent.
func (p *Phone) Reply(req *gosip.Request, code int, reason string, extra ...string) *gosip.Response {
	p.t.Helper()
	res := gosip.NewResponseFromRequest(req, code, reason, nil)
	if to := res.To(); to != nil && code > 100 {
		if t, ok := req.To().Params.Get("tag"); !ok || t == "" {
			to.Params.Add("tag", p.Tag(req.CallID().Value()))
		}
	}
	if req.IsInvite() && code > 100 && code < 300 {
		res.AppendHeader(gosip.NewHeader("Contact", "<"+p.Contact()+">"))
	}
	for _, e := range extra {
		name, value, _ := strings.Cut(e, ":")
		res.AppendHeader(gosip.NewHeader(strings.TrimSpace(name), strings.TrimSpace(value)))
	}
	if res.ContentLength() == nil {
		res.AppendHeader(gosip.NewHeader("Content-Length", "0"))
	}
	to := p.server
	if p.cfg.Transport == "udp" && req.Source() != "" {
		if ua, err := net.ResolveUDPAddr("udp", req.Source()); err == nil {
			to = ua
		}
	}
	if err := p.write([]byte(res.String()), to); err != nil {
		p.t.Fatalf("phone %s: reply: %v", p.cfg.Name, err)
	}
	return res
}

// Tag returns the phone's To tag as UAS for the call with callID.
func (p *Phone) Tag(callID string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := p.tags[callID]
	if !ok {
		t = p.cfg.Name + "-" + Rand(3)
		p.tags[callID] = t
	}
	return t
}

// ---- receiving

func (p *Phone) readUDP() {
	defer close(p.done)
	buf := make([]byte, 65536)
	for {
		n, from, err := p.pc.ReadFrom(buf)
		if err != nil {
			p.fail(err)
			return
		}
		p.received(append([]byte(nil), buf[:n]...), from.String())
	}
}

func (p *Phone) readStream(r io.Reader) {
	defer close(p.done)
	stream := p.parser.NewSIPStream()
	buf := make([]byte, 65536)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			perr := stream.ParseSIPStream(buf[:n], func(msg gosip.Message) { p.deliver(msg, p.server.String(), "") })
			if perr != nil && !errors.Is(perr, gosip.ErrParseSipPartial) {
				p.cfg.Trace.Printf("%s: unparsable stream data: %v", p.cfg.Name, perr)
				stream.Reset()
			}
		}
		if err != nil {
			p.fail(err)
			return
		}
	}
}

func (p *Phone) readWS() {
	defer close(p.done)
	for {
		data, op, err := wsutil.ReadServerData(p.wsrw)
		if err != nil {
			p.fail(err)
			return
		}
		if op == ws.OpText || op == ws.OpBinary {
			p.received(data, p.server.String())
		}
	}
}

func (p *Phone) fail(err error) {
	p.mu.Lock()
	p.readErr = err
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

func (p *Phone) received(data []byte, from string) {
	if len(strings.Trim(string(data), "\r\n")) == 0 {
		return // keep-alive
	}
	msg, err := p.parser.ParseSIP(data)
	if err != nil {
		p.cfg.Trace.Printf("%s received from %s unparsable data (%v):\n%s", p.cfg.Name, from, err, abbreviate(data))
		return
	}
	p.deliver(msg, from, string(data))
}

func (p *Phone) deliver(msg gosip.Message, from, raw string) {
	if raw == "" {
		raw = msg.String()
	}
	msg.SetSource(from)
	msg.SetTransport(strings.ToUpper(p.cfg.Transport))
	key := msgKey(msg)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seen[key] {
		p.dups++
		return
	}
	p.seen[key] = true
	p.cfg.Trace.Printf("%s (%s %s) received from %s:\n%s", p.cfg.Name, p.cfg.Transport, p.local, from, abbreviate([]byte(raw)))
	p.queue = append(p.queue, msg)
	close(p.changed)
	p.changed = make(chan struct{})
}

// msgKey identifies a message up to retransmission.
func msgKey(msg gosip.Message) string {
	var b strings.Builder
	switch m := msg.(type) {
	case *gosip.Request:
		b.WriteString(string(m.Method))
	case *gosip.Response:
		b.WriteString(strconv.Itoa(m.StatusCode))
		if to := m.To(); to != nil {
			t, _ := to.Params.Get("tag")
			b.WriteString("|" + t)
		}
	}
	for _, name := range []string{"Via", "CSeq", "Call-ID"} {
		if hs := msg.GetHeaders(name); len(hs) > 0 {
			b.WriteString("|" + hs[0].Value())
		}
	}
	return b.String()
}

// Match selects received messages.
type Match func(gosip.Message) bool

// Wait returns (and removes from the queue) the first message received that
// matches, waiting at most timeout (DefaultTimeout when 0). It fails the test
// when none arrives in time.
func (p *Phone) Wait(match Match, timeout time.Duration, what string) gosip.Message {
	p.t.Helper()
	msg, ok := p.TryWait(match, timeout)
	if !ok {
		p.t.Fatalf("phone %s: no %s within %s", p.cfg.Name, what, timeoutOr(timeout))
	}
	return msg
}

// TryWait is Wait that reports a timeout instead of failing.
func (p *Phone) TryWait(match Match, timeout time.Duration) (gosip.Message, bool) {
	timer := time.NewTimer(timeoutOr(timeout))
	defer timer.Stop()
	for {
		p.mu.Lock()
		for i, m := range p.queue {
			if match(m) {
				p.queue = append(p.queue[:i:i], p.queue[i+1:]...)
				p.mu.Unlock()
				return m, true
			}
		}
		ch := p.changed
		p.mu.Unlock()
		select {
		case <-ch:
		case <-timer.C:
			return nil, false
		}
	}
}

// Expect that nothing matching arrives for d (an absence, so it waits d).
func (p *Phone) ExpectNone(match Match, d time.Duration, what string) {
	p.t.Helper()
	if m, ok := p.TryWait(match, d); ok {
		p.t.Fatalf("phone %s: unexpected %s:\n%s", p.cfg.Name, what, m.String())
	}
}

func timeoutOr(d time.Duration) time.Duration {
	if d <= 0 {
		return DefaultTimeout
	}
	return d
}

// Drain removes every queued message and returns them.
func (p *Phone) Drain() []gosip.Message {
	p.mu.Lock()
	defer p.mu.Unlock()
	q := p.queue
	p.queue = nil
	return q
}

// ---- matchers

// IsRequest matches requests of method (any method when empty).
func IsRequest(method string) Match {
	return func(m gosip.Message) bool {
		r, ok := m.(*gosip.Request)
		return ok && (method == "" || string(r.Method) == method)
	}
}

// IsResponseTo matches responses to the request sent as m (same Call-ID and
// CSeq) whose status is in [min, max].
func IsResponseTo(m *Msg, min, max int) Match {
	callID, cseq := m.Get("Call-ID"), strings.Join(strings.Fields(m.Get("CSeq")), " ")
	return func(msg gosip.Message) bool {
		r, ok := msg.(*gosip.Response)
		if !ok || r.StatusCode < min || r.StatusCode > max {
			return false
		}
		return r.CallID() != nil && r.CallID().Value() == callID && r.CSeq() != nil && r.CSeq().Value() == cseq
	}
}

// And matches what every one of ms matches.
func And(ms ...Match) Match {
	return func(msg gosip.Message) bool {
		for _, m := range ms {
			if !m(msg) {
				return false
			}
		}
		return true
	}
}

// CallID matches messages of one call.
func CallID(id string) Match {
	return func(msg gosip.Message) bool {
		h := msg.CallID()
		return h != nil && h.Value() == id
	}
}

// WaitRequest waits for a request of method.
func (p *Phone) WaitRequest(method string) *gosip.Request {
	p.t.Helper()
	return p.Wait(IsRequest(method), 0, method+" request").(*gosip.Request)
}

// WaitFinal waits for the final response to m.
func (p *Phone) WaitFinal(m *Msg) *gosip.Response {
	p.t.Helper()
	return p.Wait(IsResponseTo(m, 200, 699), 0, "final response to "+m.Method()).(*gosip.Response)
}

// WaitFinalWithin is WaitFinal with a timeout.
func (p *Phone) WaitFinalWithin(m *Msg, d time.Duration) *gosip.Response {
	p.t.Helper()
	return p.Wait(IsResponseTo(m, 200, 699), d, "final response to "+m.Method()).(*gosip.Response)
}

// WaitResponse waits for a response to m with status in [min, max].
func (p *Phone) WaitResponse(m *Msg, min, max int) *gosip.Response {
	p.t.Helper()
	return p.Wait(IsResponseTo(m, min, max), 0, fmt.Sprintf("%d-%d response to %s", min, max, m.Method())).(*gosip.Response)
}

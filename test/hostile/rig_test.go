package hostile

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gosip "github.com/emiago/sipgo/sip"
	"go.uber.org/goleak"

	"github.com/switchboard/switchboard/internal/siptest"
	"github.com/switchboard/switchboard/test/internal/testbed"
)

// The users every switch under attack has. carol never registers.
var passwords = map[string]string{
	"alice": "alice-secret",
	"bob":   "bob-secret",
	"carol": "carol-secret",
}

// victim is a switchboard process under attack, on the shipped
// configuration with only addresses and ports changed (and whatever extra
// YAML a test gives), with the users of passwords.
type victim struct {
	*testbed.Server
	t   testing.TB
	tr  *siptest.Trace
	udp string // SIP over UDP, host:port
	tcp string // SIP over TCP, host:port
}

// startVictim starts the switch with extra YAML appended to its config.
func startVictim(t testing.TB, extra string) *victim {
	t.Helper()
	leakCheck(t)
	srv := testbed.StartServer(t, testbed.Binary(t), testbed.ServerConfig{Extra: extra})
	v := &victim{Server: srv, t: t, tr: siptest.NewTrace(t), udp: srv.Addr(t, "udp"), tcp: srv.Addr(t, "tcp")}
	var wg sync.WaitGroup
	errs := make(chan error, len(passwords))
	for u, pw := range passwords {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := srv.CLI(context.Background(), "user", "add", u, "--password", pw); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return v
}

// leakCheck fails t when goroutines started during it are still running
// after all of its cleanups (registered first, it runs last).
func leakCheck(t testing.TB) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		if err := goleak.Find(ignore); err != nil {
			t.Errorf("goroutines outlived the test: %v", err)
		}
	})
}

// server returns the SIP listener for transport ("udp" or "tcp").
func (v *victim) server(transport string) string {
	if transport == "tcp" {
		return v.tcp
	}
	return v.udp
}

// phone returns a legitimate phone of user on 127.0.0.1 over transport.
func (v *victim) phone(user, transport string) *siptest.Phone {
	v.t.Helper()
	return siptest.NewPhone(v.t, siptest.Config{
		Transport: transport, Server: v.server(transport), User: user, Password: passwords[user], Trace: v.tr,
	})
}

// registered returns a UDP phone of user on 127.0.0.1 that has registered.
func (v *victim) registered(user string) *siptest.Phone {
	v.t.Helper()
	p := v.phone(user, "udp")
	p.MustRegister()
	return p
}

// attacker returns a phone of sip:name@198.51.100.9 sending from the
// loopback address ip (127.0.0.2 and up) over transport.
func (v *victim) attacker(name, ip, transport string) *siptest.Phone {
	v.t.Helper()
	return siptest.NewPhone(v.t, siptest.Config{
		Transport: transport, Server: v.server(transport), Local: net.JoinHostPort(ip, "0"),
		User: name, Domain: Stranger, Name: name + "@" + ip + "/" + transport, Trace: v.tr,
	})
}

// attackerIP returns the i-th attacker source address, cycling through
// 127.0.0.2-127.0.0.254 (never 127.0.0.1, the legitimate clients').
func attackerIP(i int) string { return fmt.Sprintf("127.0.0.%d", 2+i%253) }

// rtpRange returns media.rtp_ports of the victim's config.
func (v *victim) rtpRange() (lo, hi int) {
	v.t.Helper()
	b, err := os.ReadFile(v.Config)
	if err != nil {
		v.t.Fatal(err)
	}
	m := regexp.MustCompile(`rtp_ports: (\d+)-(\d+)`).FindStringSubmatch(string(b))
	if m == nil {
		v.t.Fatalf("no rtp_ports in %s", v.Config)
	}
	lo, _ = strconv.Atoi(m[1])
	hi, _ = strconv.Atoi(m[2])
	return lo, hi
}

// metric returns a value from the victim's /metrics (served to loopback).
func (v *victim) metric(name string) (float64, error) {
	c := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	res, err := c.Get("http://" + v.Addr(v.t, "http") + "/metrics")
	if err != nil {
		return 0, fmt.Errorf("metrics: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("metrics: %s", res.Status)
	}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == name {
			return strconv.ParseFloat(f[1], 64)
		}
	}
	return 0, fmt.Errorf("metrics: no %s", name)
}

// procStatus returns a "kB" field of /proc/PID/status (VmRSS, VmHWM) in bytes.
func procStatus(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			f := strings.Fields(v)
			if len(f) == 0 {
				break
			}
			n, err := strconv.ParseInt(f[0], 10, 64)
			return n * 1024, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// cdrsWith returns the CDR rows whose call-id starts with prefix or whose
// caller contains sub (either may be empty to not match on it).
func cdrsWith(rows []testbed.CDR, prefix, sub string) []testbed.CDR {
	var out []testbed.CDR
	for _, r := range rows {
		if (prefix != "" && strings.HasPrefix(r["call-id"], prefix)) || (sub != "" && strings.Contains(r["caller"], sub)) {
			out = append(out, r)
		}
	}
	return out
}

// waitCDR polls `switchboard cdr list` until the row of callID satisfies
// cond, and returns every row then.
func (v *victim) waitCDR(callID, what string, cond func(testbed.CDR) bool) []testbed.CDR {
	v.t.Helper()
	var rows []testbed.CDR
	ok := testbed.Poll(15*time.Second, 100*time.Millisecond, func() bool {
		rows = v.CDRs(v.t)
		for _, r := range rows {
			if r["call-id"] == callID && cond(r) {
				return true
			}
		}
		return false
	})
	if !ok {
		v.t.Fatalf("cdr list: call %s not %s within 15s: %v", callID, what, rows)
	}
	return rows
}

// ---- a legitimate call

// call is an answered call between two phones through the switch.
type call struct {
	inv            *siptest.Msg    // the caller's INVITE as sent with credentials
	invite         *gosip.Request  // the INVITE as the callee got it
	ok             *gosip.Response // the 200 as the caller got it
	caller, callee *siptest.Dialog // each side's dialog
	from, to       *siptest.Phone  // caller and callee phones
	relayedSDP     string          // the SDP offer as the callee got it
	answerSDP      string          // the SDP answer as the caller got it
}

// sdp returns an audio offer or answer from p on port.
func sdp(p *siptest.Phone, port int) string {
	ip := p.Addr().Addr().String()
	return "v=0\r\no=- 1 1 IN IP4 " + ip + "\r\ns=-\r\nc=IN IP4 " + ip + "\r\nt=0 0\r\nm=audio " + strconv.Itoa(port) +
		" RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
}

// placeCall makes from call to (both registered): INVITE with proxy
// credentials, 180, 200, ACK relayed to the callee. It fails the test when
// any step does not happen.
func placeCall(t *testing.T, from, to *siptest.Phone) *call {
	t.Helper()
	m := from.Request("INVITE", "sip:"+to.User()+"@switchboard.local")
	m.Set("Content-Type", "application/sdp")
	m.Body = sdp(from, 40000)
	inv := from.SendAuthenticated(m)
	callID := inv.Get("Call-ID")
	req := to.Wait(siptest.And(siptest.IsRequest("INVITE"), siptest.CallID(callID)), 0, "the call's INVITE").(*gosip.Request)
	to.Reply(req, 180, "Ringing")
	from.WaitResponse(inv, 180, 180)
	replySDP(to, req, sdp(to, 40002))
	ok := from.WaitResponse(inv, 200, 200)
	c := &call{inv: inv, invite: req, ok: ok, from: from, to: to, relayedSDP: string(req.Body()), answerSDP: string(ok.Body())}
	c.caller = from.UACDialog(inv, ok)
	c.callee = to.UASDialog(req)
	from.Send(c.caller.Request("ACK"))
	to.Wait(siptest.And(siptest.IsRequest("ACK"), siptest.CallID(callID)), 0, "the call's ACK")
	return c
}

// replySDP answers the INVITE req that the UDP phone p got with a 200 OK
// carrying an SDP answer (siptest's Reply sends no body).
func replySDP(p *siptest.Phone, req *gosip.Request, body string) {
	res := gosip.NewResponseFromRequest(req, 200, "OK", []byte(body))
	if to := res.To(); to != nil && !to.Params.Has("tag") {
		to.Params.Add("tag", p.Tag(req.CallID().Value()))
	}
	res.AppendHeader(gosip.NewHeader("Contact", "<"+p.Contact()+">"))
	res.AppendHeader(gosip.NewHeader("Content-Type", "application/sdp"))
	p.SendTo(res.String(), req.Source())
}

// hangUp sends BYE from the caller and has the callee answer it.
func (c *call) hangUp(t *testing.T) {
	t.Helper()
	bye := c.caller.Request("BYE")
	c.from.Send(bye)
	b := c.to.Wait(siptest.And(siptest.IsRequest("BYE"), siptest.CallID(c.caller.CallID)), 0, "the call's BYE").(*gosip.Request)
	c.to.Reply(b, 200, "OK")
	if res := c.from.WaitFinal(bye); res.StatusCode != 200 {
		t.Fatalf("BYE got %d %s", res.StatusCode, res.Reason)
	}
}

// mediaPort returns the audio port of an SDP body, or 0.
func mediaPort(body string) int {
	m := regexp.MustCompile(`(?m)^m=audio (\d+) `).FindStringSubmatch(body)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// ---- the catcher: where a relayed request would arrive

// catcher is a UDP socket and a TCP listener on the same address and port
// of 127.0.0.X, owned by the test: anything the switch relays to that
// address arrives here. It answers every request but ACK with 200 OK, as an
// accomplice of the attacker would, so that a relayed request also comes
// back to the attacker quickly.
type catcher struct {
	addr string // host:port
	udp  net.PacketConn
	ln   net.Listener

	mu    sync.Mutex
	got   []gosip.Message
	raw   int // datagrams and stream reads received
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

// newCatcher binds a catcher on ip. It is closed when the test ends.
func newCatcher(t testing.TB, ip string) *catcher {
	t.Helper()
	c := &catcher{conns: map[net.Conn]bool{}}
	for range 50 {
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			t.Fatal(err)
		}
		pc, err := net.ListenPacket("udp", ln.Addr().String())
		if err != nil {
			ln.Close()
			continue // that port is taken for UDP; try another
		}
		c.ln, c.udp, c.addr = ln, pc, ln.Addr().String()
		break
	}
	if c.ln == nil {
		t.Fatalf("catcher: no port on %s free for both UDP and TCP", ip)
	}
	c.wg.Add(2)
	go c.readUDP()
	go c.accept()
	t.Cleanup(c.close)
	return c
}

func (c *catcher) close() {
	c.udp.Close()
	c.ln.Close()
	c.mu.Lock()
	for conn := range c.conns {
		conn.Close()
	}
	c.mu.Unlock()
	c.wg.Wait()
}

func (c *catcher) readUDP() {
	defer c.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, from, err := c.udp.ReadFrom(buf)
		if err != nil {
			return
		}
		msg := c.note(buf[:n])
		if res := answer(msg); res != nil {
			c.udp.WriteTo([]byte(res.String()), from)
		}
	}
}

func (c *catcher) accept() {
	defer c.wg.Done()
	for {
		conn, err := c.ln.Accept()
		if err != nil {
			return
		}
		c.mu.Lock()
		c.conns[conn] = true
		c.mu.Unlock()
		c.wg.Add(1)
		go c.readTCP(conn)
	}
}

func (c *catcher) readTCP(conn net.Conn) {
	defer c.wg.Done()
	defer conn.Close()
	stream := gosip.NewParser().NewSIPStream()
	buf := make([]byte, 65536)
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			c.mu.Lock()
			c.raw++
			c.mu.Unlock()
			perr := stream.ParseSIPStream(buf[:n], func(msg gosip.Message) {
				c.mu.Lock()
				c.got = append(c.got, msg)
				c.mu.Unlock()
				if res := answer(msg); res != nil {
					conn.Write([]byte(res.String()))
				}
			})
			if perr != nil && !errors.Is(perr, gosip.ErrParseSipPartial) {
				stream.Reset()
			}
		}
		if err != nil {
			return
		}
	}
}

// note records a datagram and returns it parsed (nil if it is not SIP).
func (c *catcher) note(b []byte) gosip.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.raw++
	msg, err := siptest.Parse(string(b))
	if err != nil {
		return nil
	}
	c.got = append(c.got, msg)
	return msg
}

// answer is the catcher's 200 OK to a request other than ACK.
func answer(msg gosip.Message) *gosip.Response {
	req, ok := msg.(*gosip.Request)
	if !ok || req.IsAck() {
		return nil
	}
	res := gosip.NewResponseFromRequest(req, 200, "OK", nil)
	if to := res.To(); to != nil && !to.Params.Has("tag") {
		to.Params.Add("tag", "catcher")
	}
	return res
}

// received returns what reached the catcher so far: the parsed messages and
// the number of datagrams and stream reads (parsable or not).
func (c *catcher) received() ([]gosip.Message, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]gosip.Message(nil), c.got...), c.raw
}

// quietFor waits until nothing has reached the catcher for d (at most
// limit), so that a request relayed late is seen too.
func (c *catcher) quietFor(d, limit time.Duration) {
	deadline := time.Now().Add(limit)
	_, last := c.received()
	since := time.Now()
	for time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		_, n := c.received()
		if n != last {
			last, since = n, time.Now()
			continue
		}
		if time.Since(since) >= d {
			return
		}
	}
}

// callIDOf returns the Call-ID of msg, or "".
func callIDOf(msg gosip.Message) string {
	if h := msg.CallID(); h != nil {
		return h.Value()
	}
	return ""
}

// firstLine returns the start line of a message.
func firstLine(msg gosip.Message) string {
	s, _, _ := strings.Cut(msg.String(), "\r\n")
	return s
}

// ---- raw UDP senders for floods

// udpSource is an attacker's UDP socket that counts the final responses it
// gets back, by status code. Its reader ends when it is closed.
type udpSource struct {
	pc    net.PacketConn
	mu    sync.Mutex
	got   map[int]int    // status code -> responses (retransmissions included)
	final map[string]int // Call-ID -> first final status code
	done  chan struct{}
}

// newUDPSources binds n attacker sockets on 127.0.0.first..first+n-1.
func newUDPSources(t testing.TB, first, n int) []*udpSource {
	t.Helper()
	out := make([]*udpSource, 0, n)
	for i := range n {
		pc, err := net.ListenPacket("udp", net.JoinHostPort(attackerIP(first-2+i), "0"))
		if err != nil {
			t.Fatal(err)
		}
		s := &udpSource{pc: pc, got: map[int]int{}, final: map[string]int{}, done: make(chan struct{})}
		go s.read()
		out = append(out, s)
	}
	t.Cleanup(func() {
		for _, s := range out {
			s.close()
		}
	})
	return out
}

func (s *udpSource) read() {
	defer close(s.done)
	buf := make([]byte, 65536)
	for {
		n, _, err := s.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		line, _, _ := strings.Cut(string(buf[:n]), "\r\n")
		if code, ok := strings.CutPrefix(line, "SIP/2.0 "); ok && len(code) >= 3 {
			if c, err := strconv.Atoi(code[:3]); err == nil {
				id := HeaderValue(string(buf[:n]), "Call-ID", "i")
				s.mu.Lock()
				s.got[c]++
				if _, seen := s.final[id]; !seen && c >= 200 && id != "" {
					s.final[id] = c
				}
				s.mu.Unlock()
			}
		}
	}
}

func (s *udpSource) close() {
	s.pc.Close()
	<-s.done
}

// finals returns the first final status per Call-ID over sources.
func finals(sources []*udpSource) map[string]int {
	out := map[string]int{}
	for _, s := range sources {
		s.mu.Lock()
		for k, v := range s.final {
			out[k] = v
		}
		s.mu.Unlock()
	}
	return out
}

// responses returns the counts by status code over sources.
func responses(sources []*udpSource) map[int]int {
	out := map[int]int{}
	for _, s := range sources {
		s.mu.Lock()
		for k, v := range s.got {
			out[k] += v
		}
		s.mu.Unlock()
	}
	return out
}

// blast sends n datagrams made by build(i) to dst at rate per second,
// round-robin over sources, and stops early when ctx ends. It returns how
// many it sent. It runs in the caller's goroutine.
func blast(ctx context.Context, sources []*udpSource, dst string, n, rate int, build func(i int, local net.Addr) []byte) int {
	ua, err := net.ResolveUDPAddr("udp", dst)
	if err != nil {
		return 0
	}
	start := time.Now()
	sent := 0
	for i := 0; i < n; i++ {
		if ctx.Err() != nil {
			break
		}
		// Pace: datagram i leaves at start + i/rate.
		if d := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))); d > 0 {
			time.Sleep(d)
		}
		s := sources[i%len(sources)]
		if _, err := s.pc.WriteTo(build(i, s.pc.LocalAddr()), ua); err == nil {
			sent++
		}
	}
	return sent
}

// ---- legitimate clients under load

// sendUDP sends m from the UDP phone p and waits for its final response,
// retransmitting as a phone does (RFC 3261 §17.1.2.2 Timer E: 500 ms,
// doubling) for at most limit. It returns nil when none came.
func sendUDP(p *siptest.Phone, m *siptest.Msg, limit time.Duration) *gosip.Response {
	deadline := time.Now().Add(limit)
	interval := 500 * time.Millisecond
	p.Send(m)
	for {
		wait := min(interval, time.Until(deadline))
		if wait <= 0 {
			return nil
		}
		if msg, ok := p.TryWait(siptest.IsResponseTo(m, 200, 699), wait); ok {
			return msg.(*gosip.Response)
		}
		if time.Now().After(deadline) {
			return nil
		}
		p.Send(m)
		interval = min(2*interval, 4*time.Second)
	}
}

// tryRegister registers the UDP phone p with digest authentication as a
// phone would, and returns the final status (0 when no answer came within
// 4 s for either request).
func tryRegister(p *siptest.Phone) int {
	m := p.Register(3600)
	res := sendUDP(p, m, 4*time.Second)
	if res != nil && res.StatusCode == 401 {
		res = sendUDP(p, p.Authenticate(m, res, "MD5"), 4*time.Second)
	}
	if res == nil {
		return 0
	}
	return res.StatusCode
}

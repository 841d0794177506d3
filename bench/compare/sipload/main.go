// Command sipload is bench/compare's SIP load generator (LOADGEN=go): the
// messages of the SIPp scenarios in test/interop/testdata, at a fraction of
// SIPp's CPU per call, so that on the one load core of this machine the
// server, not the generator, is the limit.
//
//	sipload -mode reg  -server A -domain D -rate N -count N -users N -port P
//	    REGISTER, 401, REGISTER with credentials, 200 (register.xml), for
//	    u000001..uN (password pw-NAME) in turn, from local port P.
//	sipload -mode call -server A -domain D -rate N -count N -caller U -callee U -hold MS
//	    INVITE, 407, ACK, INVITE with Proxy-Authorization, (100, 180), 200,
//	    ACK, hold, BYE, 200 (uac_invite_auth.xml).
//	sipload -mode uas  -server A -domain D -user U -port P
//	    registers U from port P (with digest), then answers every INVITE
//	    with 180 and 200 with SDP, retransmitted until the ACK, and every
//	    BYE with 200 (uas.xml); runs until killed or -for ends.
//
// The UAC modes start -rate operations per second until -count were
// started (at most -limit open at once), wait for them to end (each fails
// after 32 s without its final answer, like Timer B), and write one line to
// standard output:
//
//	ok=N failed=N unfinished=N retransmissions=N created=S mean_ms=N
//
// created is the time (s) it took to start them all; mean_ms the mean time
// from an operation's first request to its final 200 (for a call, the 200
// of the authenticated INVITE), SIPp's ResponseTime1. Requests are
// retransmitted after 500 ms, doubling up to 4 s, as SIPp's retrans="500"
// does; only the UAS's 200 to an INVITE is retransmitted on its side.
//
// One thread does everything (io_linux.go): it reads the socket in batches,
// handles each message, fires the timers, starts the operations due and
// sends what that produced in one batch; it is meant to run on one core
// (taskset), like SIPp.
package main

import (
	"bytes"
	"container/heap"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "sipload:", err)
		os.Exit(1)
	}
}

type options struct {
	mode, domain                string
	server                      netip.AddrPort
	rate, count, limit, users   int
	port                        int
	caller, callee, user        string
	hold, waitMax, runFor, tick time.Duration
}

func run() error {
	var o options
	var server string
	flag.StringVar(&o.mode, "mode", "reg", "reg, call or uas")
	flag.StringVar(&server, "server", "127.0.0.1:5060", "the server's UDP address")
	flag.StringVar(&o.domain, "domain", "switchboard.local", "the SIP domain (Request-URI, From, To, digest uri)")
	flag.IntVar(&o.rate, "rate", 100, "operations started per second (reg, call)")
	flag.IntVar(&o.count, "count", 1000, "operations to start (reg, call)")
	flag.IntVar(&o.limit, "limit", 0, "at most this many open at once (0: rate*4 for reg, rate*(hold+3s) for call)")
	flag.IntVar(&o.users, "users", 20000, "reg: users u000001..uN, in turn")
	flag.IntVar(&o.port, "port", 0, "local UDP port (0: any)")
	flag.StringVar(&o.caller, "caller", "u001001", "call: the calling user (password pw-NAME)")
	flag.StringVar(&o.callee, "callee", "u000002", "call: the user called")
	flag.StringVar(&o.user, "user", "u000002", "uas: the user registered and answering")
	flag.DurationVar(&o.hold, "hold", time.Second, "call: time from the ACK to the BYE")
	flag.DurationVar(&o.waitMax, "wait", 40*time.Second, "reg, call: how long to wait for the last operations after the last was started")
	flag.DurationVar(&o.runFor, "for", 0, "uas: stop after this long (0: when killed)")
	flag.DurationVar(&o.tick, "tick", time.Millisecond, "handle what arrived once per tick (0: wake for each datagram)")
	flag.Parse()
	ap, err := netip.ParseAddrPort(server)
	if err != nil {
		return fmt.Errorf("-server: %w", err)
	}
	o.server = ap
	if o.rate <= 0 || o.count <= 0 {
		return errors.New("-rate and -count must be positive")
	}
	if o.limit <= 0 {
		o.limit = o.rate * 4
		if o.mode == "call" {
			o.limit = int(float64(o.rate) * (o.hold.Seconds() + 3))
		}
	}
	s, err := openSock(o.port, o.server)
	if err != nil {
		return err
	}
	defer closeSock(s)
	g := newGen(o, s)
	switch o.mode {
	case "reg", "call":
		r := g.load()
		fmt.Printf("ok=%d failed=%d unfinished=%d retransmissions=%d created=%d mean_ms=%d\n",
			r.ok, r.failed, r.unfinished, r.retrans, r.created, r.meanMS)
		return nil
	case "uas":
		return g.serveUAS()
	}
	return fmt.Errorf("-mode %q: want reg, call or uas", o.mode)
}

// --- state ---------------------------------------------------------------------

type phase uint8

const (
	regFirst    phase = iota // REGISTER sent, waiting for the 401
	regAuthed                // REGISTER with credentials sent, waiting for the 200
	invFirst                 // INVITE sent, waiting for the 407
	invAuthed                // INVITE with credentials sent, waiting for the 200
	callHold                 // ACK sent, waiting to send the BYE
	callBye                  // BYE sent, waiting for its 200
	uasAnswered              // 200 sent, waiting for the ACK
	uasUp                    // ACKed, waiting for the BYE
	uasDone                  // BYE answered, absorbing retransmissions
)

// op is one registration, call, or answered call (UAS).
type op struct {
	callID  string
	user    string
	phase   phase
	n       int    // the operation's number (tags, branches)
	seq     uint32 // a timer is current when its seq is the op's
	started time.Time
	sent    time.Time // first send of the request being retransmitted
	every   time.Duration
	msg     []byte // the request (or UAS 200) being retransmitted
	branch  int    // branch counter
	// the dialog (call): the To with the callee's tag, the route set
	// (Route header lines), the remote target.
	to     []byte
	routes []byte
	target []byte
	ack    []byte // the ACK of the 407, then of the 200 (sent again when that answer is)
}

type timer struct {
	at   time.Time
	o    *op
	seq  uint32
	kind uint8
}

const (
	tRetrans uint8 = iota
	tBye
	tGiveUp // no final answer: failed
	tForget // UAS: stop absorbing retransmissions
)

type timers []timer

func (t timers) Len() int           { return len(t) }
func (t timers) Less(i, j int) bool { return t[i].at.Before(t[j].at) }
func (t timers) Swap(i, j int)      { t[i], t[j] = t[j], t[i] }
func (t *timers) Push(x any)        { *t = append(*t, x.(timer)) }
func (t *timers) Pop() any {
	old := *t
	x := old[len(old)-1]
	*t = old[:len(old)-1]
	return x
}

type gen struct {
	o      options
	s      *sock
	local  string // ip:port for Via and Contact
	pid    string
	ops    map[string]*op
	timers timers
	buf    []byte // message being built
	ha1    map[string]string
	// results
	ok, failed, retrans int
	open                int
	rtSum               time.Duration
	registered          bool // uas: its own registration succeeded
}

func newGen(o options, s *sock) *gen {
	return &gen{
		o: o, s: s, local: s.local.String(), pid: strconv.Itoa(os.Getpid()),
		ops: make(map[string]*op), ha1: make(map[string]string), buf: make([]byte, 0, 2048),
	}
}

func (g *gen) send(b []byte) { g.s.send(b) }

// handle takes one datagram from the server.
func (g *gen) handle(m []byte, now time.Time) {
	if bytes.HasPrefix(m, []byte("SIP/2.0 ")) {
		g.response(m, now)
	} else {
		g.requestIn(m, now)
	}
}

func (g *gen) arm(o *op, at time.Time, kind uint8) {
	heap.Push(&g.timers, timer{at: at, o: o, seq: o.seq, kind: kind})
}

// request sends o.msg now and from now on until answered (the 32 s
// Timer B/F).
func (g *gen) request(o *op, now time.Time) {
	o.seq++
	o.sent, o.every = now, 500*time.Millisecond
	g.send(o.msg)
	g.arm(o, now.Add(o.every), tRetrans)
	g.arm(o, now.Add(32*time.Second), tGiveUp)
}

// answered stops o's retransmissions (a final answer).
func (g *gen) answered(o *op) { o.seq++ }

// provisional stops the retransmissions of o's INVITE; it still fails 32 s
// after it was first sent without a final answer.
func (g *gen) provisional(o *op) {
	o.seq++
	g.arm(o, o.sent.Add(32*time.Second), tGiveUp)
}

func (g *gen) end(o *op, ok bool, now time.Time) {
	o.seq++
	delete(g.ops, o.callID)
	g.open--
	if ok {
		g.ok++
		return
	}
	g.failed++
}

// fire runs the timers due.
func (g *gen) fire(now time.Time) {
	for len(g.timers) > 0 && !g.timers[0].at.After(now) {
		t := heap.Pop(&g.timers).(timer)
		o := t.o
		if t.seq != o.seq {
			continue
		}
		switch t.kind {
		case tRetrans:
			g.retrans++
			g.send(o.msg)
			o.every = min(2*o.every, 4*time.Second)
			g.arm(o, now.Add(o.every), tRetrans)
		case tBye:
			g.bye(o, now)
		case tGiveUp:
			if o.phase >= uasAnswered {
				delete(g.ops, o.callID)
				continue
			}
			g.end(o, false, now)
		case tForget:
			delete(g.ops, o.callID)
		}
	}
}

// --- UAC -------------------------------------------------------------------------

type result struct {
	ok, failed, unfinished, retrans int
	created                         int
	meanMS                          int64
}

// load starts the operations at the rate and waits for them.
func (g *gen) load() result {
	start := time.Now()
	started := 0
	var last, deadline time.Time
	g.loop(func(now time.Time) bool {
		if started < g.o.count {
			due := min(g.o.count, int(now.Sub(start).Seconds()*float64(g.o.rate))+1)
			for started < due && g.open < g.o.limit {
				g.begin(started, now)
				started++
				last = now
			}
			if started == g.o.count {
				deadline = now.Add(g.o.waitMax)
			}
			return true
		}
		return g.open > 0 && now.Before(deadline)
	})
	r := result{ok: g.ok, failed: g.failed, unfinished: g.open, retrans: g.retrans,
		created: int(last.Sub(start).Seconds() + 0.999)}
	if g.ok > 0 {
		r.meanMS = int64(g.rtSum/time.Duration(g.ok)) / 1e6
	}
	return r
}

// begin starts operation n.
func (g *gen) begin(n int, now time.Time) {
	o := &op{n: n, started: now, callID: g.pid + "-" + strconv.Itoa(n) + "@sipload"}
	g.ops[o.callID] = o
	g.open++
	switch g.o.mode {
	case "reg":
		o.user = fmt.Sprintf("u%06d", n%g.o.users+1)
		o.phase = regFirst
		o.msg = g.register(o, 1, "")
	case "call":
		o.user = g.o.caller
		o.phase = invFirst
		o.msg = g.invite(o, 1, "")
	}
	g.request(o, now)
}

// branch is a new branch for o.
func (g *gen) branch(o *op) []byte {
	o.branch++
	g.buf = append(g.buf, "z9hG4bK"...)
	g.buf = append(g.buf, g.pid...)
	g.buf = append(g.buf, '-')
	g.buf = strconv.AppendInt(g.buf, int64(o.n), 10)
	g.buf = append(g.buf, '-')
	return strconv.AppendInt(g.buf, int64(o.branch), 10)
}

func (g *gen) via(o *op) {
	g.buf = append(g.buf, "Via: SIP/2.0/UDP "...)
	g.buf = append(g.buf, g.local...)
	g.buf = append(g.buf, ";branch="...)
	g.buf = g.branch(o)
	g.buf = append(g.buf, ";rport\r\nMax-Forwards: 70\r\n"...)
}

// aor appends sip:USER@DOMAIN.
func (g *gen) aor(user string) {
	g.buf = append(g.buf, "sip:"...)
	g.buf = append(g.buf, user...)
	g.buf = append(g.buf, '@')
	g.buf = append(g.buf, g.o.domain...)
}

// to appends a To header line without a tag.
func (g *gen) to(user string) {
	g.buf = append(g.buf, "To: <"...)
	g.aor(user)
	g.buf = append(g.buf, ">\r\n"...)
}

// cseq appends the CSeq header line.
func (g *gen) cseq(n int, method string) {
	g.buf = append(g.buf, "CSeq: "...)
	g.buf = strconv.AppendInt(g.buf, int64(n), 10)
	g.buf = append(g.buf, ' ')
	g.buf = append(g.buf, method...)
	g.buf = append(g.buf, "\r\n"...)
}

func (g *gen) from(o *op, kind string) {
	g.buf = append(g.buf, "From: <"...)
	g.aor(o.user)
	g.buf = append(g.buf, ">;tag="...)
	g.buf = append(g.buf, g.pid...)
	g.buf = append(g.buf, kind...)
	g.buf = strconv.AppendInt(g.buf, int64(o.n), 10)
	g.buf = append(g.buf, "\r\n"...)
}

func (g *gen) callID(o *op) {
	g.buf = append(g.buf, "Call-ID: "...)
	g.buf = append(g.buf, o.callID...)
	g.buf = append(g.buf, "\r\n"...)
}

func (g *gen) contact(user string) {
	g.buf = append(g.buf, "Contact: <sip:"...)
	if user != "" {
		g.buf = append(g.buf, user...)
		g.buf = append(g.buf, '@')
	}
	g.buf = append(g.buf, g.local...)
	g.buf = append(g.buf, ";transport=UDP>\r\n"...)
}

// done copies the message built.
func (g *gen) done() []byte {
	m := bytes.Clone(g.buf)
	g.buf = g.buf[:0]
	return m
}

func (g *gen) register(o *op, cseq int, auth string) []byte {
	g.buf = append(g.buf[:0], "REGISTER sip:"...)
	g.buf = append(g.buf, g.o.domain...)
	g.buf = append(g.buf, " SIP/2.0\r\n"...)
	g.via(o)
	g.from(o, "reg")
	g.to(o.user)
	g.callID(o)
	g.cseq(cseq, "REGISTER")
	g.contact(o.user)
	g.buf = append(g.buf, "Expires: 3600\r\n"...)
	g.buf = append(g.buf, auth...)
	g.buf = append(g.buf, "User-Agent: sipload\r\nContent-Length: 0\r\n\r\n"...)
	return g.done()
}

// sdpBody is the offer and the answer (the SIPp scenarios' SDP).
var sdpBody = []byte("v=0\r\no=sipload 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")

func (g *gen) invite(o *op, cseq int, auth string) []byte {
	g.buf = append(g.buf[:0], "INVITE "...)
	g.aor(g.o.callee)
	g.buf = append(g.buf, " SIP/2.0\r\n"...)
	g.via(o)
	g.from(o, "uac")
	g.to(g.o.callee)
	g.callID(o)
	g.cseq(cseq, "INVITE")
	g.contact(o.user)
	g.buf = append(g.buf, auth...)
	g.buf = append(g.buf, "User-Agent: sipload\r\nContent-Type: application/sdp\r\nContent-Length: "...)
	g.buf = strconv.AppendInt(g.buf, int64(len(sdpBody)), 10)
	g.buf = append(g.buf, "\r\n\r\n"...)
	g.buf = append(g.buf, sdpBody...)
	return g.done()
}

// inDialog builds the ACK (cseq 2) or the BYE (cseq 3) of o's dialog.
func (g *gen) inDialog(o *op, method string, cseq int) []byte {
	g.buf = append(g.buf[:0], method...)
	g.buf = append(g.buf, ' ')
	g.buf = append(g.buf, o.target...)
	g.buf = append(g.buf, " SIP/2.0\r\n"...)
	g.via(o)
	g.buf = append(g.buf, o.routes...)
	g.from(o, "uac")
	g.buf = append(g.buf, o.to...)
	g.callID(o)
	g.cseq(cseq, method)
	g.contact(o.user)
	g.buf = append(g.buf, "Content-Length: 0\r\n\r\n"...)
	return g.done()
}

// ackError is the ACK of a non-2xx answer to o's first INVITE (RFC 3261
// §17.1.1.3: the INVITE's branch, the To of the answer).
func (g *gen) ackError(o *op, req []byte, to []byte) []byte {
	g.buf = append(g.buf[:0], "ACK "...)
	g.aor(g.o.callee)
	g.buf = append(g.buf, " SIP/2.0\r\n"...)
	v := header(req, "Via", "v")
	g.buf = append(g.buf, "Via: "...)
	g.buf = append(g.buf, v...)
	g.buf = append(g.buf, "\r\nMax-Forwards: 70\r\n"...)
	g.from(o, "uac")
	g.buf = append(g.buf, "To: "...)
	g.buf = append(g.buf, to...)
	g.buf = append(g.buf, "\r\n"...)
	g.callID(o)
	g.cseq(1, "ACK")
	g.buf = append(g.buf, "Content-Length: 0\r\n\r\n"...)
	return g.done()
}

// response handles an answer to one of our requests.
func (g *gen) response(m []byte, now time.Time) {
	code := status(m)
	o := g.ops[string(header(m, "Call-ID", "i"))]
	if o == nil || code < 100 {
		return
	}
	n, method := cseq(m)
	switch o.phase {
	case regFirst, regAuthed:
		if o.phase == regFirst && (code == 401 || code == 407) {
			auth := g.authorization(o.user, "REGISTER", "sip:"+g.o.domain, m, code)
			if auth == "" {
				g.end(o, false, now)
				return
			}
			o.phase = regAuthed
			o.msg = g.register(o, 2, auth)
			g.request(o, now)
			return
		}
		if o.phase == regAuthed && n == 1 {
			return // the first REGISTER's answer again (it was retransmitted)
		}
		// A 2xx (to the first REGISTER too, from a registrar that does
		// not challenge) ends the registration.
		switch {
		case code >= 200 && code < 300:
			g.rtSum += now.Sub(o.started)
			if g.o.mode == "uas" {
				o.seq++
				delete(g.ops, o.callID)
				g.registered = true
				return
			}
			g.end(o, true, now)
		case code >= 300:
			g.end(o, false, now)
		}
	case invFirst:
		switch {
		case code < 200:
			g.provisional(o)
		case code == 407 || code == 401:
			if method == "INVITE" {
				o.ack = g.ackError(o, o.msg, header(m, "To", "t"))
				g.send(o.ack)
			}
			auth := g.authorization(o.user, "INVITE", "sip:"+g.o.callee+"@"+g.o.domain, m, code)
			if auth == "" {
				g.end(o, false, now)
				return
			}
			o.phase = invAuthed
			o.msg = g.invite(o, 2, auth)
			g.request(o, now)
		default:
			g.end(o, false, now)
		}
	case invAuthed:
		if method != "INVITE" || n != 2 {
			if (code == 407 || code == 401) && o.ack != nil {
				// The first INVITE's answer again: its ACK again (o.msg
				// is the second INVITE now, with another branch).
				g.send(o.ack)
			}
			return
		}
		switch {
		case code < 200:
			g.provisional(o)
		case code < 300:
			g.answered(o)
			g.rtSum += now.Sub(o.started)
			g.dialog(o, m)
			o.ack = g.inDialog(o, "ACK", 2)
			g.send(o.ack)
			o.phase = callHold
			g.arm(o, now.Add(g.o.hold), tBye)
		default:
			g.end(o, false, now)
		}
	case callHold, callBye:
		if method == "INVITE" && n == 2 && code >= 200 && code < 300 {
			g.send(o.ack) // §13.2.2.4: the 2xx was retransmitted
			return
		}
		if o.phase == callBye && method == "BYE" && code >= 200 {
			g.end(o, code < 300, now)
		}
	}
}

// dialog takes the To, route set and remote target from the 200.
func (g *gen) dialog(o *op, m []byte) {
	o.to = append(append(append([]byte(nil), "To: "...), header(m, "To", "t")...), "\r\n"...)
	// The route set is the Record-Route in reverse (RFC 3261 §12.1.2).
	var rr [][]byte
	each(m, func(name, value []byte) {
		if bytes.EqualFold(name, []byte("Record-Route")) {
			rr = append(rr, splitComma(value)...)
		}
	})
	o.routes = nil
	for i := len(rr) - 1; i >= 0; i-- {
		o.routes = append(o.routes, "Route: "...)
		o.routes = append(o.routes, rr[i]...)
		o.routes = append(o.routes, "\r\n"...)
	}
	o.target = append([]byte(nil), uriOf(header(m, "Contact", "m"))...)
}

// bye sends the BYE of a held call.
func (g *gen) bye(o *op, now time.Time) {
	o.phase = callBye
	o.msg = g.inDialog(o, "BYE", 3)
	g.request(o, now)
}

// --- UAS -------------------------------------------------------------------------

// serveUAS registers the UAS's user and answers calls until -for ends.
func (g *gen) serveUAS() error {
	start := time.Now()
	o := &op{n: 0, started: start, user: g.o.user, phase: regFirst, callID: g.pid + "-uas@sipload"}
	g.ops[o.callID] = o
	o.msg = g.register(o, 1, "")
	g.request(o, start)
	var err error
	announced := false
	g.loop(func(now time.Time) bool {
		switch {
		case g.registered && !announced:
			fmt.Println("registered", g.o.user, "at", g.local)
			announced = true
		case !g.registered && (g.failed > 0 || now.Sub(start) > 10*time.Second):
			err = fmt.Errorf("%s: not registered", g.o.user)
			return false
		}
		return g.o.runFor == 0 || now.Sub(start) < g.o.runFor
	})
	return err
}

// requestIn handles a request: the UAS's INVITE, ACK and BYE.
func (g *gen) requestIn(m []byte, now time.Time) {
	sp := bytes.IndexByte(m, ' ')
	if sp < 0 {
		return
	}
	method := string(m[:sp])
	id := string(header(m, "Call-ID", "i"))
	o := g.ops[id]
	switch method {
	case "INVITE":
		if o != nil {
			if o.msg != nil {
				g.send(o.msg) // a retransmitted INVITE: the 200 again
			}
			return
		}
		o = &op{callID: id, phase: uasAnswered, n: g.ok + g.failed}
		g.ok++ // answered calls (uas)
		g.ops[id] = o
		g.send(g.answer(m, 180, o.n, false))
		o.msg = g.answer(m, 200, o.n, true)
		g.request(o, now)
	case "ACK":
		if o != nil && o.phase == uasAnswered {
			g.answered(o)
			o.phase = uasUp
			o.msg = nil
		}
	case "BYE":
		g.send(g.answer(m, 200, 0, false))
		if o != nil && o.phase != uasDone {
			o.seq++
			o.phase = uasDone
			g.arm(o, now.Add(2*time.Second), tForget)
		}
	default:
		// OPTIONS keep-alives and the like: 200.
		g.send(g.answer(m, 200, 0, false))
	}
}

// answer builds a response to req: 180 or 200 of an INVITE (tagged, with
// the Record-Route and a Contact; the 200 with SDP) or a plain 200.
func (g *gen) answer(req []byte, code int, n int, sdp bool) []byte {
	invite := bytes.HasPrefix(req, []byte("INVITE "))
	g.buf = append(g.buf[:0], "SIP/2.0 "...)
	switch code {
	case 180:
		g.buf = append(g.buf, "180 Ringing\r\n"...)
	default:
		g.buf = append(g.buf, "200 OK\r\n"...)
	}
	each(req, func(name, value []byte) {
		switch {
		case eqName(name, "Via", "v"), eqName(name, "From", "f"), eqName(name, "Call-ID", "i"),
			eqName(name, "CSeq", ""), invite && eqName(name, "Record-Route", ""):
		case eqName(name, "To", "t"):
			g.buf = append(g.buf, "To: "...)
			g.buf = append(g.buf, value...)
			if invite && !bytes.Contains(value, []byte(";tag=")) {
				g.buf = append(g.buf, ";tag="...)
				g.buf = append(g.buf, g.pid...)
				g.buf = append(g.buf, "uas"...)
				g.buf = strconv.AppendInt(g.buf, int64(n), 10)
			}
			g.buf = append(g.buf, "\r\n"...)
			return
		default:
			return
		}
		g.buf = append(g.buf, name...)
		g.buf = append(g.buf, ": "...)
		g.buf = append(g.buf, value...)
		g.buf = append(g.buf, "\r\n"...)
	})
	if invite {
		g.contact("")
	}
	if sdp {
		g.buf = append(g.buf, "Content-Type: application/sdp\r\nContent-Length: "...)
		g.buf = strconv.AppendInt(g.buf, int64(len(sdpBody)), 10)
		g.buf = append(g.buf, "\r\n\r\n"...)
		g.buf = append(g.buf, sdpBody...)
	} else {
		g.buf = append(g.buf, "Content-Length: 0\r\n\r\n"...)
	}
	return g.done()
}

// --- digest (RFC 2617 / RFC 3261 §22) ------------------------------------------------

// authorization is the Authorization (401) or Proxy-Authorization (407)
// header line answering the challenge in m, or "" when there is none.
func (g *gen) authorization(user, method, uri string, m []byte, code int) string {
	name, hname := "WWW-Authenticate", "Authorization"
	if code == 407 {
		name, hname = "Proxy-Authenticate", "Proxy-Authorization"
	}
	ch := header(m, name, "")
	if !bytes.HasPrefix(bytes.ToLower(ch), []byte("digest ")) {
		return ""
	}
	p := digestParams(ch[len("digest "):])
	realm, nonce := p["realm"], p["nonce"]
	if nonce == "" {
		return ""
	}
	key := user + "\x00" + realm
	ha1, ok := g.ha1[key]
	if !ok {
		ha1 = md5hex(user + ":" + realm + ":pw-" + user)
		g.ha1[key] = ha1
	}
	var resp, extra string
	if qopAuth(p["qop"]) {
		cnonce := strconv.FormatInt(time.Now().UnixNano(), 36)
		resp = digestResponse(ha1, nonce, "00000001", cnonce, "auth", method, uri)
		extra = `,qop=auth,nc=00000001,cnonce="` + cnonce + `"`
	} else {
		resp = digestResponse(ha1, nonce, "", "", "", method, uri)
	}
	if op, ok := p["opaque"]; ok {
		extra += `,opaque="` + op + `"`
	}
	return hname + `: Digest username="` + user + `",realm="` + realm + `",nonce="` + nonce +
		`",uri="` + uri + `",response="` + resp + `",algorithm=MD5` + extra + "\r\n"
}

// digestResponse is RFC 2617 §3.2.2.1's request-digest for MD5 (qop
// "auth", or none when qop is empty).
func digestResponse(ha1, nonce, nc, cnonce, qop, method, uri string) string {
	ha2 := md5hex(method + ":" + uri)
	if qop == "" {
		return md5hex(ha1 + ":" + nonce + ":" + ha2)
	}
	return md5hex(ha1 + ":" + nonce + ":" + nc + ":" + cnonce + ":" + qop + ":" + ha2)
}

func qopAuth(q string) bool {
	for _, v := range splitComma([]byte(q)) {
		if string(v) == "auth" {
			return true
		}
	}
	return false
}

func md5hex(s string) string {
	h := md5.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}

// digestParams parses a challenge's name=value list (values quoted or not).
func digestParams(b []byte) map[string]string {
	p := make(map[string]string, 6)
	for len(b) > 0 {
		b = bytes.TrimLeft(b, " \t,")
		eq := bytes.IndexByte(b, '=')
		if eq < 0 {
			break
		}
		name := string(bytes.ToLower(bytes.TrimSpace(b[:eq])))
		b = bytes.TrimLeft(b[eq+1:], " \t")
		var v []byte
		if len(b) > 0 && b[0] == '"' {
			end := bytes.IndexByte(b[1:], '"')
			if end < 0 {
				break
			}
			v, b = b[1:1+end], b[2+end:]
		} else {
			end := bytes.IndexByte(b, ',')
			if end < 0 {
				end = len(b)
			}
			v, b = bytes.TrimSpace(b[:end]), b[end:]
		}
		p[name] = string(v)
	}
	return p
}

// --- scanning --------------------------------------------------------------------

// each calls f with every header's name and value, up to the empty line
// (folded lines are not joined: none of the servers here folds).
func each(m []byte, f func(name, value []byte)) {
	i := bytes.Index(m, []byte("\r\n"))
	if i < 0 {
		return
	}
	m = m[i+2:]
	for len(m) > 0 {
		e := bytes.Index(m, []byte("\r\n"))
		if e < 0 {
			e = len(m)
		}
		line := m[:e]
		if e+2 <= len(m) {
			m = m[e+2:]
		} else {
			m = nil
		}
		if len(line) == 0 {
			return
		}
		c := bytes.IndexByte(line, ':')
		if c <= 0 {
			continue
		}
		f(bytes.TrimSpace(line[:c]), bytes.TrimSpace(line[c+1:]))
	}
}

func eqName(name []byte, long, short string) bool {
	return bytes.EqualFold(name, []byte(long)) || short != "" && bytes.EqualFold(name, []byte(short))
}

// header is the value of the first header called long (or short).
func header(m []byte, long, short string) []byte {
	var v []byte
	found := false
	each(m, func(name, value []byte) {
		if !found && eqName(name, long, short) {
			v, found = value, true
		}
	})
	return v
}

// status is a response's status code (0 when it is not one).
func status(m []byte) int {
	if len(m) < 12 {
		return 0
	}
	n, err := strconv.Atoi(string(m[8:11]))
	if err != nil {
		return 0
	}
	return n
}

// cseq is the CSeq's number and method.
func cseq(m []byte) (uint32, string) {
	v := header(m, "CSeq", "")
	sp := bytes.IndexByte(v, ' ')
	if sp < 0 {
		return 0, ""
	}
	n, _ := strconv.ParseUint(string(v[:sp]), 10, 32)
	return uint32(n), string(bytes.TrimSpace(v[sp+1:]))
}

// splitComma splits a header value at the commas outside <> and quotes.
func splitComma(v []byte) [][]byte {
	var out [][]byte
	depth, quoted, start := 0, false, 0
	for i, c := range v {
		switch {
		case c == '"':
			quoted = !quoted
		case quoted:
		case c == '<':
			depth++
		case c == '>':
			depth--
		case c == ',' && depth == 0:
			out = append(out, bytes.TrimSpace(v[start:i]))
			start = i + 1
		}
	}
	if s := bytes.TrimSpace(v[start:]); len(s) > 0 {
		out = append(out, s)
	}
	return out
}

// uriOf is the URI of a name-addr (<...>) or addr-spec.
func uriOf(v []byte) []byte {
	if i := bytes.IndexByte(v, '<'); i >= 0 {
		if j := bytes.IndexByte(v[i:], '>'); j > 0 {
			return v[i+1 : i+j]
		}
	}
	if i := bytes.IndexByte(v, ';'); i >= 0 {
		return v[:i]
	}
	return v
}

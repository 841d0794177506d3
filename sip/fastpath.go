package sip

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash/maphash"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gosip "github.com/emiago/sipgo/sip"

	"github.com/switchboard/switchboard/internal/siphdr"
	"github.com/switchboard/switchboard/internal/sipstatus"
)

// The REGISTER fast path. A REGISTER over UDP is answered statelessly
// (RFC 3261 §16.11 allows a stateless answer; Kamailio's sl_send_reply does
// it): a retransmission is simply processed again, which the registrar
// handles. It therefore needs nothing of sipgo's transaction layer, which
// would still create a server transaction (FSM, timers, key, connection
// reference) and a goroutine per datagram, only to terminate it at once.
// So such datagrams are taken in the UDP read filter (Server.readFilter,
// before sipgo sees them), parsed there, and handed to a fixed pool of
// workers whose stacks are already grown; a worker validates, registers
// and writes the response from the listener socket the request came to.
//
// The queue to the workers bounds the memory and the latency of what is
// waiting: when it is full the REGISTER is refused at once with 503 and
// Retry-After (RFC 3261 §21.5.4), which costs a parse and a write, instead
// of growing (the transaction cap, Config.MaxTransactions, does the same
// for requests through sipgo).
//
// The same path challenges initial INVITEs: one without credentials from a
// user of ours is answered 407 whatever else it says (route's identify
// comes before anything that needs a transaction), so the fast path sends
// that 407 statelessly too, as Kamailio's auth_challenge does with sl, and
// absorbs its ACK in the read filter (absorbAck). A call thus costs sipgo
// one server transaction less, and two goroutines and parses less.
//
// REGISTERs that are not for the plain stateless case (a To tag: sipgo and
// route handle them as in-dialog requests), INVITEs with credentials or
// from strangers and trunks, go to sipgo as before; so does everything over
// TCP, TLS and WebSocket, where a binding is tied to its connection.

const (
	// fastQueue is the number of parsed REGISTERs that may wait for a
	// worker: at 10,000/s 0.4 s of work, ~3 KiB each (12 MiB at most).
	fastQueue = 4096
	// fastRetryAfter is the Retry-After (seconds) of the 503 sent when the
	// queue is full.
	fastRetryAfter = "5"
)

// completedTxTime is how long a completed UDP server transaction absorbs
// retransmissions (sipgo's Timer J and Timer L; see New).
const completedTxTime = 5 * time.Second

// fastPath is the worker pool of the REGISTER fast path.
type fastPath struct {
	s      *Server
	parser *gosip.Parser
	queue  chan fastJob
	ctx    context.Context // ends when the server closes
	bufs   sync.Pool       // *bytes.Buffer for responses
	seed   maphash.Seed    // of the To tags (statelessTag)

	// raw counts the requests challenged (rawChallenge), registered
	// (registerRaw) or absorbed (absorbAck) from their bytes;
	// noRaw, set by tests, sends them through the parsed path instead.
	raw   atomic.Int64
	noRaw atomic.Bool
	// dialog counts the ACKs and BYEs forwarded statelessly, and the
	// responses to those BYEs taken from the read loop
	// (statelessdialog.go).
	dialog atomic.Int64
}

// fastJob is one parsed REGISTER and the socket it came to.
type fastJob struct {
	req    *gosip.Request
	local  net.Addr
	remote net.Addr
	// raw, instead of req, is a REGISTER with credentials read from its
	// bytes (rawRegister, registerRaw).
	raw *rawJob
	// dlg, instead of req, is an ACK or a BYE read from its bytes
	// (rawindialog.go).
	dlg *rawDialogJob
}

// fastWorkers is the size of the worker pool: enough that a worker waiting
// on the database (a user not cached yet) does not idle the CPUs.
func fastWorkers() int { return max(4, 2*runtime.GOMAXPROCS(0)) }

// startFastPathLocked starts the workers, owned by the server until Close
// (s.mu held, before the read loops start: readFilter reads s.fast
// without a lock).
func (s *Server) startFastPathLocked() {
	ctx, cancel := context.WithCancel(context.Background())
	s.closers = append(s.closers, func() error { cancel(); return nil })
	parser := gosip.NewParser()
	parser.MaxMessageLength = s.cfg.MaxMessageSize
	f := &fastPath{s: s, parser: parser, queue: make(chan fastJob, fastQueue), ctx: ctx}
	f.bufs.New = func() any { return new(bytes.Buffer) }
	f.seed = maphash.MakeSeed()
	for range fastWorkers() {
		s.untilCloseLocked(f.work)
	}
	s.fast = f
}

// take handles a UDP datagram that starts like a REGISTER, like an
// initial INVITE to be challenged, or like the ACK of such a challenge, and
// reports whether it did (false: sipgo is to handle it). It runs on the
// read loop; data is the loop's buffer, which the parser copies.
func (f *fastPath) take(local, remote net.Addr, data []byte) bool {
	switch {
	case bytes.HasPrefix(data, []byte("REGISTER ")):
		if f.rawChallenge(local, remote, data, gosip.REGISTER) {
			return true
		}
	case bytes.HasPrefix(data, []byte("INVITE ")):
		// Only an INVITE without credentials: its answer is a challenge
		// whatever else it says (see challenged).
		if hasHeader(data, "Proxy-Authorization") {
			return false
		}
		if f.rawChallenge(local, remote, data, gosip.INVITE) {
			return true
		}
	case bytes.HasPrefix(data, []byte("ACK ")):
		if f.absorbAck(data) {
			return true
		}
		return f.takeInDialog(local, remote, data, gosip.ACK)
	case bytes.HasPrefix(data, []byte("BYE ")):
		return f.takeInDialog(local, remote, data, gosip.BYE)
	case bytes.HasPrefix(data, []byte("SIP/2.0 ")):
		return f.takeResponse(remote, data) || f.takeBranchResponse(remote, data)
	default:
		return false
	}
	req := f.parseRequest(data)
	if req == nil || isInDialog(req) || req.IsInvite() && !f.challenged(req, remote) {
		return false
	}
	j := newFastJob(req, local, remote)
	if f.s.txLive.Load() <= int64(f.s.cfg.MaxTransactions) {
		select {
		case f.queue <- j:
			return true
		default:
		}
	}
	// The queue is full, or the switch is at its transaction cap (where
	// handle refuses every new request too).
	f.overloaded(j)
	return true
}

// parseRequest parses a datagram with the fast path's parser: the request,
// or nil when it is not one (sipgo then parses it again and counts it as
// malformed).
func (f *fastPath) parseRequest(data []byte) *gosip.Request {
	msg, err := f.parser.ParseSIP(data)
	if err != nil {
		return nil
	}
	req, _ := msg.(*gosip.Request)
	return req
}

// newFastJob is the job of req, read over UDP from remote at local.
func newFastJob(req *gosip.Request, local, remote net.Addr) fastJob {
	req.SetTransport("UDP")
	req.SetSource(remote.String())
	req.SetDestination(local.String())
	return fastJob{req: req, local: local, remote: remote}
}

// overloaded counts j's request as refused for overload and answers it
// 503 with Retry-After (RFC 3261 §21.5.4).
func (f *fastPath) overloaded(j fastJob) {
	f.s.Stats.Requests.Add(1)
	f.s.Stats.Overload.Add(1)
	f.respond(j, sipstatus.Response(j.req, status(503, "Service Unavailable", errOverload,
		gosip.NewHeader("Retry-After", fastRetryAfter))))
}

// challenged reports whether route would answer req, an initial INVITE
// without Proxy-Authorization, with identify's challenge (407, or 403 for
// a banned source) before anything else: it claims to be from one of our
// users (RFC 3261 §22.3), it is not a trunk's (whose calls are known by
// their source), and the switch is not draining (503 comes first). Such
// a challenge is answered statelessly, like Kamailio's auth_challenge with
// sl: no sipgo server transaction, no goroutine, and the ACK of the 407
// absorbed in the read filter (absorbAck). A retransmission of the INVITE
// is simply challenged again.
func (f *fastPath) challenged(req *gosip.Request, remote net.Addr) bool {
	from := req.From()
	return from != nil && f.challengedFrom(from.Address.Host, addrPortOfNet(remote))
}

// challengedFrom is challenged for an INVITE over UDP whose From names
// fromHost, from src.
func (f *fastPath) challengedFrom(fromHost string, src netip.AddrPort) bool {
	s := f.s
	if s.draining.Load() || !s.isLocalHost(fromHost) {
		return false
	}
	return s.carrierAt(src, "UDP") == ""
}

// absorbAck drops the ACK of a stateless challenge (RFC 3261 §17.1.1.3:
// the ACK of a non-2xx final response has the INVITE's Call-ID, From tag,
// CSeq number and top Via branch, and the response's To tag): its To tag
// is the one challenge gave that INVITE (statelessTag). Any other ACK
// goes to sipgo.
func (f *fastPath) absorbAck(data []byte) bool {
	// Most ACKs acknowledge a 2xx and go to sipgo: they are only parsed
	// here when their To header could carry a stateless tag (a UAC copies
	// the tag as it got it).
	if to, ok := headerValue(data, "To", "t"); !ok || !bytes.Contains(to, []byte(statelessTagPrefix)) {
		return false
	}
	// Read from the bytes (rawchallenge.go) when it reads plainly, as the
	// challenge itself was; parsed by sipgo otherwise.
	if r := new(rawRequest); readRequest(r, data, gosip.ACK) && !r.auth {
		id := r.id
		id.Method = string(gosip.INVITE)
		if r.toTag != statelessTagFor(id.Sum(f.seed)) {
			return false
		}
		f.raw.Add(1)
		f.s.Stats.Requests.Add(1)
		return true
	}
	req := f.parseRequest(data)
	if req == nil {
		return false
	}
	to := req.To()
	if to == nil {
		return false
	}
	tag, ok := to.Params.Get("tag")
	if !ok || !strings.HasPrefix(tag, statelessTagPrefix) || tag != f.statelessTagOf(req, gosip.INVITE) {
		return false
	}
	f.s.Stats.Requests.Add(1)
	return true
}

// hasHeader reports whether the header section of a SIP message has a
// header of that name (compared without case), without parsing it.
func hasHeader(data []byte, name string) bool {
	_, ok := headerValue(data, name)
	return ok
}

// headerValue returns the value of the first header of the message's
// header section with one of the names (compared without case: give a
// compact form too where there is one), without parsing the message.
func headerValue(data []byte, names ...string) ([]byte, bool) {
	_, rest, _ := bytes.Cut(data, []byte("\n")) // the start line
	for len(rest) > 0 {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte("\n"))
		if len(line) == 0 || line[0] == '\r' {
			return nil, false // the end of the headers
		}
		for _, name := range names {
			if len(line) <= len(name) || !bytes.EqualFold(line[:len(name)], []byte(name)) {
				continue
			}
			if c := line[len(name)]; c == ':' || c == ' ' || c == '\t' {
				_, v, _ := bytes.Cut(line[len(name):], []byte(":"))
				return bytes.TrimSpace(v), true
			}
		}
	}
	return nil, false
}

// work is one worker's loop.
func (f *fastPath) work(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case j := <-f.queue:
			if j.raw != nil {
				f.registerRaw(j)
				continue
			}
			if j.dlg != nil {
				f.inDialogRaw(j)
				continue
			}
			switch j.req.Method {
			case gosip.ACK:
				f.ack(j)
			case gosip.BYE:
				f.bye(j)
			default:
				f.register(j)
			}
		}
	}
}

// register does for one REGISTER, or one INVITE to challenge, what handle
// and route do for the others.
func (f *fastPath) register(j fastJob) {
	s, req := f.s, j.req
	s.Stats.Requests.Add(1)
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	res, err := f.answer(j)
	if err != nil {
		s.Stats.Refused.Add(1)
		res = sipstatus.Response(req, err)
		lvl := slog.LevelDebug
		if res.StatusCode >= 500 {
			lvl = slog.LevelWarn
		}
		s.log.Log(f.ctx, lvl, "request refused", "method", string(req.Method), "status", res.StatusCode,
			"source", req.Source(), "error", err)
	}
	f.respond(j, res)
}

// answer is route's REGISTER case, or its challenge of an initial INVITE
// (take checked that route would get to identify and that the request has
// no credentials): the response to send, or the error to answer with.
func (f *fastPath) answer(j fastJob) (*gosip.Response, error) {
	s, req := f.s, j.req
	if err := s.validate(req); err != nil {
		return nil, err
	}
	s.popOwnRoutes(req)
	if req.IsInvite() {
		_, err := s.identify(f.ctx, req, addrPortOfNet(j.remote))
		if err == nil {
			// Without credentials identify cannot succeed; were that to
			// change, the call could not go on from here.
			err = status(500, "Server Internal Error", errors.New("fast path: an INVITE without credentials was authorized"))
		}
		return nil, err
	}
	if !s.isLocalURI(req.Recipient) {
		return nil, status(403, "Forbidden", errors.New("not our domain: "+req.Recipient.Host))
	}
	return s.reg.Register(f.ctx, req)
}

// respond writes res from the listener socket the request came to, to the
// address it came from (RFC 3261 §18.2.2 with RFC 3581: a UDP response
// goes where the request came from), and tells the Observer. The response
// gets a To tag derived from the request (see statelessTag) unless the
// request had one (in a dialog, the response keeps it), so that the
// answer to a retransmission is the same message.
func (f *fastPath) respond(j fastJob, res *gosip.Response) {
	if to := res.To(); to != nil && res.StatusCode > 100 && !isInDialog(j.req) {
		to.Params.Add("tag", f.statelessTag(j.req))
	}
	buf := f.bufs.Get().(*bytes.Buffer)
	defer f.bufs.Put(buf)
	buf.Reset()
	res.StringWrite(buf)
	f.send(j.local, j.remote, buf.Bytes(), string(j.req.Method), res.StatusCode)
}

// send writes a stateless answer to a request of method from the listener
// socket local to remote, and tells the Observer. It is written on the
// socket itself rather than through sipgo's UDPConnection.WriteTo, whose
// only addition is sipgo's wire hook: the Observer is told here, with the
// method, so that the console's trace store passes over the answer to a
// REGISTER without reading its headers for the CSeq.
func (f *fastPath) send(local, remote net.Addr, data []byte, method string, status int) {
	f.sendFrom(local.String(), remote, data, method, status)
}

// sendFrom is send from the UDP listener at laddr: written on the
// listener itself (sipgo's GetConnection, which found it before, logs
// its arguments at debug level whether or not that is on: two
// allocations per send; docs/upstream/sipgo-getconnection-debug.md).
func (f *fastPath) sendFrom(laddr string, remote net.Addr, data []byte, method string, status int) {
	pc, ok := f.s.udpSockets[laddr]
	if !ok {
		f.s.log.Debug("response not sent", "status", status, "error", "no UDP listener at "+laddr)
		return
	}
	if a, ok := remote.(*net.UDPAddr); ok {
		// With its text from the listener's table of peers: the
		// console's trace asks for it (3 allocations to format).
		// (Unmapped, as the table's keys are: rawUDP reads them so.)
		ap := a.AddrPort()
		remote = pc.source(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
	}
	if _, err := pc.WriteTo(data, remote); err != nil {
		f.s.log.Debug("response not sent", "status", status, "error", err)
		return
	}
	f.s.observeSent(laddr, remote, data, method)
}

// statelessTag is the To tag of a stateless response to req: a keyed hash
// of what identifies the request (Call-ID, From tag, CSeq, top Via branch),
// so that every answer to one request carries the same tag (RFC 3261
// §8.2.6.2) and a retransmitted request gets the same response, while tags
// differ between requests (§19.3). The key is the process's random
// maphash seed: tags are not predictable from outside, and a restart only
// means that a retransmission across it gets another tag, which a UAC
// ignores once it has a final response. (It was an HMAC-SHA256 keyed with
// the server's secret: 2.7 % of the CPU of a registration for a value
// that needs no cryptographic strength; Kamailio's sl module uses a fixed
// prefix and a CRC of the request.)
func (f *fastPath) statelessTag(req *gosip.Request) string {
	return f.statelessTagOf(req, "")
}

// statelessTagPrefix starts every statelessTag.
const statelessTagPrefix = "sb"

// statelessTagOf is statelessTag with method for the CSeq's method (""
// keeps the CSeq's): the tag of the response to the INVITE an ACK
// acknowledges.
func (f *fastPath) statelessTagOf(req *gosip.Request, method gosip.RequestMethod) string {
	return statelessTagFor(siphdr.RequestID(f.seed, req, method))
}

// statelessTagFor is the stateless To tag of the request whose seeded
// RequestID (or siphdr.ID.Sum) is sum.
func statelessTagFor(sum uint64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], sum)
	return statelessTagPrefix + hex.EncodeToString(b[:])
}

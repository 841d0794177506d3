package sip

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"strconv"

	gosip "github.com/emiago/sipgo/sip"

	"github.com/switchboard/switchboard/internal/sipstatus"
	"github.com/switchboard/switchboard/registrar"
)

// The registration from the bytes: the second REGISTER of a registration,
// the one with credentials, registered without sipgo's parse of the
// message and answered without building and serialising a sipgo response.
//
// readRequest, on the read loop, has read and checked what validate
// checks (the start line, Via, From, To, Call-ID, CSeq, Max-Forwards,
// Content-Length: see rawchallenge.go) and the headers the registrar reads
// (registrarKind). A worker fills the registrar.Request from them — the
// Contacts parsed by sipgo's own Contact parser, the rest as sipgo's
// parser gives the values — and the registrar answers it as it answers a
// parsed REGISTER (registrar.RequestOf: FuzzReadRequest checks that both
// read the same). The answer is written like the stateless challenge's:
// the request's Via (with RFC 3581's rport and received), From, To with
// the stateless tag, Call-ID and CSeq lines as they came (RFC 3261
// §8.2.6.2), then the registrar's headers. A REGISTER with a Route (for
// popOwnRoutes), or that readRequest does not vouch for, goes to sipgo's
// parser as before.
//
// sipgo's parse of a REGISTER with credentials was ~11 % of the CPU of a
// registration, building and serialising the 200 ~5 % (bench/sip/RESULTS.md).

// headersParser is sipgo's header parsers, the ones the switch's parsers
// use (gosip.NewParser's default).
var headersParser = gosip.HeadersParser(gosip.DefaultHeadersParser())

// rawRegister queues data, a REGISTER with credentials from remote to
// local that readRequest read into r, for a worker to register from its
// bytes, and reports whether it did (false: the parsed path takes it, and
// answers 503 if the queue is full). It runs on the read loop: data is
// the loop's buffer, so the worker gets a copy.
func (f *fastPath) rawRegister(local, remote net.Addr, data []byte, r *rawRequest) bool {
	if r.nreg < 0 || r.route {
		return false
	}
	select {
	case f.queue <- fastJob{raw: newRawJob(r, data), local: local, remote: remote}:
		return true
	default:
		return false
	}
}

// rawJob is a REGISTER with credentials as rawRegister queues it: what
// readRequest read, pointing into the worker's copy of the datagram.
type rawJob struct {
	r rawRequest
}

// newRawJob is the rawJob of r, read from data: r pointed into a copy of
// data (rebase), which the caller may then reuse.
func newRawJob(r *rawRequest, data []byte) *rawJob {
	j := &rawJob{r: *r}
	j.r.rebase(data, append([]byte(nil), data...))
	return j
}

// rebase points r's slices of data, the datagram it was read from, to the
// same bytes of to, a copy of it. Each slice of data that readRequest
// keeps is data[i:j] for some i (never a three-index slice), so its
// offset in data is cap(data)-cap(slice).
func (r *rawRequest) rebase(data, to []byte) {
	move := func(b []byte) []byte {
		if len(b) == 0 {
			return nil
		}
		off := cap(data) - cap(b)
		return to[off : off+len(b) : off+len(b)]
	}
	for i := range r.nvia {
		r.via[i] = move(r.via[i])
	}
	r.from, r.to, r.callID, r.cseq, r.userAgent = move(r.from), move(r.to), move(r.callID), move(r.cseq), move(r.userAgent)
	r.topVia.value, r.topVia.sentBy = move(r.topVia.value), move(r.topVia.sentBy)
	r.ruri = move(r.ruri)
	for i := range r.regHeaders() {
		h := &r.reg[i]
		h.line, h.value = move(h.line), move(h.value)
	}
}

// registration is what the registrar reads of j's REGISTER, read over
// UDP from remote at local (registrar.RequestOf's reading of sipgo's
// parse); false when sipgo's parser would refuse the message (it would
// have dropped it as malformed).
func (j *rawJob) registration(local, remote net.Addr) (*registrar.Request, bool) {
	r := &j.r
	q := &registrar.Request{Method: string(gosip.REGISTER), ID: r.id, HasTo: true, Transport: "UDP",
		Source: addrPortOfNet(remote), Local: addrPortOfNet(local), Vias: r.nvia, UserAgent: string(r.userAgent)}
	var to gosip.Uri
	var params gosip.HeaderParams
	if _, err := gosip.ParseAddressValue(string(r.to), &to, &params); err != nil {
		return nil, false
	}
	q.AOR = to.User
	var ok bool
	if q.Via, ok = r.topVia.header(); !ok {
		return nil, false
	}
	for _, h := range r.regHeaders() {
		v := string(h.value)
		switch h.kind {
		case hContact:
			var err error
			if q.Contacts, err = headersParser.ParseHeader(q.Contacts, h.line); err != nil {
				return nil, false
			}
		case hExpires:
			if !q.HasExpires {
				q.Expires, q.HasExpires = v, true
			}
		case hAuthorization:
			q.Authorization = append(q.Authorization, v)
		case hRequire:
			q.Require = append(q.Require, v)
		case hPath:
			q.Path = append(q.Path, v)
		case hSupported:
			q.Supported = append(q.Supported, v)
		}
	}
	return q, true
}

// header is the top Via as the registrar reads it (its protocol and
// sent-by; readRequest has checked their form: plainSentBy).
func (v rawVia) header() (*gosip.ViaHeader, bool) {
	proto, sentBy, _ := bytes.Cut(v.sentBy, []byte(" "))
	h := &gosip.ViaHeader{ProtocolName: string(proto[:3]), ProtocolVersion: string(proto[4:7]), Transport: string(proto[8:])}
	if len(sentBy) > 0 && sentBy[0] == '[' {
		end := bytes.IndexByte(sentBy, ']')
		h.Host = string(sentBy[1:end])
		if port := sentBy[end+1:]; len(port) > 0 {
			n, ok := plainPort(port[1:])
			if !ok {
				return nil, false
			}
			h.Port = n
		}
		return h, true
	}
	host, port, ok := plainHostPort(sentBy)
	if !ok {
		return nil, false
	}
	h.Host, h.Port = string(host), port
	return h, true
}

// registerRaw is register for a REGISTER read from its bytes: the
// registrar's answer, written from the bytes (respondRaw).
func (f *fastPath) registerRaw(j fastJob) {
	s, r := f.s, &j.raw.r
	q, ok := j.raw.registration(j.local, j.remote)
	if !ok {
		s.Stats.Malformed.Add(1) // as sipgo's parser would have
		return
	}
	s.Stats.Requests.Add(1)
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	var hdrs []gosip.Header
	var err error
	if !s.isLocalURI(gosip.Uri{Host: r.ruriHost, Port: r.ruriPort}) {
		err = status(403, "Forbidden", errors.New("not our domain: "+r.ruriHost))
	} else {
		hdrs, err = s.reg.Registration(f.ctx, q)
	}
	code, reason := 200, "OK"
	if err != nil {
		s.Stats.Refused.Add(1)
		code, reason, hdrs = sipstatus.Parts(err)
		lvl := slog.LevelDebug
		if code >= 500 {
			lvl = slog.LevelWarn
		}
		s.log.Log(f.ctx, lvl, "request refused", "method", string(gosip.REGISTER), "status", code,
			"source", j.remote.String(), "error", err)
	}
	f.respondRaw(j, code, reason, hdrs)
}

// respondRaw writes the answer to j's REGISTER read from its bytes as
// rawChallenge writes a challenge: the request's Via, From, To (with the
// stateless tag: the request has none), Call-ID and CSeq lines as they
// came, then hdrs.
func (f *fastPath) respondRaw(j fastJob, code int, reason string, hdrs []gosip.Header) {
	buf := f.bufs.Get().(*bytes.Buffer)
	defer f.bufs.Put(buf)
	f.writeRawAnswer(buf, &j.raw.r, j.remote, code, reason, hdrs)
	f.raw.Add(1)
	f.send(j.local, j.remote, buf.Bytes(), string(gosip.REGISTER), code)
}

// writeRawAnswer writes into buf (reset first) a stateless answer with
// code and reason to r, a request from remote without a To tag, read from
// its bytes: the Via, From, To, Call-ID and CSeq lines as they came, with
// the top Via's rport and received filled in (rawVia.write) and the To
// with the stateless tag the parsed path gives (statelessTag: the same
// request hash), Content-Length 0, then hdrs.
func (f *fastPath) writeRawAnswer(buf *bytes.Buffer, r *rawRequest, remote net.Addr, code int, reason string, hdrs []gosip.Header) {
	buf.Reset()
	buf.WriteString("SIP/2.0 ")
	buf.WriteString(strconv.Itoa(code))
	buf.WriteString(" ")
	buf.WriteString(reason)
	buf.WriteString("\r\n")
	for i, v := range r.vias() {
		buf.WriteString("Via: ")
		if i == 0 {
			r.topVia.write(buf, remote)
		} else {
			buf.Write(v)
		}
		buf.WriteString("\r\n")
	}
	buf.WriteString("From: ")
	buf.Write(r.from)
	buf.WriteString("\r\nTo: ")
	buf.Write(r.to)
	buf.WriteString(";tag=")
	buf.WriteString(statelessTagFor(r.id.Sum(f.seed)))
	buf.WriteString("\r\nCall-ID: ")
	buf.Write(r.callID)
	buf.WriteString("\r\nCSeq: ")
	buf.Write(r.cseq)
	// In the parsed path's order: Content-Length comes with the response
	// (sipstatus.NewResponse), the other headers after it.
	buf.WriteString("\r\nContent-Length: 0\r\n")
	for _, h := range hdrs {
		buf.WriteString(h.Name())
		buf.WriteString(": ")
		buf.WriteString(h.Value())
		buf.WriteString("\r\n")
	}
	buf.WriteString("\r\n")
}

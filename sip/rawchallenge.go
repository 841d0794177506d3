package sip

import (
	"bytes"
	"log/slog"
	"net"
	"strconv"

	gosip "github.com/emiago/sipgo/sip"

	"github.com/switchboard/switchboard/internal/siphdr"
)

// The stateless challenges of the fast path — the 401 to a REGISTER and
// the 407 to an initial INVITE without credentials — answered from the
// datagram's bytes on the read loop, as Kamailio's sl_send_reply answers:
// it copies the request's Via, From, To, Call-ID and CSeq into the reply
// without parsing the rest. Half of what a phone sends to register is such
// a REGISTER, every call starts with such an INVITE, and it is all that a
// scanner sends; parsing it with sipgo's parser, handing it to a worker
// and building the answer as a sipgo message was about a fifth of the CPU
// of a registration (bench/sip/RESULTS.md).
//
// What the answer needs is read here: the start line and the Via, From,
// To, Call-ID, CSeq, Max-Forwards, Content-Length and User-Agent headers.
// Whatever this reading does not vouch for — a header folded over lines,
// a second From, To, Call-ID or CSeq, credentials, Proxy-Require, a To
// tag, a Via of ours, a body on a REGISTER, a body of another length than
// Content-Length says, a value it cannot read — goes on to sipgo's
// parser and the fast path's workers, which answer it as before. The
// answer is theirs: the same status, the same challenge with the nonce of
// the same request hash (siphdr.ID), the same To tag, and Via, From, To,
// Call-ID and CSeq equal to the request's (RFC 3261 §8.2.6.2), copied as
// they came.
// Headers this reading skips are not checked: a request whose Contact
// sipgo would refuse to parse is challenged here and refused (dropped as
// malformed) once it comes back with credentials, as Kamailio, which
// parses a header when it first needs it, also does.

// rawRequest is what the stateless challenge, and the registration from
// the bytes (rawregister.go), read of a request.
type rawRequest struct {
	ruriHost  string // the Request-URI's host and port
	ruriPort  int
	fromHost  string             // the host of the From URI
	via       [maxRawVias][]byte // Via header values, in order
	nvia      int
	from      []byte
	to        []byte
	callID    []byte
	cseq      []byte
	userAgent []byte
	hasUA     bool
	toTag     string // an ACK's To tag
	topVia    rawVia
	id        siphdr.ID

	// What the registration from the bytes needs (rawregister.go), read
	// for a REGISTER: its Request-URI, whether it has credentials or a
	// Route, and the headers the registrar reads besides those above
	// (registrarKind), in order, or nreg -1 when there were more than
	// maxRegHeaders.
	ruri  []byte
	auth  bool
	route bool
	reg   [maxRegHeaders]rawHeader
	nreg  int
}

// rawHeader is a header line as readRequest read it.
type rawHeader struct {
	kind  int    // headerKind's
	line  []byte // the whole line
	value []byte // its value, trimmed
}

// maxRegHeaders is the most headers for the registrar a REGISTER read
// from its bytes has; one with more is registered by the parsed path.
const maxRegHeaders = 16

// regHeaders returns the headers kept for the registrar.
func (r *rawRequest) regHeaders() []rawHeader { return r.reg[:max(r.nreg, 0)] }

// maxRawVias is the most Vias readRequest reads; a request with more goes
// to the parsed path.
const maxRawVias = 8

// vias returns the Via header values read.
func (r *rawRequest) vias() [][]byte { return r.via[:r.nvia] }

// rawVia is the top Via value, split where the answer changes it.
type rawVia struct {
	value  []byte // the first Via header's value
	rport  bool   // it has an rport parameter without a value (RFC 3581 §4)
	sentBy []byte // "SIP/2.0/UDP host:port", before the parameters
}

// readRequest reads data into r as a request of method to challenge
// (REGISTER or INVITE), or as the ACK of a challenge (ACK: with a To tag);
// false when it is not one this reading vouches for.
func readRequest(r *rawRequest, data []byte, method gosip.RequestMethod) bool {
	line, rest, ok := cutLine(data)
	if !ok {
		return false
	}
	m, line, _ := bytes.Cut(line, []byte(" "))
	uri, version, _ := bytes.Cut(line, []byte(" "))
	if string(m) != string(method) || string(version) != "SIP/2.0" || len(uri) == 0 {
		return false
	}
	if host, port, ok := plainURI(uri); ok {
		r.ruriHost, r.ruriPort = string(host), port
	} else {
		var u gosip.Uri
		if gosip.ParseUri(string(uri), &u) != nil || u.Scheme != "sip" && u.Scheme != "sips" {
			return false // tel: and others: validate's 416 or more
		}
		r.ruriHost, r.ruriPort = u.Host, u.Port
	}
	r.ruri = uri
	var maxForwards, contentLength []byte
	for {
		line, rest, ok = cutLine(rest)
		if !ok {
			return false
		}
		if len(line) == 0 {
			break // the end of the headers
		}
		if line[0] == ' ' || line[0] == '\t' {
			return false // folded
		}
		name, value, found := bytes.Cut(line, []byte(":"))
		if !found {
			return false
		}
		name, value = bytes.TrimSpace(name), bytes.TrimSpace(value)
		kind := headerKind(name)
		if method == gosip.REGISTER && registrarKind(kind) && r.nreg >= 0 {
			if r.nreg == maxRegHeaders {
				r.nreg = -1
			} else {
				r.reg[r.nreg] = rawHeader{kind: kind, line: line, value: value}
				r.nreg++
			}
		}
		var slot *[]byte
		switch kind {
		case hVia:
			if r.nvia == maxRawVias {
				return false
			}
			r.via[r.nvia] = value
			r.nvia++
			continue
		case hFrom:
			slot = &r.from
		case hTo:
			slot = &r.to
		case hCallID:
			slot = &r.callID
		case hCSeq:
			slot = &r.cseq
		case hMaxForwards:
			slot = &maxForwards
		case hContentLength:
			slot = &contentLength
		case hUserAgent:
			if !r.hasUA { // the first, as siphdr.Get, even if empty
				r.userAgent, r.hasUA = value, true
			}
			continue
		case hAuthorization:
			// Credentials: the challenge is not for this request
			// (rawChallenge), the registration from the bytes is.
			r.auth = true
			continue
		case hRoute:
			r.route = true // popOwnRoutes', for the parsed path
			continue
		case hRefuse:
			return false
		default:
			continue
		}
		if *slot != nil || len(value) == 0 {
			return false
		}
		*slot = value
	}
	if r.nvia == 0 || r.from == nil || r.to == nil || r.callID == nil || r.cseq == nil {
		return false
	}
	// The body: none on a REGISTER; on an INVITE, as long as
	// Content-Length says (sipgo refuses a shorter one, and takes the rest
	// of the datagram when there is no Content-Length).
	switch {
	case method == gosip.REGISTER:
		if len(rest) != 0 || contentLength != nil && string(contentLength) != "0" {
			return false
		}
	case contentLength != nil:
		n, err := strconv.ParseUint(string(contentLength), 10, 32)
		if err != nil || n != uint64(len(rest)) || string(contentLength) != strconv.FormatUint(n, 10) {
			return false
		}
	}
	if maxForwards != nil {
		n, err := strconv.ParseUint(string(maxForwards), 10, 32)
		if err != nil || n == 0 {
			return false // sipgo's parse refuses it, or validate's 483
		}
	}
	seq, cseqMethod, _ := bytes.Cut(r.cseq, []byte(" "))
	n, err := strconv.ParseUint(string(seq), 10, 32)
	if err != nil || string(cseqMethod) != string(method) { // sipgo reads more white space into the method: validate's 400
		return false
	}
	r.id = siphdr.ID{CallID: string(r.callID), Seq: uint32(n), HasCSeq: true, Method: string(method)}
	if tag, host, _, ok := plainAddress(r.from); ok {
		r.id.FromTag, r.fromHost = string(tag), string(host)
	} else {
		var params gosip.HeaderParams
		var uri gosip.Uri
		if _, err := gosip.ParseAddressValue(string(r.from), &uri, &params); err != nil {
			return false
		}
		r.id.FromTag, _ = params.Get("tag")
		r.fromHost = uri.Host
	}
	var toTag string
	hasToTag := false
	if tag, _, has, ok := plainAddress(r.to); ok {
		toTag, hasToTag = string(tag), has
	} else {
		var params gosip.HeaderParams
		var uri gosip.Uri
		if _, err := gosip.ParseAddressValue(string(r.to), &uri, &params); err != nil {
			return false
		}
		toTag, hasToTag = params.Get("tag")
	}
	// A To tag: an in-dialog request, for sipgo; but the ACK of a
	// challenge has the tag the challenge gave (absorbAck).
	if hasToTag != (method == gosip.ACK) {
		return false
	}
	r.toTag = toTag
	return r.readVias()
}

// readVias reads the top Via's branch and rport and checks that no Via is
// one of ours (validate's loop check). A Via line listing several values,
// or with white space or quotes where sipgo's Via parser reads them
// differently, is left to sipgo.
func (r *rawRequest) readVias() bool {
	for i, v := range r.vias() {
		if viaRefused.any(v) {
			return false
		}
		sentBy, params, _ := bytes.Cut(v, []byte(";"))
		if !plainSentBy(sentBy) || bytes.IndexByte(params, ' ') >= 0 {
			return false
		}
		top := i == 0
		if top {
			r.topVia = rawVia{value: v, sentBy: sentBy}
		}
		for len(params) > 0 {
			var p []byte
			p, params, _ = bytes.Cut(params, []byte(";"))
			name, value, _ := bytes.Cut(p, []byte("="))
			if len(name) == 0 {
				return false
			}
			// Parameter names as sipgo's Params.Get compares them: with
			// case.
			if string(name) == "branch" {
				if bytes.HasPrefix(value, []byte(branchPrefix)) {
					return false // ours: a loop or a spiral, for validate
				}
				if top {
					r.id.Branch = string(value)
				}
			}
			if top {
				if string(name) == "rport" && len(value) == 0 {
					r.topVia.rport = true
				}
			}
		}
	}
	return true
}

// plainSentBy reports whether a Via's value before its parameters is
// "SIP/2.0/" transport, one space, a host and an optional port (RFC 3261
// §20.42), without anything sipgo's parser would read another way.
func plainSentBy(v []byte) bool {
	proto, sentBy, ok := bytes.Cut(v, []byte(" "))
	if !ok || len(proto) <= len("SIP/2.0/") || !bytes.EqualFold(proto[:len("SIP/2.0/")], []byte("SIP/2.0/")) {
		return false
	}
	for _, c := range proto[len("SIP/2.0/"):] {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	if len(sentBy) == 0 || sentBy[0] != '[' {
		_, _, ok = plainHostPort(sentBy)
		return ok
	}
	end := bytes.IndexByte(sentBy, ']')
	if end < 0 {
		return false
	}
	host, port := sentBy[1:end], sentBy[end+1:]
	if len(host) == 0 || len(port) > 0 && port[0] != ':' {
		return false
	}
	for _, c := range host {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == ':' || c == '.') {
			return false
		}
	}
	if len(port) > 0 {
		_, ok = plainPort(port[1:])
	}
	return ok
}

// plainHostPort reads host[:port] where host is a host name or an IPv4
// address and port canonical digits (plainPort); port is 0 when there is
// none.
func plainHostPort(b []byte) (host []byte, port int, ok bool) {
	host, p, hasPort := bytes.Cut(b, []byte(":"))
	if len(host) == 0 || !hostChars.all(host) {
		return nil, 0, false
	}
	if hasPort {
		if port, ok = plainPort(p); !ok {
			return nil, 0, false
		}
	}
	return host, port, true
}

// plainPort reads a port number written without sign or leading zeros,
// 1 to 65535.
func plainPort(p []byte) (int, bool) {
	if len(p) == 0 || len(p) > 5 || p[0] == '0' {
		return 0, false
	}
	n := 0
	for _, c := range p {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, n <= 65535
}

// byteSet is a set of bytes.
type byteSet [8]uint32

func (m *byteSet) add(c byte)      { m[c>>5] |= 1 << (c & 31) }
func (m *byteSet) has(c byte) bool { return m[c>>5]&(1<<(c&31)) != 0 }

// any reports whether a byte of b is in the set.
func (m *byteSet) any(b []byte) bool {
	for _, c := range b {
		if m.has(c) {
			return true
		}
	}
	return false
}

// all reports whether every byte of b is in the set.
func (m *byteSet) all(b []byte) bool {
	for _, c := range b {
		if !m.has(c) {
			return false
		}
	}
	return true
}

// setOf is the set of the bytes of s.
func setOf(s string) (m byteSet) {
	for i := 0; i < len(s); i++ {
		m.add(s[i])
	}
	return m
}

// The bytes that make readRequest leave a value to sipgo: in a Via (a
// list, quotes, tabs), in a display name, in an address's parameters or
// URI (plainAddress), in a plain URI (plainURI).
var (
	viaRefused        = setOf(",\"\t")
	displayRefused    = setOf("\";>")
	addrParamsRefused = setOf(" \t<>\",")
	addrURIRefused    = setOf(" \t<\",")
	uriRefused        = setOf(" \t\"<>[]")
)

// hostChars are the bytes of a host name or IPv4 address as plainHostPort
// reads them.
var hostChars = func() (m byteSet) {
	for c := 0; c < 256; c++ {
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' {
			m.add(byte(c))
		}
	}
	return m
}()

// cutLine returns the line data starts with, without its CRLF, and what
// follows it; false when there is no CRLF.
func cutLine(data []byte) (line, rest []byte, ok bool) {
	// As sipgo's parser cuts lines: at the first CR, which must be
	// followed by LF.
	i := bytes.IndexByte(data, '\r')
	if i < 0 || i+1 >= len(data) || data[i+1] != '\n' {
		return nil, nil, false
	}
	return data[:i], data[i+2:], true
}

// The headers readRequest looks at.
const (
	hOther = iota
	hVia
	hFrom
	hTo
	hCallID
	hCSeq
	hMaxForwards
	hContentLength
	hUserAgent
	hAuthorization
	hContact
	hExpires
	hRequire
	hPath
	hSupported
	hRoute
	hRefuse // Proxy-Authorization, Proxy-Require: for the parsed path
)

// registrarKind reports whether a header of kind is one the registrar
// reads (registrar.Request) that readRequest does not read itself.
func registrarKind(kind int) bool {
	switch kind {
	case hAuthorization, hContact, hExpires, hRequire, hPath, hSupported:
		return true
	}
	return false
}

// headerKind tells which of readRequest's headers name is, by its full or
// compact form (RFC 3261 §7.3.3), compared without case.
func headerKind(name []byte) int {
	is := func(s string) bool { return bytes.EqualFold(name, []byte(s)) }
	switch len(name) {
	case 1:
		switch name[0] | 0x20 {
		case 'v':
			return hVia
		case 'f':
			return hFrom
		case 't':
			return hTo
		case 'i':
			return hCallID
		case 'l':
			return hContentLength
		case 'm':
			return hContact
		case 'k':
			return hSupported
		}
	case 2:
		if is("To") {
			return hTo
		}
	case 3:
		if is("Via") {
			return hVia
		}
	case 4:
		switch {
		case is("From"):
			return hFrom
		case is("CSeq"):
			return hCSeq
		case is("Path"):
			return hPath
		}
	case 5:
		if is("Route") {
			return hRoute
		}
	case 7:
		switch {
		case is("Call-ID"):
			return hCallID
		case is("Contact"):
			return hContact
		case is("Expires"):
			return hExpires
		case is("Require"):
			return hRequire
		}
	case 9:
		if is("Supported") {
			return hSupported
		}
	case 10:
		if is("User-Agent") {
			return hUserAgent
		}
	case 12:
		if is("Max-Forwards") {
			return hMaxForwards
		}
	case 13:
		switch {
		case is("Authorization"):
			return hAuthorization
		case is("Proxy-Require"):
			return hRefuse
		}
	case 14:
		if is("Content-Length") {
			return hContentLength
		}
	case 19:
		if is("Proxy-Authorization") {
			return hRefuse
		}
	}
	return hOther
}

// plainAddress reads a From or To value of the plain form: a URI in angle
// brackets, sip: or sips: with a host name or IPv4 address, behind a
// display name without quotes, if any, and followed by parameters without
// white space. It returns the tag parameter (the first, as sipgo's Get),
// whether there is one, and the URI's host; ok false for any other form,
// which sipgo's ParseAddressValue reads instead.
func plainAddress(v []byte) (tag, host []byte, hasTag, ok bool) {
	lt := bytes.IndexByte(v, '<')
	if lt < 0 || displayRefused.any(v[:lt]) {
		return nil, nil, false, false
	}
	gt := bytes.IndexByte(v[lt:], '>')
	if gt < 0 {
		return nil, nil, false, false
	}
	uri, params := v[lt+1:lt+gt], v[lt+gt+1:]
	if addrParamsRefused.any(params) || len(params) > 0 && params[0] != ';' || addrURIRefused.any(uri) {
		return nil, nil, false, false
	}
	for len(params) > 0 { // each starts with ';'
		p := params[1:]
		params = nil
		if i := bytes.IndexByte(p, ';'); i >= 0 {
			p, params = p[:i], p[i:]
		}
		name, value, _ := bytes.Cut(p, []byte("="))
		if len(name) == 0 {
			return nil, nil, false, false
		}
		if string(name) == "tag" && !hasTag {
			tag, hasTag = value, true
		}
	}
	host, _, ok = plainURI(uri)
	if !ok {
		return nil, nil, false, false
	}
	return tag, host, hasTag, true
}

// plainURI reads the host and port (0 when there is none) of a plain sip:
// or sips: URI — a host name or IPv4 address, a port of digits, no white
// space or quotes — and reports whether it is one; sipgo's ParseUri reads
// the others.
func plainURI(uri []byte) (host []byte, port int, ok bool) {
	switch {
	case bytes.HasPrefix(uri, []byte("sip:")):
		uri = uri[len("sip:"):]
	case bytes.HasPrefix(uri, []byte("sips:")):
		uri = uri[len("sips:"):]
	default:
		return nil, 0, false
	}
	if uriRefused.any(uri) {
		return nil, 0, false
	}
	for i, c := range uri {
		if c == ';' || c == '?' {
			uri = uri[:i]
			break
		}
	}
	if i := bytes.IndexByte(uri, '@'); i >= 0 {
		if bytes.IndexByte(uri[i+1:], '@') >= 0 {
			return nil, 0, false // sipgo's ParseUri reads "a@b@c" another way
		}
		uri = uri[i+1:]
	}
	return plainHostPort(uri)
}

// rawChallenge answers data, a datagram from remote to local starting
// like a request of method (REGISTER or INVITE), with the challenge the
// fast path would send — the 401 to a REGISTER, the 407 to an initial
// INVITE (see challenged) — if readRequest vouches for it, and reports
// whether it did.
func (f *fastPath) rawChallenge(local, remote net.Addr, data []byte, method gosip.RequestMethod) bool {
	s := f.s
	if f.noRaw.Load() || s.txLive.Load() > int64(s.cfg.MaxTransactions) {
		return false // tests; the transaction cap's 503
	}
	var r rawRequest
	if !readRequest(&r, data, method) {
		return false
	}
	if r.auth {
		// A REGISTER with credentials: registered from its bytes when
		// it reads plainly (rawregister.go).
		return method == gosip.REGISTER && f.rawRegister(local, remote, data, &r)
	}
	src := addrPortOfNet(remote)
	proxy := method == gosip.INVITE
	if proxy {
		if !f.challengedFrom(r.fromHost, src) {
			return false
		}
	} else if !s.isLocalURI(gosip.Uri{Host: r.ruriHost, Port: r.ruriPort}) {
		return false // answer's 403
	}
	hdrs, ok := s.auth.ChallengeRequest(r.id, string(r.userAgent), proxy, src)
	if !ok {
		return false // banned: answer's 403
	}
	code, reason := 401, "Unauthorized"
	if proxy {
		code, reason = 407, "Proxy Authentication Required"
	}
	buf := f.bufs.Get().(*bytes.Buffer)
	defer f.bufs.Put(buf)
	f.writeRawAnswer(buf, &r, remote, code, reason, hdrs)

	f.raw.Add(1)
	s.Stats.Requests.Add(1)
	s.Stats.Refused.Add(1)
	if s.log.Enabled(f.ctx, slog.LevelDebug) {
		s.log.Log(f.ctx, slog.LevelDebug, "request refused", "method", string(method), "status", code,
			"source", remote.String(), "error", "stateless challenge")
	}
	f.send(local, remote, buf.Bytes(), string(method), code)
	return true
}

// write writes the top Via of a response to a request from remote: as it
// came, but for RFC 3581's rport and received filled in when it asked for
// them (§4), as sipgo's NewResponseFromRequest does.
func (v rawVia) write(buf *bytes.Buffer, remote net.Addr) {
	if !v.rport {
		buf.Write(v.value)
		return
	}
	host, port, _ := net.SplitHostPort(remote.String())
	buf.Write(v.sentBy)
	received := false
	_, params, _ := bytes.Cut(v.value, []byte(";"))
	for len(params) > 0 {
		var p []byte
		p, params, _ = bytes.Cut(params, []byte(";"))
		name, _, _ := bytes.Cut(p, []byte("="))
		name = bytes.TrimSpace(name)
		buf.WriteString(";")
		switch string(name) {
		case "rport":
			buf.WriteString("rport=" + port)
		case "received":
			buf.WriteString("received=" + host)
			received = true
		default:
			buf.Write(p)
		}
	}
	if !received {
		buf.WriteString(";received=" + host)
	}
}

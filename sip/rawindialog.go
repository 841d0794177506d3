package sip

import (
	"bytes"
	"net"
	"net/netip"
	"strconv"
	"strings"

	gosip "github.com/emiago/sipgo/sip"
)

// The ACK of a 2xx and the BYE over UDP that statelessdialog.go forwards
// without transactions are forwarded from their bytes, as Kamailio's
// forward() does: the read loop reads the request line and the headers
// forwarding changes or checks (Via, From, To, Call-ID, CSeq,
// Max-Forwards, Route, Proxy-Authorization, Content-Length), and a worker
// checks the dialog's signed Route, works out the next hop and writes the
// request again from the datagram: our Via on top, the sender's Via with
// received and rport (RFC 3581 §4), our Route entries and our credentials
// taken out, Max-Forwards one less — every other line as it came. The
// checks and the rules are the parsed path's (popOwnRoutes, inOurDialog,
// dialogTarget, prepare), applied to sipgo's parse of the three values
// they read (the top Via, a Route, the Request-URI) rather than of the
// whole request; the branch is the same loop hash.
//
// What this reading does not vouch for goes to the parsed path as before:
// a folded header, a second From, To, Call-ID, CSeq or Max-Forwards, a Via
// of ours (a loop or a spiral), a top Via listing several values or with
// quotes or tabs, a Route line listing several, Proxy-Require, a body, a
// Request-URI that is not sip: or names its next hop with an alias, a next
// hop that is a host name or not over UDP. So does any request the
// parsed path would refuse (no Route of ours, not signed): it answers it.

// span is a part of a datagram, by offsets: a copy of the datagram reads
// the same.
type span struct{ from, to int }

func (s span) of(b []byte) []byte { return b[s.from:s.to] }

// spanOf is the span of sub, a part of data.
func spanOf(data, sub []byte) span {
	from := cap(data) - cap(sub)
	return span{from, from + len(sub)}
}

// maxRawRoutes and maxRawCredentials bound what readInDialog keeps; a
// request with more goes to the parsed path.
const (
	maxRawRoutes      = 4
	maxRawCredentials = 2
)

// rawInDialog is what readInDialog reads of an ACK or a BYE.
type rawInDialog struct {
	method      gosip.RequestMethod
	ruri        span // the Request-URI
	body        int  // where the headers start (after the request line)
	end         int  // where the blank line after the headers starts
	topVia      span // the top Via's line, without its CRLF
	branch      string
	fromTag     string
	hasFromTag  bool
	toTag       string
	callID      string
	seq         uint32
	maxForwards span // its line (zero: none)
	hops        int
	routes      [maxRawRoutes]span // Route lines, in order
	routeValues [maxRawRoutes]span
	nroute      int
	creds       [maxRawCredentials]span // Proxy-Authorization lines
	credValues  [maxRawCredentials]span
	ncred       int
}

// readInDialog reads data into r as an ACK or a BYE of method inside a
// dialog; false when it is not one this reading vouches for.
func readInDialog(r *rawInDialog, data []byte, method gosip.RequestMethod) bool {
	*r = rawInDialog{method: method}
	line, rest, ok := cutLine(data)
	if !ok {
		return false
	}
	m, line, _ := bytes.Cut(line, []byte(" "))
	uri, version, _ := bytes.Cut(line, []byte(" "))
	if string(m) != string(method) || string(version) != "SIP/2.0" || !bytes.HasPrefix(uri, []byte("sip:")) {
		return false
	}
	r.ruri = spanOf(data, uri)
	r.body = len(data) - len(rest)
	var from, to, callID, cseq, contentLength []byte
	nvia := 0
	for {
		start := len(data) - len(rest)
		line, rest, ok = cutLine(rest)
		if !ok {
			return false
		}
		if len(line) == 0 {
			r.end = start
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return false // folded
		}
		name, value, found := bytes.Cut(line, []byte(":"))
		if !found {
			return false
		}
		name, value = bytes.TrimSpace(name), bytes.TrimSpace(value)
		var slot *[]byte
		switch headerKind(name) {
		case hVia:
			if bytes.Contains(value, []byte(branchPrefix)) {
				return false // ours: a loop or a spiral, for validate
			}
			if nvia == 0 {
				if viaRefused.any(value) {
					return false
				}
				r.topVia = spanOf(data, line)
				if !r.readTopVia(value) {
					return false
				}
			}
			nvia++
			continue
		case hFrom:
			slot = &from
		case hTo:
			slot = &to
		case hCallID:
			slot = &callID
		case hCSeq:
			slot = &cseq
		case hContentLength:
			slot = &contentLength
		case hMaxForwards:
			if r.maxForwards != (span{}) {
				return false
			}
			n, err := strconv.ParseUint(string(value), 10, 32)
			if err != nil || n == 0 || n > 255 {
				return false // sipgo's parse refuses it, or validate's 483
			}
			r.maxForwards, r.hops = spanOf(data, line), int(n)
			continue
		case hRoute:
			if r.nroute == maxRawRoutes || bytes.IndexByte(value, ',') >= 0 {
				return false
			}
			r.routes[r.nroute], r.routeValues[r.nroute] = spanOf(data, line), spanOf(data, value)
			r.nroute++
			continue
		case hRefuse:
			if len(name) != len("Proxy-Authorization") || r.ncred == maxRawCredentials {
				return false // Proxy-Require: validate's 420, and the loop hash
			}
			r.creds[r.ncred], r.credValues[r.ncred] = spanOf(data, line), spanOf(data, value)
			r.ncred++
			continue
		default:
			continue
		}
		if *slot != nil || len(value) == 0 {
			return false
		}
		*slot = value
	}
	if nvia == 0 || from == nil || to == nil || callID == nil || cseq == nil {
		return false
	}
	if len(rest) != 0 || contentLength != nil && string(contentLength) != "0" {
		return false // a body: an ACK's SDP is rewritten for the relay
	}
	seq, cseqMethod, _ := bytes.Cut(cseq, []byte(" "))
	n, err := strconv.ParseUint(string(seq), 10, 32)
	if err != nil || string(cseqMethod) != string(method) {
		return false
	}
	r.seq, r.callID = uint32(n), string(callID)
	var tag []byte
	if tag, _, r.hasFromTag, ok = plainAddress(from); ok {
		r.fromTag = string(tag)
	} else if r.fromTag, r.hasFromTag, ok = addressTag(from); !ok {
		return false
	}
	hasToTag := false
	if tag, _, hasToTag, ok = plainAddress(to); ok {
		r.toTag = string(tag)
	} else if r.toTag, hasToTag, ok = addressTag(to); !ok {
		return false
	}
	return hasToTag // in a dialog
}

// addressTag reads the tag parameter of a From or To value with sipgo's
// parser.
func addressTag(v []byte) (tag string, has, ok bool) {
	var params gosip.HeaderParams
	var uri gosip.Uri
	if _, err := gosip.ParseAddressValue(string(v), &uri, &params); err != nil {
		return "", false, false
	}
	tag, has = params.Get("tag")
	return tag, has, true
}

// readTopVia reads the top Via's branch: RFC 3261's, so that an ACK of a
// 2xx is told from one of an error (takeInDialog).
func (r *rawInDialog) readTopVia(v []byte) bool {
	sentBy, params, _ := bytes.Cut(v, []byte(";"))
	if !plainSentBy(sentBy) || bytes.IndexByte(params, ' ') >= 0 {
		return false
	}
	for len(params) > 0 {
		var p []byte
		p, params, _ = bytes.Cut(params, []byte(";"))
		name, value, _ := bytes.Cut(p, []byte("="))
		if len(name) == 0 {
			return false
		}
		if string(name) == "branch" && r.branch == "" {
			r.branch = string(value)
		}
	}
	return len(r.branch) > len(gosip.RFC3261BranchMagicCookie) && r.branch[:len(gosip.RFC3261BranchMagicCookie)] == gosip.RFC3261BranchMagicCookie
}

// rawDialogJob is an ACK or a BYE read from its bytes, for a worker.
type rawDialogJob struct {
	r    rawInDialog
	data []byte // a copy of the datagram
}

// forwardRaw is the parsed path's popOwnRoutes, inOurDialog and prepare
// for a request read by readInDialog, from src: it writes into buf the
// request to send, and returns where to and from which listener; false
// when the parsed path is to take the request (it refuses it, or this
// reading does not vouch for its next hop).
func (f *fastPath) forwardRaw(r *rawInDialog, data []byte, src netip.AddrPort, buf *bytes.Buffer) (dest netip.AddrPort, laddr string, ok bool) {
	s := f.s
	// popOwnRoutes: up to two Route entries of ours on top, one signed.
	popped, signed := 0, false
	for popped < 2 && popped < r.nroute {
		u, ok := routeURI(r.routeValues[popped].of(data))
		if !ok {
			return dest, "", false
		}
		if !s.isLocalURI(u) {
			break
		}
		if tok, ok := u.UriParams.Get(dialogParam); ok && s.signs(tok, r.callID, r.tags()) {
			signed = true
		}
		popped++
	}
	if popped == 0 || !signed {
		return dest, "", false // inOurDialog's refusal
	}
	// dialogTarget.
	var ruri gosip.Uri
	if gosip.ParseUri(string(r.ruri.of(data)), &ruri) != nil {
		return dest, "", false
	}
	var t target
	if popped < r.nroute {
		u, ok := routeURI(r.routeValues[popped].of(data))
		if !ok {
			return dest, "", false
		}
		t = uriTarget(u)
	} else {
		if ruri.UriParams.Has(aliasParam) {
			return dest, "", false
		}
		t = uriTarget(ruri)
	}
	if t.transport != "UDP" {
		return dest, "", false
	}
	dest, err := netip.ParseAddrPort(t.dest)
	if err != nil {
		return dest, "", false // a host name: sipgo resolves it
	}
	out, ok := s.ifaceFor("udp", t.dest)
	if !ok {
		return dest, "", false
	}
	// prepare: the sender's Via with received and rport, then ours with
	// the loop hash of the request as it came.
	hs, err := headersParser.ParseHeader(nil, r.topVia.of(data))
	if err != nil || len(hs) != 1 {
		return dest, "", false
	}
	via, ok := hs[0].(*gosip.ViaHeader)
	if !ok {
		return dest, "", false
	}
	if h := src.Addr().Unmap().String(); via.Host != h {
		via.Params.Add("received", h)
	}
	if via.Params.Has("rport") {
		via.Params.Add("rport", strconv.Itoa(int(src.Port())))
	}
	k := loopKey{ruri: &ruri, fromTag: r.fromTag, toTag: r.toTag, from: true, to: true,
		callID: r.callID, hasCallID: true, seq: r.seq, hasSeq: true, prevVia: via}
	ours := out.via(s.branch(k.sum(), true))

	buf.Reset()
	buf.Write(data[:r.body])
	writeVia(buf, ours)
	writeVia(buf, via)
	realm := []byte(`realm="` + s.cfg.Domain + `"`)
	rest := data[r.body:r.end]
	for len(rest) > 0 {
		start := r.end - len(rest)
		line, next, _ := cutLine(rest)
		rest = next
		switch {
		case start == r.topVia.from:
			continue
		case start == r.maxForwards.from && r.maxForwards != (span{}):
			buf.WriteString("Max-Forwards: ")
			buf.Write(strconv.AppendInt(buf.AvailableBuffer(), int64(r.hops-1), 10))
			buf.WriteString("\r\n")
			continue
		case r.isRoute(start, popped) || r.isCredential(start, data, realm):
			continue
		}
		buf.Write(line)
		buf.WriteString("\r\n")
	}
	if r.maxForwards == (span{}) {
		buf.WriteString("Max-Forwards: 70\r\n")
	}
	buf.WriteString("\r\n")
	return dest, out.laddr.String(), true
}

// tags are the request's From and To tags, those it has (dialogTags).
func (r *rawInDialog) tags() []string {
	if r.hasFromTag {
		return []string{r.fromTag, r.toTag}
	}
	return []string{r.toTag}
}

// isRoute reports whether the line at start is one of the first n Route
// lines.
func (r *rawInDialog) isRoute(start, n int) bool {
	for i := range n {
		if r.routes[i].from == start {
			return true
		}
	}
	return false
}

// isCredential reports whether the line at start is a Proxy-Authorization
// for our realm (consumeCredentials).
func (r *rawInDialog) isCredential(start int, data, realm []byte) bool {
	for i := range r.ncred {
		if r.creds[i].from == start {
			return bytes.Contains(r.credValues[i].of(data), realm)
		}
	}
	return false
}

// writeVia writes v's header line as sipgo's StringWrite does, without
// the strings it builds on the way (its Value, a string of the
// separator, net.ParseIP for the host): 1.4 % of a call's CPU.
func writeVia(buf *bytes.Buffer, v *gosip.ViaHeader) {
	buf.WriteString("Via: ")
	buf.WriteString(v.ProtocolName)
	buf.WriteByte('/')
	buf.WriteString(v.ProtocolVersion)
	buf.WriteByte('/')
	buf.WriteString(v.Transport)
	buf.WriteByte(' ')
	// sipgo's uriIP: brackets around an IPv6 address (net.ParseIP's: no
	// zone, not IPv4-mapped).
	if a, err := netip.ParseAddr(v.Host); err == nil && a.Is6() && !a.Is4In6() && a.Zone() == "" {
		buf.WriteByte('[')
		buf.WriteString(v.Host)
		buf.WriteByte(']')
	} else {
		buf.WriteString(v.Host)
	}
	if v.Port > 0 {
		buf.WriteByte(':')
		buf.Write(strconv.AppendInt(buf.AvailableBuffer(), int64(v.Port), 10))
	}
	for _, kv := range v.Params {
		buf.WriteByte(';')
		buf.WriteString(kv.K)
		switch {
		case kv.V == "":
		case strings.ContainsAny(kv.V, " \t"): // sipgo quotes these
			buf.WriteString(`="`)
			buf.WriteString(kv.V)
			buf.WriteByte('"')
		default:
			buf.WriteByte('=')
			buf.WriteString(kv.V)
		}
	}
	buf.WriteString("\r\n")
}

// routeURI reads a Route value's URI as sipgo's Route parser does.
func routeURI(v []byte) (gosip.Uri, bool) {
	var u gosip.Uri
	var params gosip.HeaderParams
	if _, err := gosip.ParseAddressValue(string(v), &u, &params); err != nil {
		return u, false
	}
	return u, true
}

// inDialogRaw forwards a job's ACK or BYE read from its bytes, or hands it
// to the parsed path (ack, bye) when forwardRaw does not take it.
func (f *fastPath) inDialogRaw(j fastJob) {
	s, d := f.s, j.dlg
	src := addrPortOfNet(j.remote)
	buf := f.bufs.Get().(*bytes.Buffer)
	defer f.bufs.Put(buf)
	dest, laddr, ok := f.forwardRaw(&d.r, d.data, src, buf)
	if !ok || s.isClosed() {
		req := f.parseRequest(d.data)
		if req == nil {
			s.Stats.Malformed.Add(1)
			return
		}
		pj := newFastJob(req, j.local, j.remote)
		if req.Method == gosip.ACK {
			f.ack(pj)
		} else {
			f.bye(pj)
		}
		return
	}
	s.Stats.Requests.Add(1)
	if d.r.method == gosip.BYE {
		s.inflight.Add(1)
		defer s.inflight.Add(-1)
		s.calls.byeFrom(d.r.callID, d.r.fromTag) // as forwardBye, before the BYE goes on
	}
	f.raw.Add(1)
	f.dialog.Add(1)
	f.sendFrom(laddr, net.UDPAddrFromAddrPort(dest), buf.Bytes(), string(d.r.method), 0)
}

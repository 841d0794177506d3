package sip

import (
	"bytes"
	"net"
	"net/netip"
)

// A response to a request the switch forwarded statelessly (the ACK and
// BYE of statelessdialog.go: its top Via's branch ends with
// statelessBranch) is sent on from its bytes on the read loop, as
// Kamailio's stateless forward of a reply does: the top Via, ours, is
// taken out and the rest goes, byte for byte, to where the next Via says
// (RFC 3261 §16.11 and §18.2.2, RFC 3581 §4: its received and rport).
// Every call ends with one, the 200 of its BYE; parsing it with sipgo's
// parser and writing it again was ~5 % of a call's CPU.
//
// What is read: the status line, the CSeq's method (for the console), and
// the first two Via values. A response whose Vias this reading does not
// vouch for — a Via line folded or listing several values, quotes or
// tabs in one of the first two, a next hop that is a host name, not
// UDP, or at a port written another way than plainly — goes to sipgo's
// parser and forwardStrayResponse, as before. The rest of the message is
// not checked: the next hop gets what the callee sent, as from a
// stateless proxy.

// rawResponse is what readResponse reads of a response.
type rawResponse struct {
	status     int
	method     []byte // the CSeq's method
	branch     []byte // the top Via's branch
	topHost    []byte // the top Via's host
	cut, cutTo int    // the top Via's line, with its CRLF: what is taken out
	dest       netip.AddrPort
}

// readResponse reads data into r; false when it is not a response this
// reading vouches for (see above).
func readResponse(r *rawResponse, data []byte) bool {
	line, rest, ok := cutLine(data)
	if !ok || len(line) < len("SIP/2.0 200 ") || string(line[:len("SIP/2.0 ")]) != "SIP/2.0 " || line[len("SIP/2.0 200")] != ' ' {
		return false
	}
	code := line[len("SIP/2.0 "):len("SIP/2.0 200")]
	if code[0] < '1' || code[0] > '6' || code[1] < '0' || code[1] > '9' || code[2] < '0' || code[2] > '9' {
		return false
	}
	r.status = int(code[0]-'0')*100 + int(code[1]-'0')*10 + int(code[2]-'0')
	var top, next, cseq []byte
	for {
		start := len(data) - len(rest)
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
		switch headerKind(bytes.TrimSpace(name)) {
		case hVia:
			value = bytes.TrimSpace(value)
			switch {
			case top == nil:
				if viaRefused.any(value) {
					return false // a list, quotes, tabs: for sipgo
				}
				top, r.cut, r.cutTo = value, start, len(data)-len(rest)
			case next == nil:
				if viaRefused.any(value) {
					return false // sipgo splits a list its own way
				}
				next = value
			}
		case hCSeq:
			if cseq != nil {
				return false
			}
			cseq = bytes.TrimSpace(value)
		}
	}
	if top == nil || next == nil || cseq == nil {
		return false
	}
	_, r.method, _ = bytes.Cut(cseq, []byte(" "))
	if len(r.method) == 0 {
		return false
	}
	// Ours: its host, and its branch (the first, as sipgo's Params.Get).
	sentBy, params, _ := bytes.Cut(top, []byte(";"))
	if !plainSentBy(sentBy) {
		return false
	}
	_, hostPort, _ := bytes.Cut(sentBy, []byte(" "))
	r.topHost = viaHost(hostPort)
	r.branch = nil
	for len(params) > 0 {
		var p []byte
		p, params, _ = bytes.Cut(params, []byte(";"))
		name, value, _ := bytes.Cut(p, []byte("="))
		if len(name) == 0 {
			return false // sipgo stops reading there
		}
		if string(name) == "branch" && r.branch == nil {
			r.branch = value
		}
	}
	if !bytes.HasSuffix(r.branch, []byte(statelessBranch)) {
		return false
	}
	return r.readNext(next)
}

// readNext reads where the Via value v, the one below ours, sends the
// response, as sipgo's Response.Destination does: to its received
// parameter's address, else its host, and to its rport parameter's port,
// else its port, else 5060 (RFC 3581 §4, RFC 3261 §18.2.2).
func (r *rawResponse) readNext(v []byte) bool {
	sentBy, params, _ := bytes.Cut(v, []byte(";"))
	if !plainSentBy(sentBy) || bytes.IndexByte(params, ' ') >= 0 {
		return false
	}
	proto, hostPort, _ := bytes.Cut(sentBy, []byte(" "))
	if !bytes.EqualFold(proto, []byte("SIP/2.0/UDP")) {
		return false
	}
	host := viaHost(hostPort)
	port := 5060
	if p := viaPort(hostPort); len(p) > 0 {
		port, _ = plainPort(p) // plainSentBy checked it
	}
	var received, rport []byte
	var hasReceived, hasRport bool
	for len(params) > 0 {
		var p []byte
		p, params, _ = bytes.Cut(params, []byte(";"))
		name, value, _ := bytes.Cut(p, []byte("="))
		switch {
		case len(name) == 0:
			return false // sipgo stops reading there
		case string(name) == "received" && !hasReceived:
			received, hasReceived = value, true
		case string(name) == "rport" && !hasRport:
			rport, hasRport = value, true
		}
	}
	if len(received) > 0 {
		host = received
	}
	if len(rport) > 0 {
		p, ok := plainPort(rport)
		if !ok {
			return false // sipgo reads "+5060" and "05060" its own way
		}
		port = p
	}
	addr, err := netip.ParseAddr(string(bytes.TrimSuffix(bytes.TrimPrefix(host, []byte("[")), []byte("]"))))
	if err != nil || addr.Zone() != "" {
		return false // a host name: sipgo resolves it
	}
	r.dest = netip.AddrPortFrom(addr, uint16(port))
	return true
}

// viaHost returns the host of a Via's host[:port], without the brackets
// of an IPv6 reference.
func viaHost(hostPort []byte) []byte {
	if len(hostPort) > 0 && hostPort[0] == '[' {
		end := bytes.IndexByte(hostPort, ']')
		return hostPort[1:end]
	}
	host, _, _ := bytes.Cut(hostPort, []byte(":"))
	return host
}

// viaPort returns the port of a Via's host[:port] ("" when none), as
// plainSentBy checked it.
func viaPort(hostPort []byte) []byte {
	if len(hostPort) > 0 && hostPort[0] == '[' {
		end := bytes.IndexByte(hostPort, ']')
		return bytes.TrimPrefix(hostPort[end+1:], []byte(":"))
	}
	_, port, _ := bytes.Cut(hostPort, []byte(":"))
	return port
}

// forwardRawResponse sends on a response read by readResponse: without
// our Via, from the UDP listener for the next hop's address family. It
// reports whether it sent it; a response whose top Via is not one of ours
// is dropped (never reflect it: forwardStrayResponse's rule).
func (f *fastPath) forwardRawResponse(r *rawResponse, data []byte) bool {
	s := f.s
	if !s.ourBranch(string(r.branch)) || !s.isLocalHost(string(r.topHost)) {
		return false
	}
	out, ok := s.ifaceFor("udp", r.dest.String())
	if !ok {
		return false
	}
	buf := f.bufs.Get().(*bytes.Buffer)
	defer f.bufs.Put(buf)
	buf.Reset()
	buf.Write(data[:r.cut])
	buf.Write(data[r.cutTo:])
	dest := net.UDPAddrFromAddrPort(r.dest)
	f.sendFrom(out.laddr.String(), dest, buf.Bytes(), string(r.method), r.status)
	return true
}

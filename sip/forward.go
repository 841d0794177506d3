package sip

import (
	"crypto/hmac"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	gosip "github.com/emiago/sipgo/sip"
	"github.com/switchboard/switchboard/internal/siphdr"
)

// prepare builds the copy of req to send to t (RFC 3261 §16.6): new
// Request-URI, Max-Forwards, Record-Route, our Via, and an alias on the
// sender's Contact when it is behind NAT. A request forwarded statelessly
// gets a branch that its retransmissions get too (§16.11; see branch).
func (s *Server) prepare(req *gosip.Request, t target, recordRoute, stateless bool) (*gosip.Request, error) {
	out, ok := s.ifaceFor(t.transport, t.dest)
	if !ok {
		return nil, status(503, "Service Unavailable", fmt.Errorf("%w: no %s listener of %s's address family", errNoTarget, t.transport, t.dest))
	}
	in, _ := s.ifaceFor(req.Transport(), req.Source())
	receivedURI := req.Recipient // (a copy: its parameters are not changed)

	fwd := requestCopy(req, t.uri)
	s.consumeCredentials(fwd)
	s.rewriteTrunkHop(req, fwd)
	// Step 3: Max-Forwards.
	if mf := fwd.MaxForwards(); mf != nil {
		mf.Dec()
	} else {
		m := gosip.MaxForwardsHeader(70)
		fwd.AppendHeader(&m)
	}
	// Step 4: Record-Route; two entries when the call changes transport or
	// address family, so that each side routes back over its own (RFC
	// 5658): the top one, which the callee meets first, is the outgoing
	// side's, the other the side the request arrived on.
	if recordRoute {
		if in.transport != "" && !in.sameSide(out) {
			rin := &gosip.RecordRouteHeader{Address: in.uri()}
			rin.Address.UriParams.Add("r2", "on")
			s.signRecordRoute(&rin.Address, req)
			fwd.PrependHeader(rin)
			rout := &gosip.RecordRouteHeader{Address: out.uri()}
			rout.Address.UriParams.Add("r2", "on")
			s.signRecordRoute(&rout.Address, req)
			fwd.PrependHeader(rout)
		} else {
			rr := &gosip.RecordRouteHeader{Address: out.uri()}
			s.signRecordRoute(&rr.Address, req)
			fwd.PrependHeader(rr)
		}
	}
	if !req.IsAck() && !req.IsCancel() && (req.Method == gosip.INVITE || req.Method == gosip.SUBSCRIBE ||
		req.Method == gosip.REFER || req.Method == gosip.UPDATE || req.Method == gosip.NOTIFY) {
		s.addAlias(fwd, req.Via(), req.Source(), req.Transport())
	}
	// RFC 3261 §18.2.1 / RFC 3581 §4: note where the request came from in
	// its top Via, so responses find their way back through NAT.
	if v := fwd.Via(); v != nil {
		if h, p, err := splitHostPort(req.Source()); err == nil {
			if v.Host != h {
				v.Params.Add("received", h)
			}
			if v.Params.Has("rport") {
				v.Params.Add("rport", p)
			}
		}
	}
	// Step 8: our Via, with a branch that carries the loop-detection hash.
	var prev gosip.Header
	if v := fwd.Via(); v != nil {
		prev = v
	}
	fwd.PrependHeader(out.via(s.branch(loopHash(req, &receivedURI, prev), stateless)))

	fwd.SetTransport(strings.ToUpper(out.transport))
	if fwd.Transport() == "WS" && t.transport == "WSS" {
		fwd.SetTransport("WSS")
	}
	fwd.SetDestination(t.dest)
	if out.transport == "udp" {
		// Send from the listening socket so NATs see the address the UA
		// registered with.
		fwd.Laddr = out.laddr
	}
	fwd.SetSource("")
	return fwd, nil
}

// requestCopy returns the copy of a received request that prepare sends
// on to uri. What prepare and the callers of it change in place is copied
// — the Vias (received, rport), From, To and CSeq (trunk hops, a trunk's
// challenge), Contact (addAlias), Max-Forwards and the Routes — and
// everything else is shared with req, the body too: headers are taken off
// the copy's own list, a new body replaces the old one (SetBody), and
// nothing changes a request once it has been received. sipgo's Clone
// copies every header, its parameters and the body: 2.7 % of the CPU of a
// call at 1,000 calls/s.
func requestCopy(req *gosip.Request, uri gosip.Uri) *gosip.Request {
	fwd := gosip.NewRequest(req.Method, uri)
	fwd.SipVersion = req.SipVersion
	for _, h := range req.Headers() {
		switch v := h.(type) {
		case *gosip.ViaHeader, *gosip.FromHeader, *gosip.ToHeader, *gosip.CSeqHeader, *gosip.ContactHeader,
			*gosip.RouteHeader:
			h = gosip.HeaderClone(h)
		case *gosip.MaxForwardsHeader:
			// sipgo's clone of it is the same pointer (v1.7.2): with
			// Clone, each branch of a fork took one more off the request
			// itself, and so off the next branch's.
			mf := *v
			h = &mf
		}
		fwd.AppendHeader(h)
	}
	fwd.SetBody(req.Body())
	fwd.SetTransport(req.Transport())
	fwd.SetSource(req.Source())
	fwd.SetDestination(req.Destination())
	fwd.Laddr = req.Laddr
	return fwd
}

// consumeCredentials removes the Proxy-Authorization values for our realm:
// they were for us, and the next hop has no use for them (RFC 3261 §22.3).
func (s *Server) consumeCredentials(req *gosip.Request) {
	hs := siphdr.All(req, "Proxy-Authorization")
	if len(hs) == 0 {
		return
	}
	keep := make([]gosip.Header, 0, len(hs))
	for _, h := range hs {
		if !strings.Contains(h.Value(), `realm="`+s.cfg.Domain+`"`) {
			keep = append(keep, gosip.HeaderClone(h))
		}
	}
	for req.RemoveHeader("Proxy-Authorization") {
	}
	for _, h := range keep {
		req.AppendHeader(h)
	}
}

func splitHostPort(a string) (string, string, error) {
	ap, err := netip.ParseAddrPort(a)
	if err != nil {
		return "", "", err
	}
	return ap.Addr().Unmap().String(), strconv.Itoa(int(ap.Port())), nil
}

func (i iface) uri() gosip.Uri {
	u := gosip.Uri{Scheme: "sip", Host: i.adv, Port: i.port}
	u.UriParams = gosip.NewParams()
	u.UriParams.Add("transport", i.transport)
	u.UriParams.Add("lr", "")
	return u
}

// via returns our Via for a request sent over i (RFC 3261 §16.6 step 8),
// asking for rport (RFC 3581) so responses come back through NAT.
func (i iface) via(branch string) *gosip.ViaHeader {
	v := &gosip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: strings.ToUpper(i.transport),
		Host: i.adv, Port: i.port, Params: gosip.NewParams()}
	v.Params.Add("branch", branch)
	v.Params.Add("rport", "")
	return v
}

// statelessBranch ends the branch of a request forwarded statelessly
// (ACK, and BYE over UDP: statelessdialog.go), whose responses, matching
// no client transaction, forwardStrayResponse sends on whatever their
// status.
const statelessBranch = ".sl"

// branch is the branch parameter of our Via on a request whose loop hash
// (RFC 3261 §16.6 step 8) is hash: branchPrefix, the hash, then a token
// and a MAC of it under the server's secret, which lets
// forwardStrayResponse tell responses to our own requests from forgeries.
// The token is random, except on a request forwarded statelessly: there it
// is the loop hash's start, so that a retransmission, which has the same
// hash, is sent with the same branch (§16.11), and the branch ends with
// statelessBranch.
func (s *Server) branch(hash string, stateless bool) string {
	if stateless {
		r := hash[:10]
		return branchPrefix + hash + "." + r + s.tokenMAC(r) + statelessBranch
	}
	r := gosip.GenerateTagN(10)
	return branchPrefix + hash + "." + r + s.tokenMAC(r)
}

func (s *Server) tokenMAC(r string) string {
	sum := s.mac(r)
	return hex.EncodeToString(sum[:4])
}

// ourBranch reports whether a branch parameter was made by this server.
func (s *Server) ourBranch(br string) bool {
	rest, ok := strings.CutPrefix(br, branchPrefix)
	if !ok {
		return false
	}
	_, tok, ok := strings.Cut(rest, ".")
	if !ok || len(tok) < 18 {
		return false
	}
	r, mac := tok[:10], tok[10:18]
	return hmac.Equal([]byte(mac), []byte(s.tokenMAC(r)))
}

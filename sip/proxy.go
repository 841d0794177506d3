package sip

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"github.com/emiago/sipgo"
	gosip "github.com/emiago/sipgo/sip"
)

// handle is the sipgo request handler for every method. It runs in its own
// goroutine per request. Exactly one final response is sent on tx: by route
// (directly or through the proxied branches) or, when route returns an
// error, by respondError. ACK gets no response.
//
// A request the switch refuses itself before any call exists is answered
// statelessly (RFC 3261 §16.11 allows it; Kamailio's sl_send_reply does the
// same): its transaction is terminated at once instead of being held for
// Timer J or H, so garbage and floods cost no transaction memory. A
// retransmission is simply answered again.
func (s *Server) handle(req *gosip.Request, tx gosip.ServerTransaction) {
	s.Stats.Requests.Add(1)
	s.conns.sawRequest(req) // the connection delivered a whole request: not idle-closed as silent
	s.inflight.Add(1)
	defer s.inflight.Done()
	ctx, cancel := s.txContext(tx)
	defer cancel()
	if s.txLive.Load() > int64(s.cfg.MaxTransactions) && !isInDialog(req) && !req.IsAck() {
		// Beyond the cap nothing new starts; requests inside dialogs
		// (BYE above all) still go through.
		s.Stats.Overload.Add(1)
		respondError(s.log, req, tx, status(503, "Service Unavailable", errOverload, gosip.NewHeader("Retry-After", "5")))
		tx.Terminate()
		return
	}
	var admitted bool
	if err := s.route(ctx, req, tx, &admitted); err != nil {
		if req.IsAck() {
			s.log.Debug("ACK dropped", "source", req.Source(), "error", err)
			return
		}
		s.Stats.Refused.Add(1)
		respondError(s.log, req, tx, err)
		if !admitted {
			tx.Terminate()
		}
	}
}

// txContext returns a context that ends when tx terminates, and counts tx
// among the live transactions until then. (sipgo's ServerTransactionContext
// returns an already-cancelled context in v1.7.2: it treats OnTerminate's
// "registered" result as "already terminated".)
func (s *Server) txContext(tx gosip.ServerTransaction) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	s.txLive.Add(1)
	var once sync.Once
	end := func() { once.Do(func() { cancel(); s.txLive.Add(-1) }) }
	if !tx.OnTerminate(func(string, error) { end() }) {
		end()
	}
	return ctx, cancel
}

// isInDialog reports whether req claims to be inside a dialog (a To tag).
func isInDialog(req *gosip.Request) bool {
	to := req.To()
	return to != nil && to.Params.Has("tag")
}

// route validates req (RFC 3261 §16.3), preprocesses its route information
// (§16.4) and sends it on, or answers it when it is for the switch itself.
// It sets *admitted once the request has become a call the switch records:
// from then on its refusal is the call's outcome, kept in the transaction.
func (s *Server) route(ctx context.Context, req *gosip.Request, tx gosip.ServerTransaction, admitted *bool) error {
	if err := s.validate(req); err != nil {
		return err
	}
	src, _ := netip.ParseAddrPort(req.Source())
	poppedUs, signed := s.popOwnRoutes(req)

	switch {
	case req.IsAck():
		return s.forwardAck(req, signed)
	case req.IsCancel():
		// sipgo answers a CANCEL that matches an INVITE transaction itself
		// (200, then 487 on the INVITE) and tells the forking code.
		return status(481, "Call/Transaction Does Not Exist", nil)
	case isInDialog(req):
		return s.forwardInDialog(ctx, req, tx, poppedUs, signed)
	}

	local := s.isLocalURI(req.Recipient)
	if req.Method == gosip.REGISTER {
		if !local {
			return status(403, "Forbidden", fmt.Errorf("not our domain: %s", req.Recipient.Host))
		}
		res, err := s.reg.Register(ctx, req)
		if err != nil {
			return err
		}
		return tx.Respond(res)
	}
	if s.draining.Load() {
		return status(503, "Service Unavailable", errors.New("shutting down"), gosip.NewHeader("Retry-After", "30"))
	}
	if req.Method == gosip.OPTIONS && local && req.Recipient.User == "" && req.Route() == nil {
		return tx.Respond(s.optionsResponse(req))
	}

	authUser, err := s.identify(ctx, req, src)
	if err != nil {
		return err
	}
	release, err := s.admitStranger(req, src, authUser)
	if err != nil {
		return err
	}
	defer release()

	var c *call
	if req.IsInvite() {
		c = s.calls.start(req)
		*admitted = true
	}
	targets, err := s.targets(ctx, req, local, authUser)
	if err != nil {
		if c != nil {
			code, reason := responseCode(err)
			s.calls.failed(c, code, reason, "switch")
		}
		return err
	}
	if c != nil {
		if err := s.startMedia(c, req, targets); err != nil {
			code, reason := responseCode(err)
			s.calls.failed(c, code, reason, "switch")
			return err
		}
	}
	return s.proxy(ctx, req, tx, targets, true, c)
}

// identify authenticates requests from our own users: a request whose From
// names this switch must carry digest credentials of the user it claims to
// be (RFC 3261 §22.3, 407). It returns the user, or "" for a stranger.
// OPTIONS to the switch itself (keep-alive pings) were answered before this.
func (s *Server) identify(ctx context.Context, req *gosip.Request, src netip.AddrPort) (string, error) {
	from := req.From()
	if !s.isLocalHost(from.Address.Host) {
		return "", nil
	}
	user, err := s.auth.Authorize(ctx, req, true, src)
	if err != nil {
		return "", err
	}
	if user != from.Address.User {
		return "", status(403, "Forbidden", fmt.Errorf("authenticated as %q but From is %q", user, from.Address.User))
	}
	return user, nil
}

// targets returns where an out-of-dialog request goes: its pre-loaded
// route, the contacts of a local user, or (for our own users only) the
// foreign Request-URI.
func (s *Server) targets(ctx context.Context, req *gosip.Request, local bool, authUser string) ([]target, error) {
	var targets []target
	switch {
	case req.Route() != nil:
		// A pre-loaded route (RFC 3261 §16.4) is only followed for our own users.
		if authUser == "" {
			return nil, status(403, "Forbidden", errors.New("pre-loaded route from a foreign user"))
		}
		targets = []target{routeTarget(req)}
	case local:
		if req.Recipient.User == "" {
			return nil, status(404, "Not Found", errors.New("no user in Request-URI"))
		}
		bindings, known, err := s.reg.Lookup(ctx, req.Recipient.User)
		if err != nil {
			return nil, err
		}
		if !known && authUser == "" {
			// A stranger gets the same answer for a user that does not
			// exist as for one that is not registered: no user lists.
			return nil, status(480, "Temporarily Unavailable", fmt.Errorf("no user %q", req.Recipient.User))
		}
		if !known {
			return nil, status(404, "Not Found", fmt.Errorf("no user %q", req.Recipient.User))
		}
		if len(bindings) == 0 {
			return nil, status(480, "Temporarily Unavailable", fmt.Errorf("%q is not registered", req.Recipient.User))
		}
		loops := 0
		for _, b := range bindings {
			t, err := bindingTarget(b)
			if err != nil {
				s.log.Warn("unusable binding", "aor", b.AOR, "contact", b.Contact, "error", err)
				continue
			}
			if s.isOwnAddress(t.dest) {
				// A contact that names the switch itself would only come
				// back here (RFC 3261 §16.3 step 4).
				loops++
				continue
			}
			targets = append(targets, t)
		}
		if len(targets) == 0 {
			if loops > 0 {
				return nil, status(482, "Loop Detected", errors.New("every contact points at the switch"))
			}
			return nil, status(480, "Temporarily Unavailable", errNoTarget)
		}
	default:
		if authUser == "" {
			return nil, status(403, "Forbidden", fmt.Errorf("relaying to %s denied", req.Recipient.Host))
		}
		targets = []target{uriTarget(req.Recipient)}
	}
	return targets, nil
}

// validate applies RFC 3261 §16.3.
func (s *Server) validate(req *gosip.Request) error {
	if req.From() == nil || req.To() == nil || req.CallID() == nil || req.CSeq() == nil || req.Via() == nil {
		return status(400, "Bad Request", errors.New("missing mandatory header"))
	}
	if c := req.CSeq(); c.MethodName != req.Method && !(req.IsAck() || req.IsCancel()) {
		return status(400, "Bad Request", fmt.Errorf("CSeq method %s does not match %s", c.MethodName, req.Method))
	}
	if req.Recipient.Scheme != "sip" && req.Recipient.Scheme != "sips" && req.Recipient.Scheme != "tel" {
		return status(416, "Unsupported URI Scheme", fmt.Errorf("scheme %q", req.Recipient.Scheme))
	}
	// Step 3: Max-Forwards.
	if mf := req.MaxForwards(); mf != nil && mf.Val() == 0 {
		if req.Method == gosip.OPTIONS && s.isLocalURI(req.Recipient) && req.Recipient.User == "" {
			return nil
		}
		return status(483, "Too Many Hops", nil)
	}
	// Step 4: loops.
	if !req.IsAck() && !req.IsCancel() && s.isLoop(req) {
		return status(482, "Loop Detected", nil)
	}
	// Step 5: Proxy-Require.
	if pr := req.GetHeaders("Proxy-Require"); len(pr) > 0 && !req.IsAck() && !req.IsCancel() {
		var opts []string
		for _, h := range pr {
			for _, o := range strings.Split(h.Value(), ",") {
				if o = strings.TrimSpace(o); o != "" {
					opts = append(opts, o)
				}
			}
		}
		if len(opts) > 0 {
			return status(420, "Bad Extension", nil, gosip.NewHeader("Unsupported", strings.Join(opts, ", ")))
		}
	}
	return nil
}

const allowed = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, SUBSCRIBE, NOTIFY, REFER, INFO, MESSAGE, PRACK, UPDATE"

func (s *Server) optionsResponse(req *gosip.Request) *gosip.Response {
	res := gosip.NewResponseFromRequest(req, 200, "OK", nil)
	res.AppendHeader(gosip.NewHeader("Allow", allowed))
	res.AppendHeader(gosip.NewHeader("Accept", "application/sdp"))
	res.AppendHeader(gosip.NewHeader("Supported", "path, outbound"))
	return res
}

// routeTarget sends to the top Route (a loose router, RFC 3261 §16.12).
func routeTarget(req *gosip.Request) target {
	t := uriTarget(req.Route().Address)
	t.uri = req.Recipient
	return t
}

// dialogTarget is where an in-dialog request goes once our own Route
// entries are gone: the next Route, or the Request-URI — at the address its
// alias parameter names when that UA is behind NAT.
func dialogTarget(req *gosip.Request) target {
	if req.Route() != nil {
		return routeTarget(req)
	}
	if t, ok := aliasTarget(&req.Recipient); ok {
		return t
	}
	return uriTarget(req.Recipient)
}

// forwardInDialog loose-routes a request inside a dialog we record-routed.
// A request is in such a dialog only when the Route entry of ours it carried
// signs its Call-ID and tags (dialogParam): a To tag and our address in a
// Route are easy to forge, and forwarding on them alone would relay anything
// for anyone.
func (s *Server) forwardInDialog(ctx context.Context, req *gosip.Request, tx gosip.ServerTransaction, poppedUs, signed bool) error {
	switch {
	case !poppedUs && s.isLocalURI(req.Recipient):
		return status(481, "Call/Transaction Does Not Exist", nil)
	case !poppedUs:
		return status(404, "Not Found", errors.New("in-dialog request not routed through us"))
	case !signed:
		return status(403, "Forbidden", errors.New("in-dialog request for a dialog the switch did not record-route"))
	}
	if req.Method == gosip.BYE {
		s.calls.bye(req)
	} else {
		s.rewriteBody(req, req.CallID().Value(), s.isFromCaller(req), req.Source())
	}
	return s.proxy(ctx, req, tx, []target{dialogTarget(req)}, false, nil)
}

// forwardAck sends an ACK for a 2xx on statelessly (RFC 3261 §16.11); ACKs
// for our own non-2xx responses are absorbed by sipgo's transaction.
func (s *Server) forwardAck(req *gosip.Request, signed bool) error {
	if !signed {
		// Only ACKs inside dialogs we record-routed (and signed) are
		// relayed; anything else would make the switch an open relay.
		return errors.New("ACK not in a dialog the switch record-routed")
	}
	t := dialogTarget(req)
	fwd, err := s.prepare(req, t, false, "")
	if err != nil {
		return err
	}
	s.rewriteBody(fwd, req.CallID().Value(), s.isFromCaller(req), req.Source())
	return s.client.WriteRequest(fwd, noBuild)
}

// isFromCaller reports whether an in-dialog request comes from the party
// that placed the call.
func (s *Server) isFromCaller(req *gosip.Request) bool {
	tag, _ := req.From().Params.Get("tag")
	return s.calls.fromCaller(req.CallID().Value(), tag)
}

// noBuild stops sipgo's client from adding headers to a request we built.
func noBuild(*sipgo.Client, *gosip.Request) error { return nil }

// prepare builds the copy of req to send to t (RFC 3261 §16.6): new
// Request-URI, Max-Forwards, Record-Route, our Via, and an alias on the
// sender's Contact when it is behind NAT.
func (s *Server) prepare(req *gosip.Request, t target, recordRoute bool, branchSuffix string) (*gosip.Request, error) {
	out, ok := s.ifaceFor(t.transport)
	if !ok {
		return nil, status(503, "Service Unavailable", fmt.Errorf("%w: no %s listener to reach %s", errNoTarget, t.transport, t.dest))
	}
	in, _ := s.ifaceFor(req.Transport())
	receivedURI := req.Recipient.String()

	fwd := req.Clone()
	fwd.Recipient = t.uri
	s.consumeCredentials(fwd)
	// Step 3: Max-Forwards.
	if mf := fwd.MaxForwards(); mf != nil {
		mf.Dec()
	} else {
		m := gosip.MaxForwardsHeader(70)
		fwd.AppendHeader(&m)
	}
	// Step 4: Record-Route; two entries when the call changes transport so
	// each side routes back over its own (RFC 5658).
	if recordRoute {
		if in.transport != "" && in.transport != out.transport {
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
		addAlias(fwd, req.Source(), req.Transport())
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
	prev := ""
	if v := fwd.Via(); v != nil {
		prev = v.Value()
	}
	branch := branchPrefix + loopHash(req, receivedURI, prev) + "." + s.signedToken() + branchSuffix
	if req.IsAck() {
		// §16.11: a stateless forward must give a retransmitted ACK the
		// same branch, so it is derived from the ACK's own top Via.
		sum := sha256.Sum256([]byte(prev + "|" + req.CallID().Value()))
		branch = gosip.RFC3261BranchMagicCookie + "ack" + hex.EncodeToString(sum[:10])
	}
	fwd.PrependHeader(out.via(branch))

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

// consumeCredentials removes the Proxy-Authorization values for our realm:
// they were for us, and the next hop has no use for them (RFC 3261 §22.3).
func (s *Server) consumeCredentials(req *gosip.Request) {
	hs := req.GetHeaders("Proxy-Authorization")
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

package sip

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
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
	defer s.inflight.Add(-1)
	ctx, cancel := s.txContext(tx)
	defer cancel()
	if req.IsInvite() && s.fast != nil && req.Transport() == "UDP" {
		s.invites.add(req, tx) // its ACK, if it is refused, goes to tx (statelessdialog.go)
	}
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
		// Answered statelessly like a refusal: a retransmission of a
		// REGISTER whose 200 was lost is processed again, which the
		// registrar handles (its nonce count is a replay: 401 stale, and
		// the phone registers afresh). This keeps no transaction per
		// registration for Timer J.
		return respondStateless(tx, res)
	}
	if s.draining.Load() {
		return status(503, "Service Unavailable", errors.New("shutting down"), gosip.NewHeader("Retry-After", "30"))
	}
	if req.Method == gosip.OPTIONS && local && req.Recipient.User == "" && req.Route() == nil {
		// A keep-alive ping (or a scanner's probe): answered statelessly,
		// like a refusal, so that no transaction holds it for Timer J.
		return respondStateless(tx, s.optionsResponse(req))
	}

	// A trunk's request is known by its source (IP authentication); our
	// users by their digest credentials.
	carrier := s.carrierOf(req, src)
	authUser := ""
	if carrier == "" {
		var err error
		if authUser, err = s.identify(ctx, req, src); err != nil {
			return err
		}
	}
	release, err := s.admitStranger(req, src, authUser != "" || carrier != "")
	if err != nil {
		return err
	}
	defer release()

	if !req.IsInvite() {
		targets, done, err := s.requestTargets(ctx, req, local, authUser, carrier)
		defer done()
		if err != nil {
			return err
		}
		_, err = s.proxy(ctx, req, tx, targets, true, nil)
		return err
	}
	// An admitted call: whatever happens from here is its outcome,
	// recorded in this one place.
	c := s.calls.start(req)
	*admitted = true
	out, err := s.call(ctx, req, tx, c, local, authUser, carrier)
	s.calls.finish(c, out)
	return err
}

// requestTargets finds where an out-of-dialog request other than an
// INVITE goes; done is to be called when it has been proxied.
func (s *Server) requestTargets(ctx context.Context, req *gosip.Request, local bool, authUser, carrier string) ([]target, func(), error) {
	if carrier != "" {
		return s.inboundRequest(ctx, req, carrier)
	}
	targets, err := s.targets(ctx, req, local, authUser)
	return targets, func() {}, err
}

// call finds where an initial INVITE goes — a trunk's call to the users
// of a number, a local user's call to a number over the trunks, or the
// proxy's own targets — anchors its media and proxies it, and returns how
// it ended.
func (s *Server) call(ctx context.Context, req *gosip.Request, tx gosip.ServerTransaction, c *call, local bool, authUser, carrier string) (outcome, error) {
	if carrier != "" {
		return s.inboundCall(ctx, req, tx, c, carrier)
	}
	targets, err := s.targets(ctx, req, local, authUser)
	if oc, handled, rerr := s.outbound(ctx, req, local, authUser, err); handled {
		if rerr != nil {
			return failure(rerr), rerr
		}
		return s.trunkCall(ctx, req, tx, c, oc)
	}
	if err != nil {
		return failure(err), err
	}
	if err := s.startMedia(c, req, targets); err != nil {
		return failure(err), err
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

const allowed = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, SUBSCRIBE, NOTIFY, REFER, INFO, MESSAGE, PRACK, UPDATE"

func (s *Server) optionsResponse(req *gosip.Request) *gosip.Response {
	res := gosip.NewResponseFromRequest(req, 200, "OK", nil)
	res.AppendHeader(gosip.NewHeader("Allow", allowed))
	res.AppendHeader(gosip.NewHeader("Accept", "application/sdp"))
	res.AppendHeader(gosip.NewHeader("Supported", "path, outbound"))
	return res
}

// noBuild stops sipgo's client from adding headers to a request we built.
func noBuild(*sipgo.Client, *gosip.Request) error { return nil }

// respondStateless sends res and ends tx at once, holding no transaction
// for Timer J (RFC 3261 §17.2.2): a retransmission of the request is
// simply answered again.
func respondStateless(tx gosip.ServerTransaction, res *gosip.Response) error {
	err := tx.Respond(res)
	tx.Terminate()
	return err
}

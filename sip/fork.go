package sip

import (
	"context"
	"errors"
	"sync"
	"time"

	gosip "github.com/emiago/sipgo/sip"
)

// branch is one forwarded copy of a request (RFC 3261 §16.6) and its client
// transaction.
type branch struct {
	req         *gosip.Request
	tx          gosip.ClientTransaction
	provisional bool
	final       *gosip.Response
	timedOut    bool // Timer C fired: its answer counts as 408 (§16.8)
	cancel      bool // CANCEL wanted; sent once a provisional arrives (§9.1)
	cancelSent  bool
	armed       chan struct{} // closed when the CANCEL is sent
	armOnce     sync.Once
}

type branchEvent struct {
	b   *branch
	res *gosip.Response
	err error
}

// recordRouted are the methods that create dialogs we stay in.
func recordRouted(m gosip.RequestMethod) bool {
	switch m {
	case gosip.INVITE, gosip.SUBSCRIBE, gosip.REFER, gosip.NOTIFY:
		return true
	}
	return false
}

// proxy forwards req to every target in parallel and answers stx with the
// best response (RFC 3261 §16.7): each provisional and 2xx as it comes, a
// 6xx at once, otherwise the best final response once all branches are done.
// For an INVITE it runs Timer C (§16.8) and fans the caller's CANCEL out
// (§16.10). It returns nil once the final response has been sent (or sipgo
// answered a CANCEL), or an error when nothing could be forwarded.
//
// c is the call being set up (initial INVITE), or nil.
func (s *Server) proxy(ctx context.Context, req *gosip.Request, stx gosip.ServerTransaction, targets []target, initial bool, c *call) error {
	isInvite := req.IsInvite()
	if c != nil {
		// §16.2: an INVITE gets 100 Trying at once, so the caller stops
		// retransmitting while the branches are set up.
		stx.Respond(gosip.NewResponseFromRequest(req, 100, "Trying", nil))
	}
	// Unbuffered: a branch's response is either taken by this loop or,
	// once the loop has returned, handled by the branch goroutine itself
	// (runBranch) — never left in a buffer nobody reads.
	events := make(chan branchEvent)
	done := make(chan struct{})
	defer close(done)

	var branches []*branch
	var setupErr error
	for _, t := range targets {
		fwd, err := s.prepare(req, t, initial && recordRouted(req.Method), "")
		if err != nil {
			setupErr = err
			continue
		}
		txCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		tx, err := s.client.TransactionRequest(txCtx, fwd, noBuild)
		cancel()
		if err != nil {
			s.log.Debug("branch not sent", "dest", t.dest, "transport", t.transport, "error", err)
			setupErr = status(503, "Service Unavailable", err)
			continue
		}
		b := &branch{req: fwd, tx: tx, armed: make(chan struct{})}
		if isInvite {
			// 2xx retransmissions from downstream go up statelessly
			// (§16.7 step 5 with RFC 6026's Accepted state).
			tx.OnRetransmission(func(res *gosip.Response) { s.relay(req, stx, res) })
		}
		branches = append(branches, b)
		go s.runBranch(b, events, done, req, stx)
	}
	if len(branches) == 0 {
		if setupErr == nil {
			setupErr = status(480, "Temporarily Unavailable", errNoTarget)
		}
		if c != nil {
			code, reason := responseCode(setupErr)
			s.calls.failed(c, code, reason, "switch")
		}
		return setupErr
	}

	var timerC <-chan time.Time
	var tc *time.Timer
	if isInvite {
		tc = time.NewTimer(s.cfg.TimerC)
		defer tc.Stop()
		timerC = tc.C
	}
	cancelled := make(chan struct{})
	if isInvite {
		var once sync.Once
		if st, ok := stx.(*gosip.ServerTx); ok {
			st.OnCancel(func(*gosip.Request) { once.Do(func() { close(cancelled) }) })
		}
	}

	stopCalls := s.stopCalls
	pending := len(branches)
	for pending > 0 {
		select {
		case <-stopCalls:
			// The switch is shutting down: the call ends unanswered; the
			// branches' 487s then make the caller's final response.
			stopCalls = nil
			s.cancelPending(branches)
			if c != nil {
				s.calls.failed(c, 503, "shutdown", "switch")
			}
		case ev := <-events:
			b := ev.b
			if ev.err != nil {
				pending--
				b.final = synthetic(b.req, ev.err)
				if b.timedOut {
					b.final = gosip.NewResponseFromRequest(b.req, 408, "Request Timeout", nil)
				}
				continue
			}
			res := ev.res
			if res.StatusCode < 200 {
				b.provisional = true
				if b.cancel && !b.cancelSent {
					s.sendCancel(b)
				}
				if res.StatusCode > 100 {
					if tc != nil {
						tc.Reset(s.cfg.TimerC) // §16.7 step 2
					}
					s.relay(req, stx, res)
					if c != nil {
						s.calls.ringing(c)
					}
				}
				continue
			}
			pending--
			b.final = res
			if b.timedOut {
				b.final = gosip.NewResponseFromRequest(b.req, 408, "Request Timeout", nil)
			}
			switch {
			case res.StatusCode < 300:
				// §16.7 step 5: a 2xx goes up at once; §16.7 step 10:
				// the other branches are cancelled.
				s.relay(req, stx, res)
				if c != nil {
					s.calls.answered(c, res)
				}
				s.cancelPending(branches)
				return nil
			case res.StatusCode >= 600:
				// §16.7 step 9: a 6xx ends the search.
				s.cancelPending(branches)
				s.relay(req, stx, res)
				if c != nil {
					s.calls.failed(c, res.StatusCode, res.Reason, "callee")
				}
				return nil
			}
		case <-timerC:
			// §16.8: branches without a final answer are cancelled (those
			// with a provisional) or abandoned, and count as 408.
			timerC = nil
			for _, b := range branches {
				if b.final == nil {
					b.timedOut = true
					if b.provisional {
						b.cancel = true
						s.sendCancel(b)
					} else {
						b.tx.Terminate()
					}
				}
			}
		case <-cancelled:
			// §16.10: sipgo has answered the CANCEL (200) and the INVITE
			// (487); cancel every branch still open.
			s.cancelPending(branches)
			if c != nil {
				s.calls.failed(c, 487, "Request Terminated", "caller")
			}
			return nil
		case <-ctx.Done():
			s.cancelPending(branches)
			if c != nil {
				s.calls.failed(c, 500, "transaction ended", "switch")
			}
			return nil
		}
	}
	best := bestResponse(branches)
	s.relay(req, stx, best)
	if c != nil {
		by := "callee"
		if best.StatusCode == 408 || best.StatusCode >= 500 && best.StatusCode < 600 {
			by = "switch"
		}
		s.calls.failed(c, best.StatusCode, best.Reason, by)
	}
	return nil
}

// runBranch passes the branch's responses to the fork until the final one,
// or, once the fork has returned, keeps draining them (forwarding late 2xx
// of other forks) so sipgo's transaction never blocks. It ends a branch that
// ignores our CANCEL after 64*T1 (§16.10).
func (s *Server) runBranch(b *branch, events chan<- branchEvent, done <-chan struct{}, req *gosip.Request, stx gosip.ServerTransaction) {
	var giveUp <-chan time.Time
	armed := b.armed
	for {
		select {
		case res := <-b.tx.Responses():
			select {
			case events <- branchEvent{b: b, res: res}:
			case <-done:
				// The fork has returned; this goroutine alone owns b now.
				switch {
				case res.StatusCode >= 200 && res.StatusCode < 300:
					s.relay(req, stx, res)
				case res.StatusCode < 200 && b.cancel && !b.cancelSent:
					// §9.1: the CANCEL held back until a provisional.
					s.sendCancel(b)
				}
			}
			if res.StatusCode >= 200 {
				return
			}
		case <-b.tx.Done():
			err := b.tx.Err()
			if err == nil {
				err = gosip.ErrTransactionTerminated
			}
			select {
			case events <- branchEvent{b: b, err: err}:
			case <-done:
			}
			return
		case <-armed:
			armed = nil
			t := time.NewTimer(64 * gosip.T1)
			defer t.Stop()
			giveUp = t.C
		case <-giveUp:
			b.tx.Terminate()
			giveUp = nil
		}
	}
}

// cancelPending cancels every branch without a final response.
func (s *Server) cancelPending(branches []*branch) {
	for _, b := range branches {
		if b.final == nil && b.req.IsInvite() {
			b.cancel = true
			if b.provisional {
				s.sendCancel(b)
			} else {
				// §9.1: no CANCEL before a provisional; the branch is
				// abandoned once it has had 64*T1 to answer.
				b.armOnce.Do(func() { close(b.armed) })
			}
		}
	}
}

// sendCancel sends CANCEL for a branch (RFC 3261 §9.1) in a client
// transaction of its own, drained in the background (bounded by Timer F).
func (s *Server) sendCancel(b *branch) {
	if b.cancelSent {
		return
	}
	b.cancelSent = true
	b.armOnce.Do(func() { close(b.armed) })
	inv := b.req
	cancel := gosip.NewRequest(gosip.CANCEL, inv.Recipient)
	cancel.SipVersion = inv.SipVersion
	cancel.AppendHeader(inv.Via().Clone())
	for _, r := range inv.GetHeaders("Route") {
		cancel.AppendHeader(gosip.HeaderClone(r))
	}
	mf := gosip.MaxForwardsHeader(70)
	cancel.AppendHeader(&mf)
	cancel.AppendHeader(gosip.HeaderClone(inv.From()))
	cancel.AppendHeader(gosip.HeaderClone(inv.To()))
	cancel.AppendHeader(gosip.HeaderClone(inv.CallID()))
	cseq := *inv.CSeq()
	cseq.MethodName = gosip.CANCEL
	cancel.AppendHeader(&cseq)
	cancel.SetTransport(inv.Transport())
	cancel.SetDestination(inv.Destination())
	cancel.Laddr = inv.Laddr
	if tx := s.startOwn(cancel); tx != nil {
		go awaitFinal(tx)
	}
}

// startOwn starts a client transaction for a request the switch itself
// originates (CANCEL, BYE), or returns nil (logged) if it cannot be sent.
func (s *Server) startOwn(req *gosip.Request) gosip.ClientTransaction {
	ctx, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	tx, err := s.client.TransactionRequest(ctx, req, noBuild)
	if err != nil {
		s.log.Debug("request not sent", "method", string(req.Method), "error", err)
		return nil
	}
	return tx
}

// awaitFinal drains tx until its final response or its end (bounded by
// Timer F), then terminates it.
func awaitFinal(tx gosip.ClientTransaction) {
	defer tx.Terminate()
	for {
		select {
		case res := <-tx.Responses():
			if res.StatusCode >= 200 {
				return
			}
		case <-tx.Done():
			return
		}
	}
}

// relay sends a response from downstream up to the caller: our Via comes
// off (§16.7 step 3), a NATed answerer's Contact gets an alias, and the
// response goes on the server transaction — or statelessly once that has
// ended (late 2xx of a forked call, 2xx retransmissions).
func (s *Server) relay(req *gosip.Request, stx gosip.ServerTransaction, res *gosip.Response) {
	out := res.Clone()
	removeTopHeader(out, "Via")
	if req.IsInvite() && out.StatusCode > 100 && out.StatusCode < 300 {
		addAlias(out, res.Source(), res.Transport())
	}
	if out.StatusCode > 100 && out.StatusCode < 300 {
		// The answer comes from the party the request went to.
		s.rewriteBody(out, req.CallID().Value(), !s.isFromCaller(req), res.Source())
	}
	out.SetTransport(req.Transport())
	out.SetDestination(req.Source())
	out.SetSource("")
	if err := stx.Respond(out); err != nil {
		if out.StatusCode >= 200 && out.StatusCode < 300 {
			if err := s.ua.TransportLayer().WriteMsg(out); err != nil {
				s.log.Debug("2xx not relayed", "error", err)
			}
			return
		}
		s.log.Debug("response not relayed", "status", out.StatusCode, "error", err)
	}
}

// forwardStrayResponse handles responses that match no client transaction:
// 2xx retransmissions after the transaction is gone. If the top Via is ours
// it comes off and the response goes to the next Via (RFC 3261 §16.11,
// §18.2.2); anything else is dropped (RFC 6026 §7.2).
func (s *Server) forwardStrayResponse(res *gosip.Response) {
	v := res.Via()
	if v == nil || res.StatusCode < 200 || res.StatusCode >= 300 {
		return
	}
	br, _ := v.Params.Get("branch")
	if !s.ourBranch(br) || !s.isLocalHost(v.Host) {
		return // not a response to a request of ours: never reflect it
	}
	out := res.Clone()
	removeTopHeader(out, "Via")
	if out.Via() == nil {
		return
	}
	out.SetTransport("")
	out.SetDestination("")
	out.SetSource("")
	if err := s.ua.TransportLayer().WriteMsg(out); err != nil {
		s.log.Debug("stray 2xx not forwarded", "error", err)
	}
}

// synthetic is the response a branch counts as when its transaction ended
// without one: 408 on timeout, 503 on a transport failure (§16.7 step 1,
// §16.9).
func synthetic(req *gosip.Request, err error) *gosip.Response {
	if errors.Is(err, gosip.ErrTransactionTimeout) || errors.Is(err, gosip.ErrTransactionTerminated) {
		return gosip.NewResponseFromRequest(req, 408, "Request Timeout", nil)
	}
	return gosip.NewResponseFromRequest(req, 503, "Service Unavailable", nil)
}

// bestResponse chooses among the branches' final responses (RFC 3261
// §16.7 step 6): a 6xx, else the lowest class, preferring within 4xx the
// responses a caller can act on (401, 407, 415, 420, 484). The challenges
// of all 401/407 responses are gathered into the chosen one (§16.7 step 7),
// and 503 becomes 500 so the caller does not retry elsewhere (§16.7 step 6).
func bestResponse(branches []*branch) *gosip.Response {
	var best *gosip.Response
	rank := func(r *gosip.Response) int {
		c := r.StatusCode
		switch {
		case c >= 600:
			return 0
		case c == 401 || c == 407 || c == 415 || c == 420 || c == 484:
			return 400
		}
		return (c/100)*100 + 1
	}
	for _, b := range branches {
		if b.final == nil {
			continue
		}
		if best == nil || rank(b.final) < rank(best) {
			best = b.final
		}
	}
	if best == nil {
		return nil
	}
	out := best.Clone()
	if out.StatusCode == 401 || out.StatusCode == 407 {
		for _, b := range branches {
			if b.final == nil || b.final == best || (b.final.StatusCode != 401 && b.final.StatusCode != 407) {
				continue
			}
			for _, name := range []string{"WWW-Authenticate", "Proxy-Authenticate"} {
				for _, h := range b.final.GetHeaders(name) {
					out.AppendHeader(gosip.HeaderClone(h))
				}
			}
		}
	}
	if out.StatusCode == 503 {
		out.StatusCode, out.Reason = 500, "Server Internal Error"
	}
	return out
}

// responseCode returns the status an error maps to.
func responseCode(err error) (int, string) {
	var st sipStatuser
	if errors.As(err, &st) {
		return st.SIPStatus()
	}
	return 500, "Server Internal Error"
}

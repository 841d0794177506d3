package sip

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	gosip "github.com/emiago/sipgo/sip"

	"github.com/switchboard/switchboard/internal/siphdr"
	"github.com/switchboard/switchboard/internal/sipstatus"
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

// outcome is how a proxied request ended, as its call record wants it: the
// 2xx that answered it, or the final status, its reason and who ended it
// ("caller", "callee", "switch").
type outcome struct {
	answer *gosip.Response
	code   int
	reason string
	by     string
}

// failure is the outcome of a request that could not be forwarded.
func failure(err error) outcome {
	code, reason := sipstatus.Of(err)
	return outcome{code: code, reason: reason, by: "switch"}
}

// proxy forwards req to every target in parallel and answers stx with the
// best response (RFC 3261 §16.7): each provisional and 2xx as it comes, a
// 6xx at once, otherwise the best final response once all branches are done.
// For an INVITE it runs Timer C (§16.8) and fans the caller's CANCEL out
// (§16.10). It returns how the request ended once the final response has
// been sent (or sipgo answered a CANCEL), or an error when nothing could be
// forwarded, for the caller to answer with.
//
// c is the call being set up (initial INVITE), or nil; proxy marks it
// ringing, and leaves recording its outcome to the caller.
func (s *Server) proxy(ctx context.Context, req *gosip.Request, stx gosip.ServerTransaction, targets []target, initial bool, c *call) (outcome, error) {
	if c != nil {
		// §16.2: an INVITE gets 100 Trying at once, so the caller stops
		// retransmitting while the branches are set up.
		_ = stx.Respond(sipstatus.NewResponse(req, 100, "Trying")) // best effort: the caller retransmits
	}
	// Unbuffered: a branch's response is either taken by the fork loop or,
	// once it has returned, handled by the branch goroutine itself
	// (runBranch) — never left in a buffer nobody reads.
	f := &fork{s: s, req: req, stx: stx, c: c, events: make(chan branchEvent), done: make(chan struct{})}
	defer close(f.done)
	if err := f.start(ctx, targets, initial && recordRouted(req.Method)); err != nil {
		return failure(err), err
	}
	return f.run(ctx), nil
}

// fork is one request being proxied to its branches (§16.6–16.10).
type fork struct {
	s        *Server
	req      *gosip.Request
	stx      gosip.ServerTransaction
	c        *call
	events   chan branchEvent
	done     chan struct{} // closed when the fork has returned
	branches []*branch
}

// start sends a copy of the request to each target (§16.6), each in a
// client transaction of its own. It fails only when no copy could be sent.
func (f *fork) start(ctx context.Context, targets []target, recordRoute bool) error {
	s, req := f.s, f.req
	var setupErr error
	for _, t := range targets {
		fwd, err := s.prepare(req, t, recordRoute, false)
		if err == nil && f.c != nil {
			err = s.branchOffer(fwd, t)
		}
		if err != nil {
			setupErr = err
			continue
		}
		txCtx, cancel := connectContext(ctx, fwd)
		key, inbox := s.inboxes.expect(fwd) // before a response can come
		tx, err := s.transactionRequest(txCtx, fwd)
		cancel()
		if err != nil {
			s.inboxes.abandon(key, inbox)
			s.log.Debug("branch not sent", "dest", t.dest, "transport", t.transport, "error", err)
			setupErr = status(503, "Service Unavailable", err)
			continue
		}
		s.inboxes.start(key, inbox, tx)
		b := &branch{req: fwd, tx: tx, armed: make(chan struct{})}
		if req.IsInvite() {
			// 2xx retransmissions from downstream go up statelessly
			// (§16.7 step 5 with RFC 6026's Accepted state).
			tx.OnRetransmission(func(res *gosip.Response) { s.relay(req, f.stx, res) })
		}
		f.branches = append(f.branches, b)
		go s.runBranch(b, f.events, f.done, req, f.stx)
	}
	if len(f.branches) > 0 {
		return nil
	}
	if setupErr == nil {
		setupErr = status(480, "Temporarily Unavailable", errNoTarget)
	}
	return setupErr
}

// run collects the branches' responses until the request is answered
// (§16.7), Timer C fires (§16.8), the caller cancels (§16.10), the switch
// shuts down or the transaction ends, and returns the outcome.
func (f *fork) run(ctx context.Context) outcome {
	s, req := f.s, f.req
	var timerC <-chan time.Time
	var tc *time.Timer
	cancelled := make(chan struct{})
	if req.IsInvite() {
		tc = time.NewTimer(s.cfg.TimerC)
		defer tc.Stop()
		timerC = tc.C
		var once sync.Once
		if st, ok := f.stx.(*gosip.ServerTx); ok {
			st.OnCancel(func(*gosip.Request) { once.Do(func() { close(cancelled) }) })
		}
	}
	stopCalls := s.stopCalls
	var hungUp <-chan struct{} // an operator hangs the call up (admin.go)
	if f.c != nil {
		hungUp = f.c.hangup
	}
	var stopped *outcome
	for pending := len(f.branches); pending > 0; {
		select {
		case ev := <-f.events:
			if out, final := f.event(ev, tc, &pending); final {
				return out
			}
		case <-stopCalls:
			// The switch is shutting down: the call ends unanswered; the
			// branches' 487s then make the caller's final response.
			stopCalls = nil
			s.cancelPending(f.branches)
			stopped = &outcome{code: 503, reason: "shutdown", by: "switch"}
		case <-hungUp:
			// Like a shutdown, for this call only: the branches' 487s
			// make the caller's final response.
			hungUp = nil
			s.cancelPending(f.branches)
			stopped = &outcome{code: 487, reason: "hung up by operator", by: "switch"}
		case <-timerC:
			timerC = nil
			f.timerC()
		case <-cancelled:
			// §16.10: sipgo has answered the CANCEL (200) and the INVITE
			// (487); cancel every branch still open.
			s.cancelPending(f.branches)
			return outcome{code: 487, reason: "Request Terminated", by: "caller"}
		case <-ctx.Done():
			s.cancelPending(f.branches)
			return outcome{code: 500, reason: "transaction ended", by: "switch"}
		}
	}
	best := bestResponse(f.branches)
	s.relay(req, f.stx, best)
	if stopped != nil {
		return *stopped
	}
	by := "callee"
	if best.StatusCode == 408 || best.StatusCode >= 500 && best.StatusCode < 600 {
		by = "switch"
	}
	return outcome{code: best.StatusCode, reason: best.Reason, by: by}
}

// event handles one branch response or error; final reports whether it
// decided the request (a 2xx or a 6xx, relayed at once).
func (f *fork) event(ev branchEvent, tc *time.Timer, pending *int) (outcome, bool) {
	s, req, b := f.s, f.req, ev.b
	if ev.err != nil {
		*pending--
		b.final = synthetic(b.req, ev.err)
		if b.timedOut {
			b.final = gosip.NewResponseFromRequest(b.req, 408, "Request Timeout", nil)
		}
		return outcome{}, false
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
			s.relay(req, f.stx, res)
			if f.c != nil {
				s.calls.ringing(f.c)
			}
		}
		return outcome{}, false
	}
	*pending--
	b.final = res
	if b.timedOut {
		b.final = gosip.NewResponseFromRequest(b.req, 408, "Request Timeout", nil)
	}
	switch {
	case res.StatusCode < 300:
		// §16.7 step 5: a 2xx goes up at once; §16.7 step 10: the other
		// branches are cancelled. The call is marked answered before the
		// 2xx leaves: the dialog it opens may end (BYE) before this
		// goroutine gets further, and that BYE must find an answered call.
		if f.c != nil {
			s.calls.answered(f.c, res)
		}
		s.relay(req, f.stx, res)
		s.cancelPending(f.branches)
		return outcome{answer: res}, true
	case res.StatusCode >= 600:
		// §16.7 step 9: a 6xx ends the search.
		s.cancelPending(f.branches)
		s.relay(req, f.stx, res)
		return outcome{code: res.StatusCode, reason: res.Reason, by: "callee"}, true
	}
	return outcome{}, false
}

// timerC applies §16.8: branches without a final answer are cancelled
// (those with a provisional) or abandoned, and count as 408.
func (f *fork) timerC() {
	for _, b := range f.branches {
		if b.final == nil {
			b.timedOut = true
			if b.provisional {
				b.cancel = true
				f.s.sendCancel(b)
			} else {
				b.tx.Terminate()
			}
		}
	}
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
	for _, r := range siphdr.All(inv, "Route") {
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

// connectContext bounds what sending req may wait for: the connection
// to its next hop over TCP, TLS or WebSocket (10 s). Over UDP nothing
// waits (sipgo only uses the context to get a connection), so ctx is
// returned as it is: a timer per branch was ~4 % of what a call allocated.
func connectContext(ctx context.Context, req *gosip.Request) (context.Context, context.CancelFunc) {
	if strings.EqualFold(req.Transport(), "UDP") {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, 10*time.Second)
}

// startOwn starts a client transaction for a request the switch itself
// originates (CANCEL, BYE), or returns nil (logged) if it cannot be sent.
func (s *Server) startOwn(req *gosip.Request) gosip.ClientTransaction {
	ctx, stop := connectContext(context.Background(), req)
	defer stop()
	tx, err := s.transactionRequest(ctx, req)
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
	out := relayCopy(res)
	removeTopHeader(out, "Via")
	restoreHop(req, out)
	if req.IsInvite() && out.StatusCode > 100 && out.StatusCode < 300 {
		s.addAlias(out, nil, res.Source(), res.Transport())
	}
	if out.StatusCode > 100 && out.StatusCode < 300 {
		// The answer comes from the party the request went to.
		s.rewriteBody(out, req.CallID().Value(), !s.isFromCaller(req), res.Source())
	}
	out.SetTransport(req.Transport())
	out.SetDestination(req.Source())
	out.SetSource("")
	if err := stx.Respond(out); err != nil {
		if out.StatusCode >= 200 && out.StatusCode < 300 && !s.isClosed() {
			if err := s.ua.TransportLayer().WriteMsg(out); err != nil {
				s.log.Debug("2xx not relayed", "error", err)
			}
			return
		}
		s.log.Debug("response not relayed", "status", out.StatusCode, "error", err)
	}
}

// relayCopy returns the copy of a received response that relay (and
// forwardStrayResponse) sends on.
// What relay changes in place is copied — the CSeq, From and To (restoreHop)
// and the Contact (addAlias) — and everything else is shared with res:
// the Vias are taken off the copy's own list, a new body replaces the old
// one with its Content-Length (SetBody), and nothing changes a response
// once it has been received. sipgo's Clone copies every header and its
// parameters: 2.3 % of the CPU of a call at 1,000 calls/s.
func relayCopy(res *gosip.Response) *gosip.Response {
	out := gosip.NewResponse(res.StatusCode, res.Reason)
	out.SipVersion = res.SipVersion
	for _, h := range res.Headers() {
		switch h.(type) {
		case *gosip.CSeqHeader, *gosip.FromHeader, *gosip.ToHeader, *gosip.ContactHeader:
			h = gosip.HeaderClone(h)
		}
		out.AppendHeader(h)
	}
	out.SetBody(res.Body())
	out.SetTransport(res.Transport())
	out.SetSource(res.Source())
	// No destination: both callers set their own, and sipgo's
	// Destination of a received response formats one from its top Via
	// (ours, which comes off): 3 allocations per response.
	return out
}

// forwardStrayResponse handles responses that match no client transaction:
// 2xx retransmissions after the transaction is gone, and every response to
// a request forwarded statelessly (statelessdialog.go). If the top Via is ours
// it comes off and the response goes to the next Via (RFC 3261 §16.11,
// §18.2.2); anything else is dropped (RFC 6026 §7.2).
func (s *Server) forwardStrayResponse(res *gosip.Response) {
	v := res.Via()
	if v == nil {
		return
	}
	br, _ := v.Params.Get("branch")
	if (res.StatusCode < 200 || res.StatusCode >= 300) && !strings.HasSuffix(br, statelessBranch) {
		return // only a request forwarded statelessly has other responses to pass on
	}
	if !s.ourBranch(br) || !s.isLocalHost(v.Host) {
		return // not a response to a request of ours: never reflect it
	}
	out := relayCopy(res)
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
				for _, h := range siphdr.All(b.final, name) {
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

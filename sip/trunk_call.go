package sip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	gosip "github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
	"github.com/switchboard/switchboard/internal/siphdr"
)

// trunkDialog is how the switch rewrites the requests of a call it sent
// out over a trunk, on the trunk's side of the hop: the trunk was given
// another identity for the caller (its number) and, when it challenged the
// INVITE, a higher CSeq (RFC 3261 §22.2: a request re-sent with
// credentials takes the next CSeq). Requests of the caller going to the
// trunk get both; requests of the trunk going to the caller get the
// caller's own URI back in To; responses relayed up get what the request
// they answer had (restoreHop). Kamailio's uac_replace_from and uac_auth
// with the dialog module's CSeq tracking do the same.
type trunkDialog struct {
	offset    uint32    // added to the caller's CSeq numbers towards the trunk
	caller    gosip.Uri // the caller's From URI as it sent it
	presented gosip.Uri // the From URI the trunk was given
}

// presentedFrom returns the caller's From (tag and display name kept)
// with the URI the trunk knows.
func (d *trunkDialog) presentedFrom(from *gosip.FromHeader) *gosip.FromHeader {
	f, _ := gosip.HeaderClone(from).(*gosip.FromHeader)
	if f == nil {
		return from
	}
	f.Address = *d.presented.Clone()
	return f
}

// onEnd arranges for f (which may be nil) to run when c ends, or now if
// it has ended already.
func (t *callTracker) onEnd(c *call, f func()) {
	if f == nil {
		return
	}
	t.mu.Lock()
	if c.ended {
		t.mu.Unlock()
		f()
		return
	}
	c.onEnd = append(c.onEnd, f)
	t.mu.Unlock()
}

// setTrunk notes that c's answered branch went out over a trunk.
func (t *callTracker) setTrunk(c *call, d *trunkDialog) {
	t.mu.Lock()
	c.trunk = d
	t.mu.Unlock()
}

// endedTrunk is the rewriting of a trunk call that has ended, kept for
// the requests that follow its end: the BYE that ended it is forwarded
// after the call is recorded as ended, and one may cross another.
type endedTrunk struct {
	d         *trunkDialog
	callerTag string
	at        time.Time
}

// endedTrunkAge is how long endedTrunk entries are kept (at least; the
// sweep runs every minute).
const endedTrunkAge = time.Minute

// trunkOf returns the trunk rewriting of the call with this Call-ID (or
// one that ended less than endedTrunkAge ago) and its caller's From tag,
// or nil.
func (t *callTracker) trunkOf(callID string) (*trunkDialog, string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c, ok := t.calls[callID]; ok && c.trunk != nil {
		return c.trunk, c.callerTag
	}
	if e, ok := t.endedTrunks[callID]; ok {
		return e.d, e.callerTag
	}
	return nil, ""
}

// keepEndedTrunkLocked remembers an ending call's trunk rewriting; the
// caller holds t.mu.
func (t *callTracker) keepEndedTrunkLocked(c *call) {
	if c.trunk == nil {
		return
	}
	if t.endedTrunks == nil {
		t.endedTrunks = map[string]endedTrunk{}
	}
	t.endedTrunks[c.id] = endedTrunk{d: c.trunk, callerTag: c.callerTag, at: t.now()}
}

// sweepEndedTrunks forgets the rewriting of calls that ended long enough
// ago.
func (t *callTracker) sweepEndedTrunks() {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, e := range t.endedTrunks {
		if now.Sub(e.at) > endedTrunkAge {
			delete(t.endedTrunks, id)
		}
	}
}

// rewriteTrunkHop applies a trunk call's rewriting (trunkDialog) to fwd,
// the copy of the in-dialog request req (ACK included) about to be sent.
func (s *Server) rewriteTrunkHop(req, fwd *gosip.Request) {
	if !isInDialog(req) || req.IsCancel() {
		return
	}
	d, callerTag := s.calls.trunkOf(req.CallID().Value())
	if d == nil {
		return
	}
	if tag, _ := req.From().Params.Get("tag"); tag == callerTag {
		fwd.From().Address = *d.presented.Clone()
		fwd.CSeq().SeqNo += d.offset
		return
	}
	fwd.To().Address = *d.caller.Clone()
}

// restoreHop gives a response relayed upstream the CSeq number, From and
// To URI of the request it answers as the upstream party sent it (RFC
// 3261 §8.2.6.2): they differ only where the switch rewrote them towards a
// trunk (trunkDialog). The To tag is the answerer's and stays.
func restoreHop(req *gosip.Request, res *gosip.Response) {
	if c, rc := req.CSeq(), res.CSeq(); c != nil && rc != nil && rc.SeqNo != c.SeqNo && rc.MethodName == c.MethodName {
		rc.SeqNo = c.SeqNo
	}
	if f, rf := req.From(), res.From(); f != nil && rf != nil && !sameUserHost(f.Address, rf.Address) {
		rf.Address = *f.Address.Clone()
	}
	if to, rt := req.To(), res.To(); to != nil && rt != nil && !sameUserHost(to.Address, rt.Address) {
		rt.Address = *to.Address.Clone()
	}
}

func sameUserHost(a, b gosip.Uri) bool {
	return a.Scheme == b.Scheme && a.User == b.User && strings.EqualFold(a.Host, b.Host) && a.Port == b.Port
}

// legTarget is where a trunk leg is sent.
func legTarget(l TrunkLeg) target {
	return target{uri: l.URI, dest: l.Dest, transport: strings.ToUpper(l.Transport)}
}

// maxTrunkAuth bounds the challenges answered on one trunk leg: a proxy's
// 407 and then its UAS's 401.
const maxTrunkAuth = 2

// trunkCall sends a local user's call to a number out over the trunks of
// its route, one after another (serial forking, RFC 3261 §16.6, each try
// a new branch): the next trunk is tried when one answers 408 or 5xx,
// sends nothing within its leg's Timeout, refuses our credentials or is at
// max_calls; a 2xx, 4xx or 6xx ends the search. A trunk's 401/407 is
// answered with its credentials. It returns how the call ended once the
// final response has been sent, or an error for the caller to answer with
// when no trunk could be tried.
func (s *Server) trunkCall(ctx context.Context, req *gosip.Request, stx gosip.ServerTransaction, c *call, oc *OutboundCall) (outcome, error) {
	s.calls.onEnd(c, oc.Release)
	// §16.2: 100 Trying at once, while the first trunk is tried.
	_ = stx.Respond(gosip.NewResponseFromRequest(req, 100, "Trying", nil)) // best effort: the caller retransmits
	targets := make([]target, len(oc.Legs))
	for i, l := range oc.Legs {
		targets[i] = legTarget(l)
	}
	if err := s.startMedia(c, req, targets); err != nil {
		return failure(err), err
	}
	sc := &serialCall{s: s, req: req, stx: stx, c: c, oc: oc, stopCalls: s.stopCalls, hungUp: c.hangup,
		cancelled: make(chan struct{})}
	return sc.run(ctx)
}

// serialCall is one outbound call being tried over its trunks.
type serialCall struct {
	s   *Server
	req *gosip.Request
	stx gosip.ServerTransaction
	c   *call
	oc  *OutboundCall

	tried     []*branch // every branch sent, for the best response (§16.7 step 6)
	timerC    *time.Timer
	cancelled chan struct{}
	stopCalls <-chan struct{}
	hungUp    <-chan struct{}
}

// legEnd is how one trunk leg ended.
type legEnd int

const (
	legAnswered   legEnd = iota // a 2xx: the call is up
	legFinal                    // a final response that ends the search (relayed)
	legFailover                 // try the next trunk
	legChallenged               // re-send with credentials
	legEnded                    // the call ended (CANCEL, Timer C, shutdown): answered upstream
)

func (sc *serialCall) run(ctx context.Context) (outcome, error) {
	s := sc.s
	sc.timerC = time.NewTimer(s.cfg.TimerC)
	defer sc.timerC.Stop()
	if st, ok := sc.stx.(*gosip.ServerTx); ok {
		var once sync.Once
		st.OnCancel(func(*gosip.Request) { once.Do(func() { close(sc.cancelled) }) })
	}
	var skipped error
	for i, leg := range sc.oc.Legs {
		select {
		case <-sc.cancelled:
			// Cancelled between two trunks: sipgo has answered (487).
			return outcome{code: 487, reason: "Request Terminated", by: "caller"}, nil
		default:
		}
		release := func() {}
		if leg.Acquire != nil {
			rel, ok := leg.Acquire()
			if !ok {
				skipped = status(503, "Service Unavailable", fmt.Errorf("trunk %s is at max_calls", leg.Trunk),
					gosip.NewHeader("Warning", fmt.Sprintf(`399 %s "trunk %s: max_calls reached"`, s.cfg.Domain, leg.Trunk)))
				continue
			}
			release = once(rel)
		}
		if i > 0 || len(sc.tried) > 0 {
			s.log.Info("trunk failover", "call_id", sc.c.id, "trunk", leg.Trunk, "number", sc.oc.Number)
		}
		s.recordRouted(sc.c, leg.Trunk, sc.oc.Dialled, sc.oc.Number, sc.oc.Route)
		end, out := sc.tryLeg(ctx, leg)
		if end == legAnswered {
			s.calls.onEnd(sc.c, release)
			return out, nil
		}
		release()
		if end != legFailover {
			return out, nil
		}
	}
	if len(sc.tried) == 0 {
		if skipped == nil {
			skipped = status(503, "Service Unavailable", errors.New("no trunk could be tried"))
		}
		return failure(skipped), skipped
	}
	best := bestResponse(sc.tried)
	s.relay(sc.req, sc.stx, best)
	by := "callee"
	if best.StatusCode == 408 || best.StatusCode >= 500 && best.StatusCode < 600 {
		by = "switch"
	}
	return outcome{code: best.StatusCode, reason: best.Reason, by: by}, nil
}

// tryLeg sends the call to one trunk, answering up to maxTrunkAuth of its
// challenges, each with a new branch and the next CSeq.
func (sc *serialCall) tryLeg(ctx context.Context, leg TrunkLeg) (legEnd, outcome) {
	var challenge *gosip.Response
	for attempt := 0; ; attempt++ {
		b, err := sc.send(ctx, leg, uint32(attempt), challenge)
		if err != nil {
			sc.s.log.Info("trunk not reached", "call_id", sc.c.id, "trunk", leg.Trunk, "error", err)
			code, reason := 503, "Service Unavailable"
			if c, r := statusOf(err); c >= 500 {
				code, reason = c, r
			}
			sc.tried = append(sc.tried, &branch{final: gosip.NewResponseFromRequest(sc.req, code, reason, nil)})
			return legFailover, outcome{}
		}
		sc.tried = append(sc.tried, b)
		end, out, res := sc.await(ctx, b, leg, uint32(attempt))
		if end != legChallenged {
			return end, out
		}
		if leg.Username == "" || attempt >= maxTrunkAuth {
			// The trunk's challenge is not the caller's to answer (it
			// would hand the trunk a digest of the caller's password):
			// the trunk refused us, try the next.
			sc.s.log.Warn("trunk refused the switch's credentials", "trunk", leg.Trunk, "status", res.StatusCode,
				"credentials", leg.Username != "")
			b.final = gosip.NewResponseFromRequest(sc.req, 503, "Service Unavailable", nil)
			return legFailover, outcome{}
		}
		challenge = res
	}
}

func statusOf(err error) (int, string) {
	var se interface{ SIPStatus() (int, string) }
	if errors.As(err, &se) {
		return se.SIPStatus()
	}
	return 0, ""
}

// send builds the INVITE for leg (the trunk's Request-URI, the identity
// presented, CSeq raised by offset, credentials answering challenge when
// given) and starts its client transaction.
func (sc *serialCall) send(ctx context.Context, leg TrunkLeg, offset uint32, challenge *gosip.Response) (*branch, error) {
	s, req := sc.s, sc.req
	t := legTarget(leg)
	fwd, err := s.prepare(req, t, true, false)
	if err == nil {
		err = s.branchOffer(fwd, t)
	}
	if err != nil {
		return nil, err
	}
	presentAs(fwd, leg.Identity)
	fwd.CSeq().SeqNo += offset
	if challenge != nil {
		if err := AnswerChallenge(fwd, challenge, leg.Username, leg.Password); err != nil {
			return nil, err
		}
	}
	txCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	tx, err := s.transactionRequest(txCtx, fwd)
	cancel()
	if err != nil {
		return nil, status(503, "Service Unavailable", err)
	}
	b := &branch{req: fwd, tx: tx, armed: make(chan struct{})}
	// 2xx retransmissions go up statelessly (§16.7 step 5, RFC 6026).
	tx.OnRetransmission(func(res *gosip.Response) { s.relay(req, sc.stx, res) })
	return b, nil
}

// await follows one branch to its end (see legEnd). A challenge is
// returned with legChallenged.
func (sc *serialCall) await(ctx context.Context, b *branch, leg TrunkLeg, offset uint32) (legEnd, outcome, *gosip.Response) {
	s, req := sc.s, sc.req
	events := make(chan branchEvent)
	done := make(chan struct{})
	defer close(done) // runBranch drains the branch from then on
	go s.runBranch(b, events, done, req, sc.stx)
	var noAnswer <-chan time.Time
	if leg.Timeout > 0 {
		t := time.NewTimer(leg.Timeout)
		defer t.Stop()
		noAnswer = t.C
	}
	var ending *outcome // the call is over once this branch has its final response
	for {
		select {
		case ev := <-events:
			if ev.err != nil {
				b.final = synthetic(b.req, ev.err)
				if b.timedOut {
					b.final = gosip.NewResponseFromRequest(b.req, 408, "Request Timeout", nil)
				}
				if ending != nil {
					s.relay(req, sc.stx, b.final)
					return legEnded, *ending, nil
				}
				return legFailover, outcome{}, nil
			}
			res := ev.res
			if res.StatusCode < 200 {
				noAnswer = nil // the trunk is there
				b.provisional = true
				if b.cancel && !b.cancelSent {
					s.sendCancel(b)
				}
				if res.StatusCode > 100 && ending == nil {
					sc.timerC.Reset(s.cfg.TimerC) // §16.7 step 2
					s.relay(req, sc.stx, res)
					s.calls.ringing(sc.c)
				}
				continue
			}
			if b.timedOut && res.StatusCode >= 300 {
				// §16.8: a branch cancelled by Timer C counts as 408.
				res = gosip.NewResponseFromRequest(b.req, 408, "Request Timeout", nil)
			}
			b.final = res
			end, out := sc.final(leg, offset, res, ending)
			return end, out, res
		case <-noAnswer:
			// Nothing at all from the trunk: abandon the branch (no
			// CANCEL before a provisional, RFC 3261 §9.1) and go on.
			s.log.Info("trunk did not answer", "call_id", sc.c.id, "trunk", leg.Trunk, "timeout", leg.Timeout)
			b.final = gosip.NewResponseFromRequest(b.req, 408, "Request Timeout", nil)
			b.tx.Terminate()
			return legFailover, outcome{}, nil
		case <-sc.timerC.C:
			// §16.8: the call has rung long enough.
			b.timedOut = true
			ending = &outcome{code: 408, reason: "Request Timeout", by: "switch"}
			if !b.provisional {
				b.tx.Terminate()
				continue // its end event relays the 408
			}
			b.cancel = true
			s.sendCancel(b)
		case <-sc.cancelled:
			// §16.10: sipgo answered the CANCEL and the INVITE (487).
			s.cancelPending([]*branch{b})
			return legEnded, outcome{code: 487, reason: "Request Terminated", by: "caller"}, nil
		case <-sc.stopCalls:
			sc.stopCalls = nil
			s.cancelPending([]*branch{b})
			ending = &outcome{code: 503, reason: "shutdown", by: "switch"}
		case <-sc.hungUp:
			sc.hungUp = nil
			s.cancelPending([]*branch{b})
			ending = &outcome{code: 487, reason: "hung up by operator", by: "switch"}
		case <-ctx.Done():
			s.cancelPending([]*branch{b})
			return legEnded, outcome{code: 500, reason: "transaction ended", by: "switch"}, nil
		}
	}
}

// final decides on a branch's final response (relaying it when it is the
// caller's).
func (sc *serialCall) final(leg TrunkLeg, offset uint32, res *gosip.Response, ending *outcome) (legEnd, outcome) {
	s, req := sc.s, sc.req
	code := res.StatusCode
	switch {
	case code < 300:
		// Marked answered, and its rewriting noted, before the 2xx goes
		// up: the ACK and a quick BYE must find them.
		s.calls.setTrunk(sc.c, &trunkDialog{offset: offset, caller: *req.From().Address.Clone(), presented: *leg.Identity.Clone()})
		s.calls.answered(sc.c, res)
		s.relay(req, sc.stx, res)
		return legAnswered, outcome{answer: res}
	case ending != nil:
		s.relay(req, sc.stx, res)
		return legEnded, *ending
	case code == 401 || code == 407:
		return legChallenged, outcome{}
	case code == 408 || code >= 500 && code < 600:
		s.log.Info("trunk failed the call", "call_id", sc.c.id, "trunk", leg.Trunk, "status", code)
		return legFailover, outcome{}
	}
	// Any other answer (busy, not found, 6xx) is the callee's.
	s.relay(req, sc.stx, res)
	return legFinal, outcome{code: code, reason: res.Reason, by: "callee"}
}

// presentAs gives the INVITE going to a trunk the caller's identity there
// in From (tag and display name kept) and P-Asserted-Identity (RFC 3325
// §9.1: the switch asserts it, so any the caller sent, and its
// P-Preferred-Identity, are removed).
func presentAs(fwd *gosip.Request, identity gosip.Uri) {
	fwd.From().Address = *identity.Clone()
	for fwd.RemoveHeader("P-Asserted-Identity") {
	}
	for fwd.RemoveHeader("P-Preferred-Identity") {
	}
	fwd.AppendHeader(gosip.NewHeader("P-Asserted-Identity", "<"+identity.String()+">"))
}

// AnswerChallenge adds to req credentials answering res's challenge (401:
// Authorization, 407: Proxy-Authorization; RFC 3261 §22.2, RFC 7616): for
// the first digest challenge it can compute, with the Request-URI as the
// digest URI. The switch uses it towards trunks (calls and registrations);
// the caller raises req's CSeq.
func AnswerChallenge(req *gosip.Request, res *gosip.Response, user, password string) error {
	challengeName, credName := "WWW-Authenticate", "Authorization"
	if res.StatusCode == 407 {
		challengeName, credName = "Proxy-Authenticate", "Proxy-Authorization"
	}
	for _, h := range siphdr.All(res, challengeName) {
		chal, err := digest.ParseChallenge(h.Value())
		if err != nil {
			continue
		}
		chal.Algorithm = strings.ToUpper(chal.Algorithm)
		if !digest.CanDigest(chal) {
			continue
		}
		body := req.Body()
		cred, err := digest.Digest(chal, digest.Options{
			Method: string(req.Method), URI: req.Recipient.String(), Username: user, Password: password,
			GetBody: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil },
		})
		if err != nil {
			return fmt.Errorf("trunk digest: %w", err)
		}
		req.AppendHeader(gosip.NewHeader(credName, cred.String()))
		return nil
	}
	return fmt.Errorf("trunk challenge: no %s the switch can answer", challengeName)
}

package sip

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gosip "github.com/emiago/sipgo/sip"
)

// call is what the proxy remembers of a call: for its detail record, its
// media session, and enough of the dialog to hang it up.
type call struct {
	id        string
	callerTag string
	answered  bool
	ended     bool
	ringing   bool
	ms        *mediaSession
	dlg       dialog
	started   time.Time
	// For the operations console (admin.go): who was called, when the
	// call was answered, and a channel closed to hang up a ringing call.
	callee     string
	answeredAt time.Time
	hangup     chan struct{}
	hangupOnce sync.Once
	// For calls over a trunk (trunk_call.go): what the call holds of the
	// trunks' limits, released when it ends, and how in-dialog requests
	// are rewritten on the trunk's side.
	onEnd []func()
	trunk *trunkDialog
}

// dialog is what the switch needs to end a call itself (RFC 3261 §15 BYE
// from both directions): each party's identity, Contact and where it was
// seen.
type dialog struct {
	callerFrom      *gosip.FromHeader
	callerContact   gosip.Uri
	callerSrc       string
	callerTransport string
	callerCSeq      uint32
	calleeTo        *gosip.ToHeader
	calleeContact   gosip.Uri
	calleeSrc       string
	calleeTransport string
}

// byeSpec is one BYE the switch sends.
type byeSpec struct {
	target target
	from   gosip.Header
	to     gosip.Header
	callID string
	cseq   uint32
}

// byes returns the BYE to the callee and the BYE to the caller. Each goes
// to where that party's messages came from, which reaches it through NAT.
func (c *call) byes() []byeSpec {
	d := c.dlg
	if d.calleeTo == nil || d.callerFrom == nil {
		return nil
	}
	calleeFrom := d.calleeTo.AsFrom()
	callerTo := d.callerFrom.AsTo()
	callerFrom := d.callerFrom
	if c.trunk != nil {
		callerFrom = c.trunk.presentedFrom(d.callerFrom) // the trunk knows the caller by its number
	}
	return []byeSpec{
		{target: target{uri: d.calleeContact, dest: d.calleeSrc, transport: strings.ToUpper(d.calleeTransport)},
			from: callerFrom, to: d.calleeTo, callID: c.id, cseq: d.callerCSeq + 10000},
		{target: target{uri: d.callerContact, dest: d.callerSrc, transport: strings.ToUpper(d.callerTransport)},
			from: &calleeFrom, to: &callerTo, callID: c.id, cseq: 1 << 20},
	}
}

// callTracker turns INVITE outcomes and BYEs into CallRecorder events.
type callTracker struct {
	rec CallRecorder
	now func() time.Time

	mu    sync.Mutex
	calls map[string]*call // by Call-ID, while set up or answered
	// endedTrunks: the trunk rewriting of calls that ended (trunk_call.go).
	endedTrunks map[string]endedTrunk

	startedCount atomic.Uint64 // calls started since the switch started
}

func newCallTracker(rec CallRecorder) *callTracker {
	return &callTracker{rec: rec, now: time.Now, calls: make(map[string]*call)}
}

func uriUserHost(u gosip.Uri) string {
	if u.User == "" {
		return u.Host
	}
	return u.User + "@" + u.Host
}

// start records a new call attempt for an initial INVITE.
func (t *callTracker) start(req *gosip.Request) *call {
	id := req.CallID().Value()
	tag, _ := req.From().Params.Get("tag")
	c := &call{id: id, callerTag: tag, started: t.now(), callee: uriUserHost(req.Recipient), hangup: make(chan struct{})}
	c.dlg.callerFrom = req.From()
	if ct := req.Contact(); ct != nil {
		c.dlg.callerContact = ct.Address
	}
	c.dlg.callerSrc, c.dlg.callerTransport, c.dlg.callerCSeq = req.Source(), req.Transport(), req.CSeq().SeqNo
	t.mu.Lock()
	if old, ok := t.calls[id]; ok {
		// A re-sent initial INVITE (after a 407) is the same call.
		t.mu.Unlock()
		return old
	}
	t.calls[id] = c
	t.mu.Unlock()
	t.startedCount.Add(1)
	if t.rec != nil {
		t.rec.Started(id, uriUserHost(req.From().Address), uriUserHost(req.Recipient), t.now())
	}
	return c
}

func (t *callTracker) ringing(c *call) {
	t.mu.Lock()
	c.ringing = true
	t.mu.Unlock()
}

// finish records how a call's INVITE ended: answered by out.answer (which
// the fork already marked, before relaying it: this is then a no-op), or
// failed with out's status.
func (t *callTracker) finish(c *call, out outcome) {
	if out.answer != nil {
		t.answered(c, out.answer)
		return
	}
	t.failed(c, out.code, out.reason, out.by)
}

// answered records the first 2xx.
func (t *callTracker) answered(c *call, res *gosip.Response) {
	t.mu.Lock()
	first := !c.answered && !c.ended
	c.answered = true
	if first {
		c.answeredAt = t.now()
		c.dlg.calleeTo = res.To()
		if ct := res.Contact(); ct != nil {
			c.dlg.calleeContact = ct.Address
		}
		c.dlg.calleeSrc, c.dlg.calleeTransport = res.Source(), res.Transport()
	}
	t.mu.Unlock()
	if first && t.rec != nil {
		t.rec.Answered(c.id, res.StatusCode, t.now())
	}
}

// failed records a call that ended without being answered.
func (t *callTracker) failed(c *call, code int, reason, by string) {
	t.mu.Lock()
	if c.answered || c.ended {
		t.mu.Unlock()
		return
	}
	ms := t.endLocked(c)
	t.mu.Unlock()
	t.recordEnd(c.id, ms, code, reason, by)
}

// bye records the end of an answered call; who hung up is told by the
// From tag of the BYE.
func (t *callTracker) bye(req *gosip.Request) {
	tag, _ := req.From().Params.Get("tag")
	t.byeFrom(req.CallID().Value(), tag)
}

// byeFrom is bye for the BYE of call id with From tag fromTag.
func (t *callTracker) byeFrom(id, fromTag string) {
	t.mu.Lock()
	c, ok := t.calls[id]
	if !ok || c.ended {
		t.mu.Unlock()
		return
	}
	ms := t.endLocked(c)
	t.mu.Unlock()
	by := "callee"
	if fromTag == c.callerTag {
		by = "caller"
	}
	t.recordEnd(id, ms, 200, "BYE", by)
}

// endBySwitch ends a call the switch hangs up (media timeout, shutdown),
// recording code as its status if it was never answered, and returns it if
// it was answered (so BYEs are owed), or nil.
func (t *callTracker) endBySwitch(c *call, code int, reason string) *call {
	t.mu.Lock()
	if c.ended {
		t.mu.Unlock()
		return nil
	}
	ms := t.endLocked(c)
	answered := c.answered
	t.mu.Unlock()
	t.recordEnd(c.id, ms, code, reason, "switch")
	if !answered {
		return nil
	}
	return c
}

// endLocked marks c ended and forgets it; the caller holds t.mu and, once
// it has let go of it, passes the returned media session to recordEnd.
func (t *callTracker) endLocked(c *call) *mediaSession {
	c.ended = true
	delete(t.calls, c.id)
	for _, f := range c.onEnd {
		f() // never blocks, never calls back (Router)
	}
	c.onEnd = nil
	t.keepEndedTrunkLocked(c)
	return c.ms
}

// recordEnd closes an ended call's media session (ms may be nil) and
// records the end with the session's statistics.
func (t *callTracker) recordEnd(id string, ms *mediaSession, code int, reason, by string) {
	stats := ""
	if ms != nil {
		stats = ms.close()
	}
	if t.rec != nil {
		t.rec.Ended(id, code, reason, by, stats, t.now())
	}
}

// setMedia attaches a media session to a call.
func (t *callTracker) setMedia(c *call, ms *mediaSession) {
	t.mu.Lock()
	c.ms = ms
	t.mu.Unlock()
}

// media returns the media session of the call with that Call-ID, if any.
func (t *callTracker) media(callID string) *mediaSession {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c, ok := t.calls[callID]; ok {
		return c.ms
	}
	return nil
}

// fromCaller reports whether a message with this From tag was sent by the
// caller of the call (as opposed to the callee, in a request it sends).
func (t *callTracker) fromCaller(callID, fromTag string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c, ok := t.calls[callID]; ok {
		return c.callerTag == fromTag
	}
	return true
}

// maxCallAge bounds how long a call is remembered without a BYE (a UA that
// ignored our Record-Route, a BYE lost for good): its record is closed then.
const maxCallAge = 12 * time.Hour

// sweep closes the records of calls older than maxCallAge.
func (t *callTracker) sweep() {
	t.sweepEndedTrunks()
	now := t.now()
	var old []*call
	t.mu.Lock()
	for _, c := range t.calls {
		if now.Sub(c.started) > maxCallAge {
			old = append(old, c)
		}
	}
	t.mu.Unlock()
	for _, c := range old {
		t.endBySwitch(c, 408, "no BYE seen")
	}
}

// all returns the calls being tracked.
func (t *callTracker) all() []*call {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*call, 0, len(t.calls))
	for _, c := range t.calls {
		out = append(out, c)
	}
	return out
}

// waitIdle returns once no call is tracked or ctx ends.
func (t *callTracker) waitIdle(ctx context.Context) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for t.active() > 0 {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// active returns the number of calls being tracked.
func (t *callTracker) active() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.calls)
}

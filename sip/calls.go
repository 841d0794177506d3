package sip

import (
	"sync"
	"time"

	gosip "github.com/emiago/sipgo/sip"
)

// call is what the proxy remembers of a call for its detail record.
type call struct {
	id        string
	callerTag string
	answered  bool
	ended     bool
	ringing   bool
}

// callTracker turns INVITE outcomes and BYEs into CallRecorder events.
type callTracker struct {
	rec CallRecorder
	now func() time.Time

	mu    sync.Mutex
	calls map[string]*call // by Call-ID, while set up or answered
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
	c := &call{id: id, callerTag: tag}
	t.mu.Lock()
	if old, ok := t.calls[id]; ok {
		// A re-sent initial INVITE (after a 407) is the same call.
		t.mu.Unlock()
		return old
	}
	t.calls[id] = c
	t.mu.Unlock()
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

// answered records the first 2xx.
func (t *callTracker) answered(c *call, res *gosip.Response) {
	t.mu.Lock()
	first := !c.answered && !c.ended
	c.answered = true
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
	c.ended = true
	delete(t.calls, c.id)
	t.mu.Unlock()
	if t.rec != nil {
		t.rec.Ended(c.id, code, reason, by, "", t.now())
	}
}

// bye records the end of an answered call; who hung up is told by the
// From tag of the BYE.
func (t *callTracker) bye(req *gosip.Request) {
	id := req.CallID().Value()
	t.mu.Lock()
	c, ok := t.calls[id]
	if !ok || c.ended {
		t.mu.Unlock()
		return
	}
	c.ended = true
	delete(t.calls, id)
	t.mu.Unlock()
	by := "callee"
	if tag, _ := req.From().Params.Get("tag"); tag == c.callerTag {
		by = "caller"
	}
	if t.rec != nil {
		t.rec.Ended(id, 200, "BYE", by, "", t.now())
	}
}

// ack is called for ACKs relayed; nothing to record yet.
func (t *callTracker) ack(req *gosip.Request) {}

// active returns the number of calls being tracked.
func (t *callTracker) active() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.calls)
}

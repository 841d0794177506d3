package sip

import (
	"bytes"
	"net"
	"strings"
	"sync"

	gosip "github.com/emiago/sipgo/sip"
)

// Responses to the switch's own client transactions over UDP reach them in
// the order they arrived. sipgo's transaction layer starts a goroutine for
// every message it reads (TransactionLayer.handleMessage), so a 180 and
// the 200 that follows it a fraction of a millisecond later could reach
// the client transaction, and the fork, the other way round: the fork
// then had its final response and dropped the 180, and the caller heard
// no ringing (a 183's early media was lost the same way). RFC 3261 §16.7
// step 5 forwards provisional responses as they come; Kamailio, one
// process per message, keeps their order.
//
// So a response whose top Via is one of a branch's (fork.start registers
// it, by sipgo's client transaction key, before the request is sent) is
// parsed on the read loop, as sipgo would, and handed to the transaction
// by a goroutine that first waits for the one carrying the previous
// response of that transaction: one goroutine per response, as sipgo had,
// but in order. Responses over TCP, TLS and WebSocket still go through
// sipgo's goroutines (its stream read loops hand each message to one).

// branchInboxes holds the inboxes of the client transactions of the
// fork's branches over UDP, by client transaction key.
type branchInboxes struct{ m sync.Map }

// branchInbox hands one client transaction its responses in order.
type branchInbox struct {
	ready chan struct{} // closed once tx is set (or nil: the request was never sent)
	tx    *gosip.ClientTx

	mu   sync.Mutex
	last chan struct{} // closed when the previous response has been received
}

// expect registers an inbox for the client transaction req, about to be
// sent, will have; start or abandon it then.
func (b *branchInboxes) expect(req *gosip.Request) (key string, in *branchInbox) {
	if !strings.EqualFold(req.Transport(), "UDP") {
		return "", nil
	}
	key, err := gosip.ClientTxKeyMake(req)
	if err != nil {
		return "", nil
	}
	in = &branchInbox{ready: make(chan struct{})}
	b.m.Store(key, in)
	return key, in
}

// start gives the inbox its transaction, until it terminates.
func (b *branchInboxes) start(key string, in *branchInbox, tx gosip.ClientTransaction) {
	if in == nil {
		return
	}
	ctx, ok := tx.(*gosip.ClientTx)
	if !ok || !tx.OnTerminate(func(string, error) { b.m.CompareAndDelete(key, in) }) {
		b.abandon(key, in)
		return
	}
	in.tx = ctx
	close(in.ready)
}

// abandon removes an inbox whose transaction never started.
func (b *branchInboxes) abandon(key string, in *branchInbox) {
	if in == nil {
		return
	}
	b.m.CompareAndDelete(key, in)
	close(in.ready)
}

// deliver hands res to the inbox's transaction after the responses that
// came before it.
func (in *branchInbox) deliver(res *gosip.Response) {
	done := make(chan struct{})
	in.mu.Lock()
	prev := in.last
	in.last = done
	in.mu.Unlock()
	go func() {
		defer close(done)
		if prev != nil {
			<-prev
		}
		<-in.ready
		if in.tx != nil {
			// Receive returns once the branch took the response or
			// the transaction ended (sipgo's fsmPassUp).
			in.tx.Receive(res)
		}
	}()
}

// takeBranchResponse takes a UDP datagram that starts like a response
// when its top Via is that of one of the fork's branches over UDP, and
// hands it to the branch's transaction in order (see above). It reports
// whether it did; false leaves it to sipgo.
func (f *fastPath) takeBranchResponse(remote net.Addr, data []byte) bool {
	if v, ok := headerValue(data, "Via", "v"); !ok || !bytes.Contains(v, []byte(branchPrefix)) {
		return false
	}
	msg, err := f.parser.ParseSIP(data)
	if err != nil {
		return false // sipgo counts it as malformed
	}
	res, ok := msg.(*gosip.Response)
	if !ok {
		return false
	}
	key, err := gosip.ClientTxKeyMake(res)
	if err != nil {
		return false
	}
	v, ok := f.s.inboxes.m.Load(key)
	if !ok {
		return false
	}
	// As sipgo's UDP transport sets them (parseAndHandle).
	res.SetTransport("UDP")
	res.SetSource(remote.String())
	v.(*branchInbox).deliver(res)
	return true
}

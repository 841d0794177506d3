package sip

import (
	"bytes"
	"net"
	"strings"
	"sync"

	gosip "github.com/emiago/sipgo/sip"

	"github.com/switchboard/switchboard/internal/sipstatus"
)

// ACKs of 2xx responses and BYEs over UDP are forwarded statelessly (RFC
// 3261 §16.11: "a proxy can be stateful for some requests and stateless
// for others"), from the fast path's workers, as Kamailio's forward() or
// a t_relay of a BYE whose transaction is gone at once would: neither
// needs what a transaction gives.
//
//   - An ACK of a 2xx is a transaction of its own that gets no response;
//     sipgo still made a server transaction (FSM, timers, a goroutine) for
//     each only to terminate it: 6 % of a call's CPU.
//   - A BYE over UDP is retransmitted by its sender until a final response
//     comes (Timer E), whatever the proxy does; a stateless proxy forwards
//     each copy with the same branch (branch), and the response, matching
//     no client transaction of ours, is sent on by forwardStrayResponse. A
//     stateful proxy would add a server and a client transaction, held 5 s
//     after the answer (Timer J and K), and, when the next hop does not
//     answer, a 408 the caller's own Timer F gives it anyway: 11 % of a
//     call's CPU and a quarter of the transactions a call keeps alive.
//
// What the switch must do with them is unchanged: the dialog's Route of
// ours must be signed (inOurDialog), the call ends at its BYE (calls.bye),
// an SDP in an ACK is rewritten for the relay. A BYE refused is answered
// statelessly, with the request's own To tag.
//
// An ACK that acknowledges a non-2xx final response of one of our INVITE
// server transactions (same top Via branch as the INVITE, §17.1.1.3) must
// reach that transaction, which retransmits its response until then:
// inviteBranches holds the branches of the live INVITE server
// transactions, and such an ACK goes to sipgo. A BYE in a call to a trunk,
// whose CSeq and From the switch rewrites on the trunk's side, keeps its
// transaction (restoreHop needs the request its response answers); so do
// everything over TCP, TLS and WebSocket and other in-dialog requests
// (re-INVITE, UPDATE, INFO, ...).

// inviteBranches is the set of top Via branches of the INVITE server
// transactions sipgo holds (see above).
type inviteBranches struct{ m sync.Map }

// add notes the INVITE req's transaction until tx terminates.
func (b *inviteBranches) add(req *gosip.Request, tx gosip.ServerTransaction) {
	v := req.Via()
	if v == nil {
		return
	}
	br, ok := v.Params.Get("branch")
	if !ok {
		return
	}
	b.m.Store(br, struct{}{})
	if !tx.OnTerminate(func(string, error) { b.m.Delete(br) }) {
		b.m.Delete(br)
	}
}

// has reports whether an INVITE server transaction has that branch.
func (b *inviteBranches) has(br string) bool {
	_, ok := b.m.Load(br)
	return ok
}

// takeInDialog takes a UDP datagram that starts like an ACK or a BYE when
// it is one to forward statelessly (see above): parsed, inside a dialog
// (a To tag), and for an ACK one that no INVITE server transaction waits
// for. It reports whether it did; false leaves it to sipgo.
func (f *fastPath) takeInDialog(local, remote net.Addr, data []byte, method gosip.RequestMethod) bool {
	// From its bytes when it reads plainly (rawindialog.go); when the
	// queue is full, the parsed path below answers as before.
	var r rawInDialog
	if !f.noRaw.Load() && readInDialog(&r, data, method) {
		if method == gosip.ACK && f.s.invites.has(r.branch) {
			return false
		}
		if t, _ := f.s.calls.trunkOf(r.callID); t != nil {
			return false // see below, and rewriteTrunkHop
		}
		d := &rawDialogJob{r: r, data: append([]byte(nil), data...)} // the loop's buffer
		select {
		case f.queue <- fastJob{local: local, remote: remote, dlg: d}:
			return true
		default:
		}
	}
	req := f.parseRequest(data)
	if req == nil || req.Method != method || !isInDialog(req) {
		return false
	}
	v := req.Via()
	if v == nil {
		return false
	}
	br, _ := v.Params.Get("branch")
	if !strings.HasPrefix(br, gosip.RFC3261BranchMagicCookie) {
		// RFC 2543 has no branch that tells an ACK of a 2xx from one
		// of an error: sipgo matches those as it always did.
		return false
	}
	if method == gosip.ACK && f.s.invites.has(br) {
		return false
	}
	if method == gosip.BYE {
		if d, _ := f.s.calls.trunkOf(req.CallID().Value()); d != nil {
			// Its response must get back the CSeq and From the caller
			// sent (restoreHop), which only the transaction knows.
			return false
		}
	}
	j := newFastJob(req, local, remote)
	select {
	case f.queue <- j:
		return true
	default:
	}
	if method == gosip.BYE {
		// Its sender retransmits it (Timer E) until the workers are free.
		f.overloaded(j)
	} else {
		f.s.Stats.Requests.Add(1)
		f.s.Stats.Overload.Add(1)
	}
	return true
}

// ack forwards an ACK of a 2xx statelessly, as route does (forwardAck).
func (f *fastPath) ack(j fastJob) {
	s, req := f.s, j.req
	s.Stats.Requests.Add(1)
	err := s.validate(req)
	if err == nil {
		_, signed := s.popOwnRoutes(req)
		err = s.forwardAck(req, signed)
	}
	if err != nil {
		s.log.Debug("ACK dropped", "source", req.Source(), "error", err)
		return
	}
	f.dialog.Add(1)
}

// bye forwards a BYE statelessly, or answers it statelessly when it is
// not to be forwarded.
func (f *fastPath) bye(j fastJob) {
	s, req := f.s, j.req
	s.Stats.Requests.Add(1)
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	if err := f.forwardBye(req); err != nil {
		s.Stats.Refused.Add(1)
		s.log.Debug("BYE refused", "source", req.Source(), "error", err)
		f.respond(j, sipstatus.Response(req, err))
	}
}

// forwardBye is route's in-dialog case for a BYE, stateless.
func (f *fastPath) forwardBye(req *gosip.Request) error {
	s := f.s
	if err := s.validate(req); err != nil {
		return err
	}
	poppedUs, signed := s.popOwnRoutes(req)
	if err := s.inOurDialog(req, poppedUs, signed); err != nil {
		return err
	}
	s.calls.bye(req) // as forwardInDialog does, before the BYE goes on
	if err := s.forwardStateless(req); err != nil {
		return status(503, "Service Unavailable", err)
	}
	f.dialog.Add(1)
	return nil
}

// takeResponse sends on, from the read loop, a response whose top Via is
// that of a request we forwarded statelessly (its branch ends with
// statelessBranch): no client transaction of ours can match it, so
// sipgo's goroutine and transaction lookup would only end in
// unhandledResponse. It reports whether it took it.
func (f *fastPath) takeResponse(remote net.Addr, data []byte) bool {
	if v, ok := headerValue(data, "Via", "v"); !ok || !bytes.Contains(v, []byte(statelessBranch)) {
		return false
	}
	// From its bytes when it reads plainly (rawresponse.go).
	if r := new(rawResponse); !f.noRaw.Load() && readResponse(r, data) {
		if f.forwardRawResponse(r, data) {
			f.raw.Add(1)
			f.dialog.Add(1)
		}
		return true
	}
	msg, err := f.parser.ParseSIP(data)
	if err != nil {
		return false
	}
	res, ok := msg.(*gosip.Response)
	if !ok {
		return false
	}
	v := res.Via()
	if v == nil {
		return false
	}
	if br, _ := v.Params.Get("branch"); !strings.HasSuffix(br, statelessBranch) {
		return false
	}
	res.SetTransport("UDP")
	res.SetSource(remote.String())
	f.s.forwardStrayResponse(res)
	f.dialog.Add(1)
	return true
}

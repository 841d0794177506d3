package registrar

import (
	"errors"
	"fmt"

	"github.com/emiago/sipgo/sip"
)

// REGISTERs are answered without a transaction (the proxy's fast path), so
// a retransmission of a REGISTER whose 200 was lost or late reaches the
// registrar again. Its credentials are then a replay: same nonce, same
// nonce count (RFC 7616 §3.4), which Verify refuses. A transaction would
// have answered it with the 200 again; so does retransmitted, when the
// request is exactly one already applied — each of its contacts bound with
// its Call-ID and CSeq (RFC 3261 §10.3 step 7 keys bindings on them), each
// removal already gone. Nothing is changed: the bindings are listed as
// they are. A replay by someone else of a captured REGISTER therefore
// learns the bindings at most, and can neither add, refresh nor restore
// one; anything else replayed is still refused (401 stale).

// errNonceReplay is Verify's refusal of a valid digest whose nonce count was
// used before. It is an ErrStaleNonce for every caller.
var errNonceReplay = fmt.Errorf("%w: nonce count used before", ErrStaleNonce)

// retransmitted returns the headers of the 200 to send again when q,
// refused by parseRegister with err, is a retransmission of a REGISTER
// already applied; ok false otherwise. err is parseRegister's refusal of a replayed
// nonce count, or the out-of-order refusal of a REGISTER whose CSeq is not
// above its binding's (a retransmission that the client sent with new
// credentials, as SIPp does, or that raced the original).
func (r *Registrar) retransmitted(q *Request, err error) ([]sip.Header, bool) {
	if !errors.Is(err, errNonceReplay) && !errors.Is(err, errOutOfOrder) {
		return nil, false
	}
	if !q.HasTo || q.ID.CallID == "" || !q.ID.HasCSeq {
		return nil, false
	}
	aor := q.AOR
	// The credentials verified (only then is a replay told apart): they
	// must be the AOR's own, as parseRegister requires.
	if !r.credentialsOf(q, aor) {
		return nil, false
	}
	reg := &register{r: r, aor: aor, callID: q.ID.CallID, cseq: q.ID.Seq, now: r.now()}
	if r.parseContacts(q, reg) != nil || reg.wildcard || len(reg.contacts) == 0 {
		return nil, false
	}
	bound := r.loc.Lookup(aor)
	for _, c := range reg.contacts {
		key := contactKey(c.uri)
		found := false
		for i := range bound {
			b := &bound[i]
			if b.Contact != key && (c.regID == 0 || !sameFlowBinding(b, c.instance, c.regID)) {
				continue
			}
			if c.exp == 0 || b.CallID != reg.callID || b.CSeq != reg.cseq {
				return nil, false // still bound after a removal, or bound by another request
			}
			found = true
		}
		if !found && c.exp > 0 {
			return nil, false
		}
	}
	return r.registered(q, aor, reg.now, reg.flows()), true
}

// credentialsOf reports whether q carries Authorization credentials of
// user for our realm.
func (r *Registrar) credentialsOf(q *Request, user string) bool {
	for _, v := range q.Authorization {
		if c, ok := parseCredentials(v); ok && c.realm == r.auth.realm {
			return c.username == user
		}
	}
	return false
}

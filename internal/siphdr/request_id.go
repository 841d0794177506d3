package siphdr

import (
	"encoding/binary"
	"hash/maphash"

	gosip "github.com/emiago/sipgo/sip"
)

// RequestID is a seeded hash of what tells a request from every other but
// its own retransmissions: Call-ID, From tag, CSeq number, method and the
// top Via's branch (RFC 3261 §17.2.3 matches server transactions on the
// branch; the rest keeps requests of RFC 2543 UAs, with no magic cookie,
// apart). method is the CSeq's method when empty; given, it stands in for
// it: the ACK of a response to an INVITE is named by method INVITE. The
// answer to a request without a
// transaction (a stateless 401 or 407 and its To tag, a nonce) is made from
// it, so that a retransmission gets the same answer.
func RequestID(seed maphash.Seed, req *gosip.Request, method gosip.RequestMethod) uint64 {
	var h maphash.Hash
	h.SetSeed(seed)
	if c := req.CallID(); c != nil {
		h.WriteString(c.Value())
	}
	h.WriteByte(0)
	if from := req.From(); from != nil {
		tag, _ := from.Params.Get("tag")
		h.WriteString(tag)
	}
	h.WriteByte(0)
	if c := req.CSeq(); c != nil {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], c.SeqNo)
		h.Write(n[:])
		if method == "" {
			method = c.MethodName
		}
	}
	h.WriteString(string(method))
	h.WriteByte(0)
	if v := req.Via(); v != nil {
		b, _ := v.Params.Get("branch")
		h.WriteString(b)
	}
	return h.Sum64()
}

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
	return IDOf(req, method).Sum(seed)
}

// IDOf is what RequestID hashes of req (method as there).
func IDOf(req *gosip.Request, method gosip.RequestMethod) ID {
	var id ID
	if c := req.CallID(); c != nil {
		id.CallID = c.Value()
	}
	if from := req.From(); from != nil {
		id.FromTag, _ = from.Params.Get("tag")
	}
	if c := req.CSeq(); c != nil {
		id.Seq, id.HasCSeq = c.SeqNo, true
		if method == "" {
			method = c.MethodName
		}
	}
	id.Method = string(method)
	if v := req.Via(); v != nil {
		id.Branch, _ = v.Params.Get("branch")
	}
	return id
}

// ID is what RequestID hashes, for a request read without sipgo's parser
// (the stateless challenge of sip's fast path): the same fields give the
// same hash.
type ID struct {
	CallID  string
	FromTag string
	Seq     uint32 // the CSeq number
	HasCSeq bool   // a CSeq was there (Seq may be 0)
	Method  string // the CSeq's method, or what stands in for it
	Branch  string // the top Via's branch parameter
}

// Sum is the seeded hash of id (RequestID's).
func (id ID) Sum(seed maphash.Seed) uint64 {
	var h maphash.Hash
	h.SetSeed(seed)
	h.WriteString(id.CallID)
	h.WriteByte(0)
	h.WriteString(id.FromTag)
	h.WriteByte(0)
	if id.HasCSeq {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], id.Seq)
		h.Write(n[:])
	}
	h.WriteString(id.Method)
	h.WriteByte(0)
	h.WriteString(id.Branch)
	return h.Sum64()
}

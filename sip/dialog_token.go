package sip

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"

	gosip "github.com/emiago/sipgo/sip"
)

// dialogParam is the Record-Route URI parameter that carries the switch's
// signature of a dialog it record-routed. It comes back in the Route set of
// every in-dialog request (RFC 3261 §12.1.2, §16.12), and only a request
// whose popped Route carries a valid signature for its own Call-ID and tags
// is forwarded: anything else claiming to be in a dialog is a stranger
// trying to use the switch as a relay (Kamailio's rr module answers the same
// need with loose_route and a dialog check).
const dialogParam = "sbd"

// dialogToken signs a dialog as the switch sees it when it record-routes the
// initial request: its Call-ID and the caller's From tag. The callee's tag
// does not exist yet then, so the caller's tag is what both directions
// share (it is the From tag of the caller's requests and the To tag of the
// callee's).
func (s *Server) dialogToken(callID, callerTag string) string {
	sum := s.mac("dialog\x00", callID, "\x00", callerTag)
	return hex.EncodeToString(sum[:10])
}

// macState is a pooled HMAC-SHA256 keyed with the server's secret, and
// the buffers that feed it and take its sum: an HMAC is written through
// an interface, so strings written to it and the slice its Sum appends
// to would each be allocated (five allocations for the two dialog tokens
// and the branch MAC of one forwarded BYE).
type macState struct {
	h       hash.Hash
	in, out []byte
}

// getMAC returns an HMAC-SHA256 keyed with the server's secret, from a
// pool: hmac.New allocates ~0.5 KiB (two SHA-256 states and the padded
// key), which a call paid four times (its branches and Record-Route).
// Put it back with s.macs.Put.
func (s *Server) getMAC() *macState {
	if m, ok := s.macs.Get().(*macState); ok {
		m.h.Reset()
		return m
	}
	return &macState{h: hmac.New(sha256.New, s.secret[:])}
}

// mac is the HMAC-SHA256 under the server's secret of the parts, one
// after the other.
func (s *Server) mac(parts ...string) (sum [sha256.Size]byte) {
	m := s.getMAC()
	defer s.macs.Put(m)
	m.in = m.in[:0]
	for _, p := range parts {
		m.in = append(m.in, p...)
	}
	m.h.Write(m.in)
	m.out = m.h.Sum(m.out[:0])
	copy(sum[:], m.out)
	return sum
}

// signRecordRoute adds the dialog signature to one of our Record-Route
// entries for req, the dialog-creating request being forwarded.
func (s *Server) signRecordRoute(u *gosip.Uri, req *gosip.Request) {
	tag, _ := req.From().Params.Get("tag")
	u.UriParams.Add(dialogParam, s.dialogToken(req.CallID().Value(), tag))
}

// dialogSigned reports whether token signs the dialog of req, whichever
// party sent it: the caller's tag is the From tag of the caller's requests
// and the To tag of the callee's.
func (s *Server) dialogSigned(req *gosip.Request, token string) bool {
	return s.signs(token, req.CallID().Value(), dialogTags(req))
}

// signs reports whether token signs the dialog of call callID whose
// party's tag is one of tags.
func (s *Server) signs(token, callID string, tags []string) bool {
	if token == "" {
		return false
	}
	for _, tag := range tags {
		if hmac.Equal([]byte(token), []byte(s.dialogToken(callID, tag))) {
			return true
		}
	}
	return false
}

// dialogTags returns the From and To tags of req, those present.
func dialogTags(req *gosip.Request) []string {
	var tags []string
	if f := req.From(); f != nil {
		if t, ok := f.Params.Get("tag"); ok {
			tags = append(tags, t)
		}
	}
	if t := req.To(); t != nil {
		if tag, ok := t.Params.Get("tag"); ok {
			tags = append(tags, tag)
		}
	}
	return tags
}

package sip

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"io"

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
	m := s.getMAC()
	defer s.macs.Put(m)
	io.WriteString(m, "dialog\x00")
	io.WriteString(m, callID)
	m.Write([]byte{0})
	io.WriteString(m, callerTag)
	var sum [sha256.Size]byte
	return hex.EncodeToString(m.Sum(sum[:0])[:10])
}

// getMAC returns an HMAC-SHA256 keyed with the server's secret, from a
// pool: hmac.New allocates ~0.5 KiB (two SHA-256 states and the padded
// key), which a call paid four times (its branches and Record-Route).
// Put it back with s.macs.Put.
func (s *Server) getMAC() hash.Hash {
	if m, ok := s.macs.Get().(hash.Hash); ok {
		m.Reset()
		return m
	}
	return hmac.New(sha256.New, s.secret[:])
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

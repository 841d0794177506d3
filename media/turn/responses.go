package turn

import (
	"encoding/binary"
	"net/netip"

	"github.com/pion/stun/v3"
)

// STUN attribute types looked at in pion/turn's responses (RFC 8489 §18.3,
// RFC 8656).
const (
	attrMessageIntegrity       = 0x0008
	attrErrorCode              = 0x0009
	attrNonce                  = 0x0015
	attrMessageIntegritySHA256 = 0x001C
	attrFingerprint            = 0x8028
)

// stunChannelBindError is the message type of a ChannelBind error response.
const stunChannelBindError = 0x0119

// fixChannelBindRefusal corrects pion/turn's answer to a ChannelBind whose
// peer the PermissionHandler refused: pion sends 401 (Unauthenticated) with no
// NONCE, REALM or MESSAGE-INTEGRITY, which a client takes for a credential
// problem. RFC 8656 §12.2 says a peer refused by local policy gets 403
// (Forbidden). The error code is patched in place in b, which must be a
// private copy; nothing else is touched (the message carries no integrity or
// fingerprint that would cover the change). Any other message is left alone.
// It reports whether b was changed.
func fixChannelBindRefusal(b []byte) bool {
	if len(b) < 20 || binary.BigEndian.Uint16(b[0:2]) != stunChannelBindError ||
		binary.BigEndian.Uint32(b[4:8]) != stunMagicCookie {
		return false
	}
	codeAt := -1
	for off := 20; off+4 <= len(b); {
		typ := binary.BigEndian.Uint16(b[off : off+2])
		l := int(binary.BigEndian.Uint16(b[off+2 : off+4]))
		v := off + 4
		if v+l > len(b) {
			return false
		}
		switch typ {
		case attrErrorCode:
			if l >= 4 {
				codeAt = v
			}
		case attrNonce, attrMessageIntegrity, attrMessageIntegritySHA256, attrFingerprint:
			return false
		}
		off = v + (l+3)&^3
	}
	// ERROR-CODE: 21 reserved bits, class (3 bits), number (8 bits).
	if codeAt < 0 || b[codeAt+2]&0x07 != 4 || b[codeAt+3] != 1 {
		return false
	}
	b[codeAt+3] = 3

	return true
}

// isChannelBindError is the cheap test done on every outgoing datagram before
// fixChannelBindRefusal.
func isChannelBindError(b []byte) bool {
	return len(b) >= 20 && b[0] == 0x01 && b[1] == 0x19
}

// stunCreatePermissionError and stunCreatePermissionRequest are the message
// types of CreatePermission (method 0x008, RFC 8656).
const (
	stunCreatePermissionRequest = 0x0008
	stunCreatePermissionError   = 0x0118
)

// isCreatePermissionError is the cheap test done on every outgoing datagram
// before fixCreatePermissionRefusal.
func isCreatePermissionError(b []byte) bool {
	return len(b) >= 20 && b[0] == 0x01 && b[1] == 0x18
}

// fixCreatePermissionRefusal corrects pion/turn's answer to a
// CreatePermission it refused: pion sends an error response with no
// ERROR-CODE at all (only MESSAGE-INTEGRITY), which clients show as "error 0".
// Given that response and the request it answers (same transaction), it
// returns a replacement carrying the code RFC 8656 §10.2 asks for: 400 (Bad
// Request) when the request has no usable XOR-PEER-ADDRESS, 403 (Forbidden)
// when a peer is refused by the peer policy, signed with the same long-term
// key (RFC 8489 §9.2.4). It returns nil to keep pion's response: for another
// transaction, a response that already has an ERROR-CODE, or one whose
// MESSAGE-INTEGRITY does not verify with the key of the request's user.
func (s *Server) fixCreatePermissionRefusal(resp, req []byte) []byte {
	if len(req) < 20 || binary.BigEndian.Uint16(req[0:2]) != stunCreatePermissionRequest {
		return nil
	}
	rm := &stun.Message{Raw: append([]byte(nil), resp...)}
	qm := &stun.Message{Raw: append([]byte(nil), req...)}
	if rm.Decode() != nil || qm.Decode() != nil || rm.TransactionID != qm.TransactionID ||
		rm.Contains(stun.AttrErrorCode) {
		return nil
	}
	var username stun.Username
	var realm stun.Realm
	if username.GetFrom(qm) != nil || realm.GetFrom(qm) != nil {
		return nil
	}
	key, ok := s.lookupKey(username.String(), realm.String())
	if !ok || stun.MessageIntegrity(key).Check(rm) != nil {
		return nil
	}
	code, reason := stun.CodeBadRequest, "Bad Request"
	for _, a := range qm.Attributes {
		if a.Type != stun.AttrXORPeerAddress {
			continue
		}
		tmp := &stun.Message{TransactionID: qm.TransactionID}
		tmp.Add(stun.AttrXORPeerAddress, a.Value)
		var peer stun.XORMappedAddress
		if peer.GetFromAs(tmp, stun.AttrXORPeerAddress) != nil {
			code, reason = stun.CodeBadRequest, "Bad Request"

			break
		}
		if !s.peerAllowed(netIPToAddr(peer.IP)) {
			code, reason = stun.CodeForbidden, "Forbidden"
		} else if code != stun.CodeForbidden {
			code, reason = 0, ""
		}
	}
	if code == 0 {
		return nil
	}
	fixed, err := stun.Build(
		&stun.Message{TransactionID: rm.TransactionID},
		stun.NewType(stun.MethodCreatePermission, stun.ClassErrorResponse),
		&stun.ErrorCodeAttribute{Code: code, Reason: []byte(reason)},
		stun.MessageIntegrity(key),
	)
	if err != nil {
		return nil
	}

	return fixed.Raw
}

// fixResponse returns the error response to send instead of pion/turn's
// resp, which answers req from src (nil and the zero AddrPort when unknown,
// as on TCP/TLS), or resp itself. See fixChannelBindRefusal,
// fixCreatePermissionRefusal and fixAuthFailure.
func (s *Server) fixResponse(resp, req []byte, src netip.AddrPort) []byte {
	if isChannelBindError(resp) {
		b := append([]byte(nil), resp...)
		if fixChannelBindRefusal(b) {
			return b
		}
	}
	if req == nil {
		return resp
	}
	if isCreatePermissionError(resp) {
		if fixed := s.fixCreatePermissionRefusal(resp, req); fixed != nil {
			return fixed
		}
	}
	if fixed := s.fixAuthFailure(resp, req, src); fixed != nil {
		return fixed
	}

	return resp
}

// isErrorResponse reports whether b is a STUN error response (class bits
// 0b11, RFC 8489 §5), the only messages the response fixes look at.
func isErrorResponse(b []byte) bool {
	return len(b) >= 20 && b[0]&0xc1 == 0x01 && b[1]&0x10 == 0x10
}

// fixAuthFailure corrects pion/turn's answer to a request whose credentials
// are wrong: pion sends 400 (Bad Request) without REALM or NONCE. RFC 8489
// §9.2.4 asks for 401 (Unauthenticated) with REALM and NONCE when the user
// is unknown or MESSAGE-INTEGRITY does not match. Given pion's response and
// the request it answers from src, it returns that 401 (with the request's
// nonce, which pion had just accepted), or nil to keep pion's response: for
// another transaction, another error, or a request whose credentials are in
// fact valid (pion's 400 then has another cause) unless the Guard refuses
// src for the user (authKey gave pion no key: the credentials are not
// accepted, right or wrong).
func (s *Server) fixAuthFailure(resp, req []byte, src netip.AddrPort) []byte {
	if len(req) < 20 || len(resp) < 20 || binary.BigEndian.Uint16(req[0:2])|0x0110 != binary.BigEndian.Uint16(resp[0:2]) {
		return nil
	}
	rm := &stun.Message{Raw: append([]byte(nil), resp...)}
	qm := &stun.Message{Raw: append([]byte(nil), req...)}
	if rm.Decode() != nil || qm.Decode() != nil || rm.TransactionID != qm.TransactionID ||
		errorCodeOf(rm) != stun.CodeBadRequest || rm.Contains(stun.AttrMessageIntegrity) ||
		!qm.Contains(stun.AttrMessageIntegrity) {
		return nil
	}
	var username stun.Username
	var realm stun.Realm
	var nonce stun.Nonce
	if username.GetFrom(qm) != nil || realm.GetFrom(qm) != nil || nonce.GetFrom(qm) != nil {
		return nil // pion's 400 is right: a required attribute is missing
	}
	if key, ok := s.lookupKey(username.String(), realm.String()); ok && stun.MessageIntegrity(key).Check(qm) == nil &&
		(s.cfg.Guard == nil || !s.cfg.Guard.Banned(src, quotaUser(username.String()))) {
		return nil
	}
	fixed, err := stun.Build(
		&stun.Message{TransactionID: rm.TransactionID},
		rm.Type,
		&stun.ErrorCodeAttribute{Code: stun.CodeUnauthorized, Reason: []byte("Unauthenticated")},
		stun.NewRealm(s.cfg.Realm),
		nonce,
	)
	if err != nil {
		return nil
	}

	return fixed.Raw
}

func errorCodeOf(m *stun.Message) stun.ErrorCode {
	var code stun.ErrorCodeAttribute
	if code.GetFrom(m) != nil {
		return 0
	}

	return code.Code
}

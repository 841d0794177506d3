package turn

import (
	"encoding/binary"

	"github.com/pion/stun/v4"
)

// Message types of ChannelBind (method 0x009, RFC 8656 §12).
const (
	stunChannelBindRequest = 0x0009
	stunChannelBindError   = 0x0119
)

// isChannelBindError is the cheap test done on every outgoing message before
// fixResponse: pion/turn's responses are rewritten only for ChannelBind.
func isChannelBindError(b []byte) bool {
	return len(b) >= 20 && b[0] == stunChannelBindError>>8 && b[1] == stunChannelBindError&0xff
}

// fixResponse returns the response to send instead of pion/turn's resp,
// which answers req (nil when unknown), or resp itself. See
// fixChannelBindRefusal, the one rewrite left: pion/turn v5 already answers
// the other cases by the RFCs (401 with NONCE and REALM for unknown users,
// wrong passwords and Guard refusals; 403 and 400 for CreatePermission).
func (s *Server) fixResponse(resp, req []byte) []byte {
	if req == nil || !isChannelBindError(resp) {
		return resp
	}
	if fixed := s.fixChannelBindRefusal(resp, req); fixed != nil {
		return fixed
	}

	return resp
}

// fixChannelBindRefusal corrects pion/turn's answer to a ChannelBind whose
// peer the PermissionHandler refused: pion sends 401 (Unauthenticated),
// signed with the request's key, which a client takes for a credential
// problem. RFC 8656 §12.2 says a peer refused by local policy gets 403
// (Forbidden). Given pion's response and the request it answers (same
// transaction), it returns that 403 signed with the same long-term key, as
// RFC 8489 §9.2.4 asks of an error response to an authenticated request. It
// returns nil to keep pion's response: for another transaction, another
// error, a 401 without MESSAGE-INTEGRITY (pion's challenge to a request
// whose credentials failed), or one whose MESSAGE-INTEGRITY does not verify
// with the key of the request's user. A signed 401 is what pion sends only
// when the PermissionHandler refused the peer: every other ChannelBind
// refusal of an authenticated request is 400 or 443.
func (s *Server) fixChannelBindRefusal(resp, req []byte) []byte {
	if len(req) < 20 || binary.BigEndian.Uint16(req[0:2]) != stunChannelBindRequest {
		return nil
	}
	rm := &stun.Message{Raw: append([]byte(nil), resp...)}
	qm := &stun.Message{Raw: append([]byte(nil), req...)}
	if rm.Decode() != nil || qm.Decode() != nil || rm.TransactionID != qm.TransactionID ||
		errorCodeOf(rm) != stun.CodeUnauthorized || !rm.Contains(stun.AttrMessageIntegrity) {
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
	fixed, err := stun.Build(
		&stun.Message{TransactionID: rm.TransactionID},
		stun.NewType(stun.MethodChannelBind, stun.ClassErrorResponse),
		&stun.ErrorCodeAttribute{Code: stun.CodeForbidden, Reason: []byte("Forbidden")},
		stun.MessageIntegrity(key),
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

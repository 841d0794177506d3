package gateway

import (
	"github.com/pion/webrtc/v4"
)

// The JSON signalling protocol spoken on /ws. docs/webrtc-protocol.md is its
// reference for web developers; keep the two in step.

// Message types the browser sends.
const (
	msgLogin   = "login"   // user, password
	msgLogout  = "logout"  // -
	msgCall    = "call"    // to, sdp (offer), call (optional id)
	msgICE     = "ice"     // call, candidate
	msgAnswer  = "answer"  // call, sdp (answer to an incoming call)
	msgDecline = "decline" // call, reason ("busy" for 486)
	msgHangup  = "hangup"  // call
	msgHold    = "hold"    // call
	msgResume  = "resume"  // call
	msgMessage = "message" // to, text
	msgPing    = "ping"    // -
)

// Message types the gateway sends (besides msgMessage and msgAnswer, which
// it sends too).
const (
	msgHello     = "hello"      // on connect: version
	msgLoggedIn  = "logged_in"  // user, aor, iceServers
	msgLoggedOut = "logged_out" // -
	msgIncoming  = "incoming"   // call, from, fromName, to, sdp (offer), video
	msgCallState = "call_state" // call, state, status, reason
	msgHoldState = "hold_state" // call, held, by
	msgDTMF      = "dtmf"       // call, digit
	msgSent      = "message_sent"
	msgError     = "error" // code, message, id, call
	msgPong      = "pong"
)

// Call states (call_state.state). Final states end the call: its id is free
// afterwards.
const (
	stateTrying            = "trying"             // INVITE sent (100 Trying)
	stateRinging           = "ringing"            // 180, or 183 with early media
	stateAnswered          = "answered"           // 200 OK
	stateBusy              = "busy"               // final: 486, 600
	stateDeclined          = "declined"           // final: 603
	stateNotFound          = "not_found"          // final: 404, 604, 484
	stateUnavailable       = "unavailable"        // final: 480, 408, 503, no answer
	stateFailed            = "failed"             // final: anything else (488: no common codec)
	stateCancelled         = "cancelled"          // final: caller cancelled (ours, or theirs on an incoming call)
	stateEnded             = "ended"              // final: an answered call hung up
	stateAnsweredElsewhere = "answered_elsewhere" // final: another tab of this user answered
)

// Error codes (error.code).
const (
	errBadRequest    = "bad_request"     // malformed JSON, missing or invalid field
	errUnknownType   = "unknown_type"    // unknown message type
	errNotSignedIn   = "not_signed_in"   // needs a login first
	errAuthFailed    = "auth_failed"     // wrong user name or password
	errRateLimited   = "rate_limited"    // too many failed sign-ins; wait
	errTooMany       = "too_many"        // too many connections or calls
	errUnknownCall   = "unknown_call"    // no such call on this connection
	errCallExists    = "call_exists"     // a call with that id exists
	errBadAddress    = "bad_address"     // "to" is not a user, number or SIP URI
	errBadSDP        = "bad_sdp"         // the SDP cannot be used
	errNoCodec       = "no_common_codec" // no codec both sides support
	errICEFailed     = "ice_failed"      // the browser's media connection did not come up
	errDTLSFailed    = "dtls_failed"     // DTLS-SRTP handshake failed
	errWrongState    = "wrong_state"     // not possible in the call's state
	errSIP           = "sip_error"       // the SIP side failed (status says how)
	errUnavailable   = "unavailable"     // the switch cannot be reached
	errInternal      = "internal"        // a bug or resource failure
	errShuttingDown  = "shutting_down"   // the gateway is stopping
	errAlreadyActive = "already_signed_in"
)

// clientMsg is any message from the browser; unused fields stay empty.
type clientMsg struct {
	Type      string                   `json:"type"`
	ID        string                   `json:"id,omitempty"`
	Call      string                   `json:"call,omitempty"`
	User      string                   `json:"user,omitempty"`
	Password  string                   `json:"password,omitempty"`
	To        string                   `json:"to,omitempty"`
	SDP       string                   `json:"sdp,omitempty"`
	Candidate *webrtc.ICECandidateInit `json:"candidate,omitempty"`
	Text      string                   `json:"text,omitempty"`
	Reason    string                   `json:"reason,omitempty"`
}

// serverMsg is any message to the browser; empty fields are left out.
type serverMsg struct {
	Type       string             `json:"type"`
	ID         string             `json:"id,omitempty"`
	Call       string             `json:"call,omitempty"`
	State      string             `json:"state,omitempty"`
	Status     int                `json:"status,omitempty"`
	Reason     string             `json:"reason,omitempty"`
	Code       string             `json:"code,omitempty"`
	Message    string             `json:"message,omitempty"`
	SDP        string             `json:"sdp,omitempty"`
	User       string             `json:"user,omitempty"`
	AOR        string             `json:"aor,omitempty"`
	From       string             `json:"from,omitempty"`
	FromName   string             `json:"fromName,omitempty"`
	To         string             `json:"to,omitempty"`
	Peer       string             `json:"peer,omitempty"`
	Video      *bool              `json:"video,omitempty"`
	EarlyMedia bool               `json:"earlyMedia,omitempty"`
	Held       *bool              `json:"held,omitempty"`
	By         string             `json:"by,omitempty"`
	Digit      string             `json:"digit,omitempty"`
	Text       string             `json:"text,omitempty"`
	Duration   float64            `json:"duration,omitempty"`
	ICEServers []webrtc.ICEServer `json:"iceServers,omitempty"`
	Version    int                `json:"version,omitempty"`
}

// protocolVersion is sent in hello; it changes when a message changes
// incompatibly.
const protocolVersion = 1

func boolp(b bool) *bool { return &b }

// stateForStatus maps the final status of an outgoing INVITE to the call
// state the browser sees.
func stateForStatus(code int) string {
	switch code {
	case 486, 600:
		return stateBusy
	case 603:
		return stateDeclined
	case 404, 484, 604:
		return stateNotFound
	case 408, 480, 503:
		return stateUnavailable
	case 487:
		return stateCancelled
	}
	if code >= 200 && code < 300 {
		return stateAnswered
	}
	return stateFailed
}

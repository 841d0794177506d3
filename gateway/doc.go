// Package gateway is switchboard's WebRTC gateway: it lets a browser sign in
// as a SIP user and place and receive calls, with voice and video, through
// the switch.
//
// The gateway is a back-to-back user agent. Toward the browser it is a
// WebRTC peer (ICE, DTLS-SRTP, pion/webrtc) signalled with JSON messages over
// a WebSocket at /ws (the protocol is documented in docs/webrtc-protocol.md).
// Toward the switch it is an ordinary SIP user agent on a UDP socket of its
// own: it registers every signed-in browser user with the registrar with the
// user's own digest credentials, sends its INVITEs, MESSAGEs and BYEs to the
// proxy like any phone does, and receives the calls the proxy routes to those
// registrations. Media is relayed packet by packet between the browser's
// SRTP and plain RTP sockets the gateway owns on the SIP side; codecs are
// negotiated so that both legs use the same ones and nothing is transcoded.
//
// It also serves the web phone, a page embedded in the binary, at /.
//
// Files: config.go (Config and its defaults), gateway.go (lifetime, HTTP
// handler, SIP requests from the switch), ws.go (the WebSocket transport),
// ws_commands.go and protocol.go (the signalling commands and messages),
// account.go (SIP registration and the tabs signed in to it), sip_ua.go
// (the SIP user agent: socket, transactions, digest), dialog.go (SIP
// dialogs, the 2xx and its ACK), call.go (a call's event loop once
// answered), call_out.go and call_in.go (setting up outgoing and incoming
// calls), call_hold.go (hold and re-INVITEs), call_media.go (a call's
// streams, SDP and browser connection), sdp.go and codecs.go (SDP and codec
// negotiation), peer.go (pion), bridge.go and track.go (packet relay),
// ports.go (UDP ports), web.go and web/ (the web phone), log.go (pion's and
// sipgo's logs into slog), errors.go.
//
// gateway must not import the proxy, the registrar, the media relay or the
// command: it speaks SIP to the switch over the network, so that it could run
// as a process of its own.
package gateway

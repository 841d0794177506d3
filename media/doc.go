// Package media is the packet engine of switchboard's media relay: it owns a
// pool of UDP ports and the RTP/RTCP packets that pass through them, and
// nothing else.
//
// A [Relay] hands out [Stream]s. A Stream relays one media stream (one SDP
// m-line) between two parties: side [A] faces the caller, side [B] the
// callee, and each side has its own even/odd RTP/RTCP port pair. Packets the
// caller sends to A's ports leave from B's ports towards the callee, and the
// other way round. Each side latches onto the address its party really sends
// from (symmetric RTP, RFC 4961), accepting before that only sources whose IP
// the owner allowed, so that a stranger cannot take over a stream. Per side
// the stream counts packets, bytes, losses (RFC 3550 §A.3) and interarrival
// jitter (RFC 3550 §A.8), and it tells its owner when neither party has sent
// anything for Config.Timeout.
//
// On Linux the sockets of all streams are served by a few epoll loops (one
// per CPU by default, each parked in Go's netpoller when idle) that read
// into buffers owned by the loop and send from them, one datagram per system
// call while a socket holds one and in recvmmsg/sendmmsg batches when it
// holds more, so that relaying a packet allocates nothing and a call costs a
// few kilobytes of memory. Other platforms (and builds with the
// media_netpoll tag) use one goroutine per socket and Go's netpoller.
//
// media knows ports and packets only. It must not import the SIP stack, the
// proxy (package sip), registrar, gateway or any SDP library: the proxy
// rewrites SDP and tells a Stream the addresses it learned, through
// [Stream.SetPeer].
package media

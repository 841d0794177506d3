// Command relay measures a media relay under RTP load on loopback: CPU per
// relayed packet, added latency, loss and memory per call.
//
//	relay serve [flags]   run switchboard's media.Relay with a small control protocol
//	relay load  [flags]   create N calls on a relay and send RTP through them
//
// `load` starts `serve` itself (pinned with taskset to -server-cpu) when the
// backend is switchboard, or drives an rtpengine daemon over its ng protocol
// (bencode over UDP) when the backend is rtpengine. Each call has a caller
// and a callee phone that send one 172-byte RTP packet (12-byte header, 160
// bytes of payload, as G.711 at 20 ms) every 20 ms each way. The payload
// carries the send time, so the receiving phone measures the latency. The
// relay's CPU time comes from /proc/PID/stat over the measured window.
//
// With -webrtc the caller is a WebRTC browser instead (webrtc.go: pion ICE,
// DTLS client and SRTP, its packets encrypted before the run) and the relay
// converts its SRTP to plain RTP for the callee and back: switchboard's
// relay through serve's WEBRTC command (serve_webrtc.go), rtpengine with
// ICE=force DTLS=passive towards the browser and ICE=remove RTP/AVP towards
// the phone (webrtc_backends.go). webrtc_test.go has the benchmarks that
// count the relay's allocations per packet and its memory per call.
//
// run.sh in this directory runs the usual series and prints the table kept in
// RESULTS.md.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "load":
		err = load(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "relay:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: relay serve|load [flags]  (relay load -h for the flags)")
	os.Exit(2)
}

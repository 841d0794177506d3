// Package browser holds the web phone's end-to-end tests: headless Chromium
// (Debian's chromium package, driven by playwright-core from npm through
// driver.mjs) signs in on the page the switch serves at /, and calls baresip
// phones and other browsers through the WebRTC gateway.
//
// Following docs INTEROP.md, everything runs in a network namespace of the
// test's own that has only lo: the switch binary (built from ./cmd/switchboard,
// or $SWITCHBOARD_BIN), baresip, and Chromium with
// --allow-loopback-in-peer-connection. The test process reaches into it with
// setns to talk to baresip's ctrl_tcp and to read the page over HTTP.
//
// The rig (the switch, baresip, Chromium's driver process and the namespace)
// is test/internal/testbed, shared with the other suites; driver.mjs is
// this suite's playwright script.
//
// Screenshots of the phone (signed in, in a call) are written to
// test/artifacts/. TestWebPhoneOverHTTPS gives the namespace a veth pair
// (198.51.100.10 and .11) so that the browser sees the switch at a
// non-loopback address, as a remote user does, over HTTPS with a test CA's
// certificate; it bundles JsSIP with esbuild (both from node_modules) into a
// page of its own.
//
// TestSIPClients (sipclients_test.go, driven by sipclients.mjs with
// pages/sipclients.js in every page) is the browser SIP stacks through the
// switch's WebRTC relay: JsSIP and SIP.js (bundled by esbuild into a page the
// driver serves) register over ws://…/sip and call baresip, each other, the
// web phone and, with video, another JsSIP tab, in one Chromium with a
// context per user. Their microphones are WebAudio oscillators; what a page
// hears is measured by frequency with an AnalyserNode on the remote track.
// Its further subtests (sipclients_more_test.go) hold and resume a call,
// add video by renegotiation, take early media from a SIPp 183
// (testdata/early_media_uas.xml), send garbage to a WebRTC leg's port, and
// call between browsers on second switches with media.relay nat and never.
// The tests need root, ip, node with test/browser's node_modules (npm ci),
// chromium, baresip, sox, SIPp and tcpdump; without them they skip, and
// fail when CI=true.
package browser

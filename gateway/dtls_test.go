package gateway_test

import (
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gosip "github.com/emiago/sipgo/sip"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"

	"github.com/switchboard/switchboard/gateway"
	"github.com/switchboard/switchboard/internal/siptest"
)

var fingerprintLine = regexp.MustCompile(`(?m)^a=fingerprint:sha-256 ([0-9A-Fa-f:]+)\r?$`)

// tamperFingerprint flips every hex digit of the offer's sha-256
// fingerprint (x -> 15-x), so it can never match the browser's certificate
// while staying well-formed.
func tamperFingerprint(t *testing.T, sdp string) string {
	t.Helper()
	locs := fingerprintLine.FindAllStringSubmatchIndex(sdp, -1)
	if len(locs) == 0 {
		t.Fatalf("offer has no sha-256 fingerprint:\n%s", sdp)
	}
	b := []byte(sdp)
	for _, l := range locs {
		for i := l[2]; i < l[3]; i++ {
			const hex = "0123456789ABCDEF"
			if j := strings.IndexByte(hex, upper(b[i])); j >= 0 {
				b[i] = hex[15-j]
			}
		}
	}
	out := string(b)
	if out == sdp {
		t.Fatal("fingerprint unchanged")
	}
	return out
}

func upper(c byte) byte {
	if c >= 'a' && c <= 'f' {
		return c - 'a' + 'A'
	}
	return c
}

// TestDTLSFailure has a browser call a SIP phone that answers, with an
// offer whose DTLS fingerprint does not match its certificate: ICE
// connects, the DTLS-SRTP handshake fails on the gateway's side. The
// browser must be told (error dtls_failed, then call_state ended), the
// phone must get a BYE promptly, and nothing may be left running.
func TestDTLSFailure(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Run("call", func(t *testing.T) {
		// A long ICE timer, so that only the DTLS failure can end the call
		// within the bound below.
		e := newEnv(t, func(c *gateway.Config) { c.ICETimeout = 30 * time.Second })
		bob := e.phone("bob")
		bob.MustRegister()
		alice := e.browser("alice")
		alice.mustLogin("alice")

		offer := alice.offer(false)
		var iceConnected atomic.Bool
		alice.pc.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) {
			if s == webrtc.ICEConnectionStateConnected || s == webrtc.ICEConnectionStateCompleted {
				iceConnected.Store(true)
			}
		})
		alice.send(map[string]any{"type": "call", "call": "d", "to": "bob", "sdp": tamperFingerprint(t, offer)})
		if m := alice.wait("call_state", "trying"); m.Call != "d" {
			t.Fatalf("trying for call %q", m.Call)
		}
		bob.answerCall(t)
		ans := alice.wait("answer", "")
		alice.wait("call_state", "answered")
		start := time.Now()
		alice.applyAnswer(ans.SDP)

		// The browser is told why, before the call ends: an error
		// dtls_failed for this call, not an ICE failure.
		deadline := time.After(10 * time.Second)
	waitError:
		for {
			select {
			case m := <-alice.in:
				switch {
				case m.Type == "error" && m.Code == "dtls_failed":
					if m.Call != "d" || m.Message == "" {
						t.Errorf("dtls_failed error: %+v, want call d and a message", m)
					}
					break waitError
				case m.Type == "error":
					// Reported, not fatal: the rest (BYE, ended, no
					// leaks) is still checked.
					t.Errorf("got error %s %q for call %q, want dtls_failed (ICE connected, the DTLS-SRTP handshake failed; docs/webrtc-protocol.md)", m.Code, m.Message, m.Call)
					break waitError
				case m.Type == "call_state" && isFinalState(m.State):
					t.Fatalf("call ended (%+v) without a dtls_failed error", m)
				}
			case <-deadline:
				t.Fatalf("no dtls_failed error within 10s of the answer (browser ICE connected: %v, browser peer state: %s)",
					iceConnected.Load(), alice.pc.ConnectionState())
			}
		}
		if !iceConnected.Load() {
			t.Errorf("the browser's ICE never connected: the failure is not DTLS's")
		}

		// The phone is hung up on.
		bye := bob.Wait(siptest.IsRequest("BYE"), 5*time.Second, "BYE").(*gosip.Request)
		bob.respond(bye, 200, "OK", "")
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("BYE %s after the answer was applied", d)
		}
		if m := alice.wait("call_state", "ended"); m.Call != "d" || m.Reason == "" {
			t.Fatalf("ended: %+v, want call d with a reason", m)
		}
		alice.stopMedia()
	})
	goleak.VerifyNone(t, ignore)
}

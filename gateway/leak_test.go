package gateway_test

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestNoGoroutineLeaks runs calls of every kind (answered, refused,
// cancelled, a vanished browser) on a switch, shuts it all down, and
// checks that every goroutine the gateway started has ended.
func TestNoGoroutineLeaks(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Run("calls", func(t *testing.T) {
		e := newEnv(t, nil)
		bob := e.phone("bob")
		bob.MustRegister()
		alice := e.browser("alice")
		alice.mustLogin("alice")

		alice.call("a", "bob", false)
		bob.answerCall(t)
		alice.applyAnswer(alice.waitCall("a", "answer", "").SDP)
		alice.waitCall("a", "call_state", "answered")
		alice.startSending()
		eventually(t, 10*time.Second, "audio", func() bool { return alice.rxAudio.Load() > 5 && bob.rx.Load() > 5 })
		alice.send(map[string]string{"type": "hangup", "call": "a"})
		bob.respond(bob.WaitRequest("BYE"), 200, "OK", "")
		alice.waitCall("a", "call_state", "ended")
		alice.stopMedia()

		alice.call("b", "bob", false)
		bob.respond(bob.WaitRequest("INVITE"), 486, "Busy Here", "")
		alice.waitCall("b", "call_state", "busy")
		alice.stopMedia()

		inv := bob.callUser(t, "alice")
		alice.wait("incoming", "")
		bob.WaitResponse(inv, 180, 180)
		alice.close() // vanishes while ringing
		if r := bob.WaitFinal(inv); r.StatusCode != 480 {
			t.Fatalf("ringing tab vanished: %d", r.StatusCode)
		}

		// A call left up when the gateway closes.
		carol := e.browser("carol")
		carol.mustLogin("carol")
		carol.call("c", "bob", false)
		bob.answerCall(t)
		carol.applyAnswer(carol.wait("answer", "").SDP)
		carol.wait("call_state", "answered")
		// The gateway's BYE at Close goes unanswered (bob is gone by then):
		// Close gives up after its SIP timeout.
	})
	goleak.VerifyNone(t, ignore)
}

package interop

import (
	"testing"
	"time"

	"github.com/switchboard/switchboard/test/internal/testbed"
)

// checkTone fails the test unless the WAV at path holds mostly freq Hz
// (the other side's tone, heard through the relay). who names the phone.
func checkTone(t *testing.T, who, path string, freq float64) {
	t.Helper()
	w, err := testbed.ReadWAV(path)
	if err != nil {
		t.Errorf("%s: %v", who, err)
		return
	}
	tone := testbed.MeasureTone(w, freq)
	t.Logf("%s received %.1fs of audio, %.0f%% not silent, %.0f%% of it at %.0f Hz",
		who, tone.Seconds, 100*tone.Active, 100*tone.Share, freq)
	if tone.Active < 0.5 || tone.Share < 0.8 {
		t.Errorf("%s did not receive the other side's %.0f Hz tone: %+v", who, freq, tone)
	}
}

// baresipCall has caller dial uri (the callee answers by itself), waits
// until each has received 1.5 s of audio, hangs up, and checks that each
// heard the other's tone.
func baresipCall(t *testing.T, caller, callee *testbed.Baresip, uri string, callerHz, calleeHz float64) {
	t.Helper()
	ctx := t.Context()
	if _, err := caller.Command(ctx, "dial", uri); err != nil {
		t.Fatal(err)
	}
	caller.WaitEventType(t, "CALL_ESTABLISHED", 15*time.Second)
	callee.WaitEventType(t, "CALL_ESTABLISHED", 5*time.Second)
	const want = 44 + 3*8000 // 1.5 s of 8 kHz 16-bit audio after the header
	if !testbed.Poll(15*time.Second, 100*time.Millisecond, func() bool {
		return caller.ReceivedBytes() >= want && callee.ReceivedBytes() >= want
	}) {
		t.Errorf("audio: %s received %d bytes, %s %d, want %d each",
			caller.Name, caller.ReceivedBytes(), callee.Name, callee.ReceivedBytes(), want)
	}
	if _, err := caller.Command(ctx, "hangup", ""); err != nil {
		t.Fatal(err)
	}
	caller.WaitEventType(t, "CALL_CLOSED", 10*time.Second)
	callee.WaitEventType(t, "CALL_CLOSED", 10*time.Second)
	for _, c := range []struct {
		who  *testbed.Baresip
		freq float64
	}{{caller, calleeHz}, {callee, callerHz}} {
		files := c.who.ReceivedAudio()
		if len(files) != 1 {
			t.Errorf("%s: %d recordings of received audio, want 1: %v", c.who.Name, len(files), files)
			continue
		}
		checkTone(t, c.who.Name, files[0], c.freq)
	}
}

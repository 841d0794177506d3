package interop

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/switchboard/switchboard/test/internal/testbed"
)

// TestBaresipCall registers two baresip phones, alice and bob (who answers
// by himself), and has alice call sip:bob@domain through the switch with the
// default media settings. Each side sends its own tone (alice 1000 Hz, bob
// 600 Hz); the call must be established on both sides, carry each tone to the
// other side, hang up cleanly on both, and appear answered in the CDRs.
func TestBaresipCall(t *testing.T) {
	testbed.RequireTool(t, "baresip")
	testbed.RequireTool(t, "sox")
	srv := testbed.StartServer(t, testbed.Binary(t), testbed.ServerConfig{})
	addUsers(t, srv, []testbed.Cred{{User: "alice", Password: "alice-pw-1"}, {User: "bob", Password: "bob-pw-2"}})
	dir := t.TempDir()
	const aliceHz, bobHz = 1000, 600

	proxy := srv.Addr(t, "udp")
	bob := testbed.StartBaresip(t, "bob", testbed.BaresipConfig{
		User: "bob", Password: "bob-pw-2", Domain: srv.Domain, Proxy: proxy, AnswerMode: "auto",
		AudioFile: testbed.MakeTone(t, filepath.Join(dir, "bob.wav"), bobHz, 20),
	})
	alice := testbed.StartBaresip(t, "alice", testbed.BaresipConfig{
		User: "alice", Password: "alice-pw-1", Domain: srv.Domain, Proxy: proxy,
		AudioFile: testbed.MakeTone(t, filepath.Join(dir, "alice.wav"), aliceHz, 20),
	})
	bob.WaitRegistered(t, 10*time.Second)
	alice.WaitRegistered(t, 10*time.Second)

	ctx := context.Background()
	if _, err := alice.Command(ctx, "dial", "sip:bob@"+srv.Domain); err != nil {
		t.Fatal(err)
	}
	alice.WaitEventType(t, "CALL_ESTABLISHED", 15*time.Second)
	bob.WaitEventType(t, "CALL_ESTABLISHED", 5*time.Second)

	// Let audio flow until each side has recorded 1.5 s of what it received
	// (8000 samples/s, 2 bytes each, after a 44-byte header).
	const want = 44 + 3*8000
	received := func(b *testbed.Baresip) int64 {
		var n int64
		for _, p := range b.ReceivedAudio() {
			if st, err := os.Stat(p); err == nil {
				n += st.Size()
			}
		}
		return n
	}
	if !testbed.Poll(15*time.Second, 100*time.Millisecond, func() bool {
		return received(alice) >= want && received(bob) >= want
	}) {
		t.Errorf("audio: alice received %d bytes, bob %d bytes of testbed.WAV, want %d each", received(alice), received(bob), want)
	}

	if _, err := alice.Command(ctx, "hangup", ""); err != nil {
		t.Fatal(err)
	}
	alice.WaitEventType(t, "CALL_CLOSED", 10*time.Second)
	bob.WaitEventType(t, "CALL_CLOSED", 10*time.Second)

	for _, c := range []struct {
		who  *testbed.Baresip
		freq float64
	}{{alice, bobHz}, {bob, aliceHz}} {
		files := c.who.ReceivedAudio()
		if len(files) != 1 {
			t.Errorf("%s: %d recordings of received audio, want 1: %v", c.who.Name, len(files), files)
			continue
		}
		w, err := testbed.ReadWAV(files[0])
		if err != nil {
			t.Error(err)
			continue
		}
		tone := testbed.MeasureTone(w, c.freq)
		t.Logf("%s received %.1fs of audio, %.0f%% not silent, %.0f%% of it at %.0f Hz",
			c.who.Name, tone.Seconds, 100*tone.Active, 100*tone.Share, c.freq)
		if tone.Active < 0.5 || tone.Share < 0.8 {
			t.Errorf("%s did not receive the other side's %.0f Hz tone: %+v", c.who.Name, c.freq, tone)
		}
	}

	var rows []testbed.CDR
	if !testbed.Poll(10*time.Second, 100*time.Millisecond, func() bool {
		rows = callsBetween(srv.CDRs(t), "alice", "bob")
		return len(rows) == 1 && rows[0].Answered() && rows[0]["ended"] != "" && rows[0]["ended"] != "-"
	}) {
		t.Fatalf("cdr list: want one answered and ended alice→bob call, got %v", rows)
	}
	if r := rows[0]; r["status"] != "200" || (r["hangup-by"] != "" && r["hangup-by"] != "caller") {
		t.Errorf("cdr: want status 200, hung up by the caller: %v", r)
	}
}

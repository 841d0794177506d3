//go:build linux

package browser

import (
	"context"
	"encoding/json"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/test/internal/testbed"
)

// TestConsole drives the operations console in headless Chromium, by role
// and accessible name: an admin signs in; a call between two baresip phones
// appears in the live list with its packets growing; opened, it shows its
// SIP ladder (INVITE, 407, INVITE, 100, 180, 200, ACK); the admin hangs it
// up and both phones get a BYE; the call is found in the records; a user
// added in the console registers with baresip. Screenshots of the console
// at desktop and phone widths go to docs/.
func TestConsole(t *testing.T) {
	node, dir := requirements(t)
	root := filepath.Dir(filepath.Dir(dir))
	tones := t.TempDir()
	ns := testbed.NewNetns(t, "console")
	sw := startSwitch(t, ns, map[string]string{"alice": "alicepw", "bob": "bobpw"})
	ctx := context.Background()
	if _, err := sw.CLI(ctx, "admin", "add", "ops", "--password", "ops-secret"); err != nil {
		t.Fatal(err)
	}
	bob := startBaresip(t, ns, "bob", testbed.MakeTone(t, filepath.Join(tones, "bob.wav"), 600, 60), 5070, 5090, true)
	alice := startBaresip(t, ns, "alice", testbed.MakeTone(t, filepath.Join(tones, "alice.wav"), 1000, 60), 5072, 5092, false)
	bob.WaitRegistered(t, 15*time.Second)
	alice.WaitRegistered(t, 15*time.Second)

	d := driver{testbed.StartChromium(t, ns, node, dir, "driver.mjs")}
	d.Must("launch", map[string]any{"name": "ops", "tone": filepath.Join(tones, "bob.wav"), "url": "http://" + httpAddr + "/admin/"})
	d.Must("fill", map[string]any{"name": "ops", "label": "Name", "value": "ops"})
	d.Must("fill", map[string]any{"name": "ops", "label": "Password", "value": "wrong"})
	d.Must("click", map[string]any{"name": "ops", "button": "Sign in"})
	d.Must("waitText", map[string]any{"name": "ops", "text": "Wrong name or password."})
	d.Must("fill", map[string]any{"name": "ops", "label": "Password", "value": "ops-secret"})
	d.Must("click", map[string]any{"name": "ops", "button": "Sign in"})
	d.Must("waitText", map[string]any{"name": "ops", "text": "Signed in as ops"})

	// A call: in the live list, with its packets growing.
	if _, err := alice.Command(ctx, "dial", "sip:bob@"+domain); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, alice, "CALL_ESTABLISHED", "", 15*time.Second)
	waitEvent(t, bob, "CALL_ESTABLISHED", "", 5*time.Second)
	rowName := `alice@switchboard\.local to bob@switchboard\.local answered`
	packets := func() int {
		var text string
		if err := json.Unmarshal(d.Must("roleText", map[string]any{"name": "ops", "role": "row", "pattern": rowName}), &text); err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`caller \S+ · (\d+) pkts`).FindStringSubmatch(text)
		if m == nil {
			return -1
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	first := 0
	if !testbed.Poll(20*time.Second, 300*time.Millisecond, func() bool { first = packets(); return first > 0 }) {
		t.Fatal("the call's row shows no packets")
	}
	if !testbed.Poll(10*time.Second, 300*time.Millisecond, func() bool { return packets() > first+25 }) {
		t.Fatalf("the call's packets do not grow past %d", first)
	}

	// Opened: the ladder, in order, and an arrow's message.
	d.Must("clickRole", map[string]any{"name": "ops", "role": "button", "pattern": "^Open call alice@"})
	var names []string
	if !testbed.Poll(10*time.Second, 200*time.Millisecond, func() bool {
		names = nil
		_ = json.Unmarshal(d.Must("roleNames", map[string]any{"name": "ops", "role": "button", "pattern": " from (caller|switch|callee) to "}), &names)
		return len(names) >= 9
	}) {
		t.Fatalf("ladder: %q", names)
	}
	var firsts []string
	for _, n := range names {
		firsts = append(firsts, strings.Fields(n)[0])
	}
	if !inOrder(firsts, "INVITE", "407", "INVITE", "100", "180", "200", "ACK") {
		t.Fatalf("ladder arrows out of order: %q", names)
	}
	d.Must("clickRole", map[string]any{"name": "ops", "role": "button", "pattern": "^407 .* from switch to caller"})
	d.Must("waitText", map[string]any{"name": "ops", "text": "SIP/2.0 407 Proxy Authentication Required"})
	time.Sleep(3 * time.Second) // a few seconds of media health for the screenshots
	docs := filepath.Join(root, "docs")
	d.Must("viewport", map[string]any{"name": "ops", "width": 1280, "height": 900})
	d.shot("ops", filepath.Join(docs, "console-desktop.png"))
	d.Must("viewport", map[string]any{"name": "ops", "width": 390, "height": 844})
	d.shot("ops", filepath.Join(docs, "console-phone.png"))
	d.Must("viewport", map[string]any{"name": "ops", "width": 1280, "height": 900})

	// Hung up from the console: both phones get a BYE.
	alice.ClearEvents()
	bob.ClearEvents()
	d.Must("click", map[string]any{"name": "ops", "button": "Hang up call"})
	waitEvent(t, alice, "CALL_CLOSED", "", 10*time.Second)
	waitEvent(t, bob, "CALL_CLOSED", "", 10*time.Second)
	if !strings.Contains(alice.Log(), "BYE sip:") || !strings.Contains(bob.Log(), "BYE sip:") {
		t.Error("a phone got no BYE")
	}

	// The call in the records search.
	var callID string
	for _, r := range sw.CDRs(t) {
		if userOf(r["caller"]) == "alice" {
			callID = r["call-id"]
		}
	}
	if callID == "" {
		t.Fatalf("no record of the call: %v", sw.CDRs(t))
	}
	d.Must("click", map[string]any{"name": "ops", "button": "Records"})
	d.Must("fill", map[string]any{"name": "ops", "label": "User", "value": "alice"})
	d.Must("click", map[string]any{"name": "ops", "button": "Search"})
	d.Must("roleText", map[string]any{"name": "ops", "role": "row", "pattern": regexp.QuoteMeta(callID)})
	d.shot("ops", filepath.Join(root, "test", "artifacts", "console-records.png"))

	// A user added in the console registers.
	d.Must("click", map[string]any{"name": "ops", "button": "Users"})
	d.Must("fill", map[string]any{"name": "ops", "label": "User name", "value": "dave"})
	d.Must("fill", map[string]any{"name": "ops", "label": "New user's password", "value": "davepw"})
	d.Must("click", map[string]any{"name": "ops", "button": "Add user"})
	d.Must("waitText", map[string]any{"name": "ops", "text": "User dave added."})
	dave := startBaresip(t, ns, "dave", filepath.Join(tones, "bob.wav"), 5074, 5094, true)
	dave.WaitRegistered(t, 15*time.Second)
	d.Must("click", map[string]any{"name": "ops", "button": "Live"})
	d.Must("roleText", map[string]any{"name": "ops", "role": "row", "pattern": "^dave sip:"})
}

// inOrder reports whether want appear in got in that order.
func inOrder(got []string, want ...string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

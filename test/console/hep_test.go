package console

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/hep"
	"github.com/switchboard/switchboard/test/internal/testbed"
)

// collector is the test's HEP v3 receiver: it decodes every packet and
// passes a copy on to sngrep.
type collector struct {
	conn net.PacketConn
	fwd  net.Conn

	mu      sync.Mutex
	packets []hep.Packet
	bad     int
}

func (c *collector) run() {
	buf := make([]byte, 65535)
	for {
		n, _, err := c.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		if c.fwd != nil {
			_, _ = c.fwd.Write(buf[:n])
		}
		p, err := hep.Decode(buf[:n])
		c.mu.Lock()
		if err != nil {
			c.bad++
		} else {
			c.packets = append(c.packets, p)
		}
		c.mu.Unlock()
	}
}

// of returns the packets whose SIP message has that Call-ID.
func (c *collector) of(callID string) []hep.Packet {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []hep.Packet
	for _, p := range c.packets {
		if sipCallID(string(p.Payload)) == callID {
			out = append(out, p)
		}
	}
	return out
}

var callIDHeader = regexp.MustCompile(`(?mi)^(?:call-id|i)\s*:\s*(\S+)\s*$`)

func sipCallID(msg string) string {
	if m := callIDHeader.FindStringSubmatch(msg); m != nil {
		return m[1]
	}
	return ""
}

// TestHEP exports a call between two baresip phones as HEP v3: the test's
// decoder receives every message the switch traced for it, with the right
// addresses and capture ID, and sngrep, fed the same packets, shows the
// call's dialog.
func TestHEP(t *testing.T) {
	testbed.RequireTool(t, "baresip")
	testbed.RequireTool(t, "sox")
	sngrepBin := testbed.RequireTool(t, "sngrep")
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	col := &collector{conn: pc}

	// sngrep -L listens for HEP; -N runs it without its interface, printing
	// the count of dialogs (-c: those starting with an INVITE) it has.
	sngPort := testbed.FreePort(t, 1)
	sng, err := testbed.StartProcess("sngrep", exec.Command(sngrepBin, "-N", "-c", "-L", fmt.Sprintf("udp:127.0.0.1:%d", sngPort)),
		filepath.Join(t.TempDir(), "sngrep.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer sng.Stop(syscall.SIGTERM, 5*time.Second)
	if col.fwd, err = net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", sngPort)); err != nil {
		t.Fatal(err)
	}
	defer col.fwd.Close()
	done := make(chan struct{})
	go func() { defer close(done); col.run() }()
	defer func() { pc.Close(); <-done }()

	sw, tok := startSwitch(t, testbed.ServerConfig{
		Extra: fmt.Sprintf("hep: {address: \"udp://%s\", id: 2001}\n", pc.LocalAddr()),
	})
	ctx := context.Background()
	sw.AddUser(t, "alice", "alice-pw")
	sw.AddUser(t, "bob", "bob-pw")
	dir := t.TempDir()
	proxy := sw.Addr(t, "udp")
	bob := testbed.StartBaresip(t, "bob", testbed.BaresipConfig{User: "bob", Password: "bob-pw", Domain: sw.Domain,
		Proxy: proxy, AnswerMode: "auto", AudioFile: testbed.MakeTone(t, filepath.Join(dir, "bob.wav"), 600, 20)})
	alice := testbed.StartBaresip(t, "alice", testbed.BaresipConfig{User: "alice", Password: "alice-pw", Domain: sw.Domain,
		Proxy: proxy, AudioFile: testbed.MakeTone(t, filepath.Join(dir, "alice.wav"), 1000, 20)})
	bob.WaitRegistered(t, 10*time.Second)
	alice.WaitRegistered(t, 10*time.Second)
	if !strings.Contains(sng.Out.String(), "Dialog count: 0") || strings.Contains(sng.Out.String(), "Dialog count: 1") {
		t.Fatalf("sngrep before the call: %q", testbed.Tail(sng.Out.String(), 1))
	}
	if _, err := alice.Command(ctx, "dial", "sip:bob@"+sw.Domain); err != nil {
		t.Fatal(err)
	}
	alice.WaitEventType(t, "CALL_ESTABLISHED", 15*time.Second)
	bob.WaitEventType(t, "CALL_ESTABLISHED", 5*time.Second)
	if _, err := alice.Command(ctx, "hangup", ""); err != nil {
		t.Fatal(err)
	}
	alice.WaitEventType(t, "CALL_CLOSED", 10*time.Second)
	bob.WaitEventType(t, "CALL_CLOSED", 10*time.Second)

	// The call's Call-ID, from its record.
	c := newClient(t, "http://"+sw.Addrs["http"], nil)
	c.token = tok
	var page struct {
		Records []struct {
			CallID string `json:"call_id"`
		}
	}
	c.do("GET", "/api/v1/cdr?user=alice", nil).decode(t, &page)
	if len(page.Records) != 1 {
		t.Fatalf("records: %+v", page)
	}
	id := page.Records[0].CallID
	var tr struct {
		Messages []struct {
			Direction, From, To, Raw string
		}
	}
	// Every message of the call's trace (all it sent and received, with
	// the final BYE's 200) reaches the collector, with its addresses.
	want := func() bool {
		c.do("GET", "/api/v1/calls/"+url.PathEscape(id)+"/trace", nil).decode(t, &tr)
		got := col.of(id)
		if len(tr.Messages) < 12 || len(got) < len(tr.Messages) {
			return false
		}
		seen := map[string]bool{}
		for _, p := range got {
			seen[p.Src.String()+">"+p.Dst.String()+">"+string(p.Payload)] = true
		}
		for _, m := range tr.Messages {
			if !seen[m.From+">"+m.To+">"+m.Raw] {
				return false
			}
		}
		return true
	}
	if !testbed.Poll(10*time.Second, 100*time.Millisecond, want) {
		b, _ := json.Marshal(tr)
		t.Fatalf("HEP: %d packets of call %s, trace has %d messages (%d undecodable packets):\n%s",
			len(col.of(id)), id, len(tr.Messages), col.bad, b)
	}
	var lines []string
	for _, p := range col.of(id) {
		if p.CaptureID != 2001 || p.Proto != hep.ProtoUDP || p.Time.IsZero() || p.CorrID != id {
			t.Errorf("packet %+v", p)
		}
		first, _, _ := strings.Cut(string(p.Payload), "\r\n")
		lines = append(lines, fmt.Sprintf("%s -> %s %s", p.Src, p.Dst, first))
	}
	joined := strings.Join(lines, "\n")
	for _, w := range []string{"INVITE sip:bob@", "SIP/2.0 407", "ACK sip:", "SIP/2.0 100", "SIP/2.0 180", "SIP/2.0 200", "BYE sip:"} {
		if !strings.Contains(joined, w) {
			t.Errorf("HEP lacks %q:\n%s", w, joined)
		}
	}
	t.Logf("HEP packets of call %s:\n%s", id, joined)

	// sngrep shows the call's dialog.
	if !testbed.Poll(10*time.Second, 100*time.Millisecond, func() bool {
		return strings.Contains(sng.Out.String(), "Dialog count: 1")
	}) {
		t.Fatalf("sngrep shows no dialog: %q", testbed.Tail(sng.Out.String(), 1))
	}
}

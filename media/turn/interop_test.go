package turn

// Interop with coturn's client tools (Debian package coturn): turnutils_stunclient,
// turnutils_uclient and turnutils_peer, all on 127.0.0.1. With CI=true a
// missing tool fails the test; otherwise it is skipped.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// needTools skips the test (fails it under CI=true) when a tool is missing.
func needTools(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s not installed (Debian package coturn): %v", n, err)
			}
			t.Skipf("%s not installed (Debian package coturn)", n)
		}
	}
}

// runTool runs a tool bounded by timeout and returns its combined output.
func runTool(t *testing.T, timeout time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = 2 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s timed out after %v: %w", name, timeout, ctx.Err())
	}
	t.Logf("$ %s %s\n%s", name, strings.Join(args, " "), lastLines(string(out), 12))

	return string(out), err
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}

	return strings.Join(lines, "\n")
}

// startTURNPeer starts turnutils_peer (a UDP echo) on a free 127.0.0.1 port
// and returns the port once it echoes. It is killed, by PID, at cleanup.
func startTURNPeer(t *testing.T) int {
	t.Helper()
	for attempt := 0; attempt < 5; attempt++ {
		port := freeUDPPort(t)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		cmd := exec.CommandContext(ctx, "turnutils_peer", "-L", "127.0.0.1", "-p", strconv.Itoa(port))
		if err := cmd.Start(); err != nil {
			cancel()
			t.Fatalf("turnutils_peer: %v", err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		stop := func() {
			_ = cmd.Process.Kill()
			<-exited
			cancel()
		}
		if echoes(port, exited) {
			t.Cleanup(stop)

			return port
		}
		stop()
	}
	t.Fatal("turnutils_peer did not come up")

	return 0
}

// echoes reports whether something on 127.0.0.1:port echoes UDP, trying for
// up to 3 s or until exited is closed.
func echoes(port int, exited <-chan struct{}) bool {
	c, err := net.Dial("udp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	defer c.Close()
	buf := make([]byte, 64)
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); {
		select {
		case <-exited:
			return false
		default:
		}
		_, _ = c.Write([]byte("ping"))
		_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, err := c.Read(buf)
		if err == nil && string(buf[:n]) == "ping" {
			return true
		}
		if !isTimeout(err) {
			time.Sleep(50 * time.Millisecond) // ICMP port unreachable: not bound yet
		}
	}

	return false
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()

	return pc.LocalAddr().(*net.UDPAddr).Port
}

var (
	reflexiveRe = regexp.MustCompile(`UDP reflexive addr: 127\.0\.0\.1:(\d+)`)
	totalsRe    = regexp.MustCompile(`tot_send_msgs=(\d+), tot_recv_msgs=(\d+)`)
	lostRe      = regexp.MustCompile(`Total lost packets (\d+) \(([\d.]+)%\)`)
)

// uclientTotals parses turnutils_uclient's final counters.
func uclientTotals(out string) (sent, recv, lost int, ok bool) {
	m := totalsRe.FindAllStringSubmatch(out, -1)
	l := lostRe.FindStringSubmatch(out)
	if m == nil || l == nil {
		return 0, 0, 0, false
	}
	last := m[len(m)-1]
	sent, _ = strconv.Atoi(last[1])
	recv, _ = strconv.Atoi(last[2])
	lost, _ = strconv.Atoi(l[1])

	return sent, recv, lost, true
}

func TestInteropSTUNClient(t *testing.T) {
	needTools(t, "turnutils_stunclient")
	s := startServer(t, nil)
	port := portOf(s.addr(t, TransportUDP))
	out, err := runTool(t, 20*time.Second, "turnutils_stunclient", "-p", strconv.Itoa(port), "127.0.0.1")
	if err != nil {
		t.Fatalf("turnutils_stunclient: %v", err)
	}
	if m := reflexiveRe.FindStringSubmatch(out); m == nil || m[1] == "0" {
		t.Fatalf("no mapped address in output")
	}
}

func TestInteropUClient(t *testing.T) {
	needTools(t, "turnutils_uclient", "turnutils_peer")
	s := startServer(t, allowLoopback)
	peer := strconv.Itoa(startTURNPeer(t))
	udpPort := strconv.Itoa(portOf(s.addr(t, TransportUDP)))
	tcpPort := strconv.Itoa(portOf(s.addr(t, TransportTCP)))
	const messages = 20
	common := []string{"-e", "127.0.0.1", "-r", peer, "-n", strconv.Itoa(messages), "-l", "172", "-m", "1", "-z", "5"}

	for _, tt := range []struct {
		name string
		args []string
	}{
		{"udp channels", append([]string{"-u", "alice", "-w", "alicepw", "-p", udpPort}, common...)},
		{"udp send indications", append([]string{"-s", "-u", "alice", "-w", "alicepw", "-p", udpPort}, common...)},
		{"tcp", append([]string{"-t", "-u", "alice", "-w", "alicepw", "-p", tcpPort}, common...)},
		// coturn computes TURN REST credentials from the shared secret itself.
		{"rest secret", append([]string{"-W", string(testSecret), "-u", "carol", "-p", udpPort}, common...)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := s.metric(t, "switchboard_turn_allocations_total")
			out, err := runTool(t, 60*time.Second, "turnutils_uclient", append(tt.args, "127.0.0.1")...)
			if err != nil {
				t.Fatalf("turnutils_uclient: %v", err)
			}
			sent, recv, lost, ok := uclientTotals(out)
			if !ok {
				t.Fatal("no totals in turnutils_uclient output")
			}
			if sent < messages || recv != sent || lost != 0 {
				t.Fatalf("sent %d, received %d, lost %d", sent, recv, lost)
			}
			if s.metric(t, "switchboard_turn_allocations_total") <= before {
				t.Fatal("no allocation counted")
			}
		})
	}
}

func TestInteropUClientRefused(t *testing.T) {
	needTools(t, "turnutils_uclient")
	s := startServer(t, allowLoopback)
	udpPort := strconv.Itoa(portOf(s.addr(t, TransportUDP)))
	// No peer is started: every case is refused before any data is relayed.
	// On 401 turnutils_uclient retries a few times, then gives up with
	// "Cannot complete Allocation", as it does against coturn.
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"wrong password", []string{"-u", "alice", "-w", "wrong", "-e", "127.0.0.1", "-r", "9"}, "Cannot complete Allocation"},
		{"unknown user", []string{"-u", "mallory", "-w", "x", "-e", "127.0.0.1", "-r", "9"}, "Cannot complete Allocation"},
		{"wrong REST secret", []string{"-W", "not-the-secret", "-u", "carol", "-e", "127.0.0.1", "-r", "9"}, "Cannot complete Allocation"},
		// The peer is in 10.0.0.0/8, which is not in allow_peers: the
		// ChannelBind (or CreatePermission with -s) is refused, so the server
		// never sends to it; the relayed-packets counter below proves it.
		{"private peer channel", []string{"-u", "alice", "-w", "alicepw", "-e", "10.0.0.1", "-r", "9"}, "channel bind: error 403"},
		{"private peer permission", []string{"-s", "-u", "alice", "-w", "alicepw", "-e", "10.0.0.1", "-r", "9"}, "create permission error 403"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"-p", udpPort, "-n", "5", "-m", "1"}, tt.args...)
			out, err := runTool(t, 30*time.Second, "turnutils_uclient", append(args, "127.0.0.1")...)
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("turnutils_uclient should fail, got %v", err)
			}
			if !strings.Contains(out, tt.want) {
				t.Fatalf("output lacks %q", tt.want)
			}
			if _, _, _, ok := uclientTotals(out); ok {
				t.Fatal("traffic was exchanged")
			}
		})
	}
	if got := s.metric(t, "switchboard_turn_relayed_packets_total", "direction", "to_peer"); got != 0 {
		t.Fatalf("%v packets relayed to peers", got)
	}
	if got := s.metric(t, "switchboard_turn_permissions_denied_total"); got < 2 {
		t.Fatalf("permissions denied = %v", got)
	}
	if got := s.metric(t, "switchboard_turn_auth_failures_total"); got < 3 {
		t.Fatalf("auth failures = %v", got)
	}
}

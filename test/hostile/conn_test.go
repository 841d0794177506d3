package hostile

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/siptest"
	"github.com/switchboard/switchboard/test/internal/testbed"
)

// connFDLimit is the descriptor limit the connection-flood tests run the
// switch under (prlimit): low enough to reach in a fraction of a second.
const connFDLimit = 256

// startConnVictim starts the switch under `prlimit --nofile=N:N` (N =
// connFDLimit) with sipYAML inside its sip: section.
func startConnVictim(t *testing.T, sipYAML string) *testbed.Server {
	t.Helper()
	prlimit := testbed.RequireTool(t, "prlimit")
	return testbed.StartServer(t, testbed.Binary(t), testbed.ServerConfig{
		SIP:    sipYAML,
		Prefix: []string{prlimit, fmt.Sprintf("--nofile=%d:%d", connFDLimit, connFDLimit), "--"},
	})
}

// openFDs returns the number of descriptors process pid has open.
func openFDs(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// connFlood is a set of TCP connections the test holds open.
type connFlood struct {
	mu    sync.Mutex
	conns []net.Conn
}

// open dials n connections to addr, from the attacker addresses, and keeps
// those the handshake completed for (the kernel completes it for the
// listen backlog even when the switch cannot accept).
func (f *connFlood) open(t *testing.T, addr string, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; i < n && time.Now().Before(deadline); i++ {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(attackerIP(i))}, Timeout: 2 * time.Second}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			if errors.Is(err, syscall.ECONNRESET) {
				continue // refused at once by a cap
			}
			t.Fatalf("connection %d: %v", i, err)
		}
		f.mu.Lock()
		f.conns = append(f.conns, c)
		f.mu.Unlock()
	}
}

// stillOpen returns how many of the connections the switch has not closed.
func (f *connFlood) stillOpen() int {
	f.mu.Lock()
	conns := append([]net.Conn(nil), f.conns...)
	f.mu.Unlock()
	var wg sync.WaitGroup
	var mu sync.Mutex
	open := 0
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			_, err := c.Read(make([]byte, 1))
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				mu.Lock()
				open++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return open
}

func (f *connFlood) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.conns {
		c.Close()
	}
	f.conns = nil
}

// optionsText is an OPTIONS to the switch itself sent from local over
// transport.
func optionsText(transport string, local net.Addr) string {
	return "OPTIONS sip:switchboard.local SIP/2.0\r\n" +
		"Via: SIP/2.0/" + transport + " " + local.String() + ";branch=" + siptest.NewBranch() + "\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:probe@switchboard.local>;tag=" + siptest.Rand(8) + "\r\n" +
		"To: <sip:switchboard.local>\r\n" +
		"Call-ID: " + siptest.Rand(12) + "@probe\r\n" +
		"CSeq: 1 OPTIONS\r\n" +
		"Content-Length: 0\r\n\r\n"
}

// tcpOptions sends an OPTIONS over a new TCP connection from 127.0.0.1 and
// returns the status line of the answer, or an error if none came within
// timeout.
func tcpOptions(addr string, timeout time.Duration) (string, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte(optionsText("TCP", c.LocalAddr()))); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// udpOptions sends an OPTIONS over UDP (up to three times) and returns the
// status line of the answer.
func udpOptions(addr string, timeout time.Duration) (string, error) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	msg := []byte(optionsText("UDP", c.LocalAddr()))
	buf := make([]byte, 65536)
	var last error
	for range 3 {
		if _, err := c.Write(msg); err != nil {
			return "", err
		}
		c.SetReadDeadline(time.Now().Add(timeout / 3))
		n, err := c.Read(buf)
		if err == nil {
			line, _, _ := strings.Cut(string(buf[:n]), "\r\n")
			return line, nil
		}
		last = err
	}
	return "", last
}

// waitTCPOptions200 polls until an OPTIONS over a fresh TCP connection is
// answered 200, or fails the test after d.
func waitTCPOptions200(t *testing.T, srv *testbed.Server, d time.Duration, what string) {
	t.Helper()
	var line string
	var err error
	ok := testbed.Poll(d, 100*time.Millisecond, func() bool {
		line, err = tcpOptions(srv.Addr(t, "tcp"), 2*time.Second)
		return err == nil && strings.HasPrefix(line, "SIP/2.0 200")
	})
	if !ok {
		t.Fatalf("%s: TCP OPTIONS not answered 200 within %s (last: %q, %v)", what, d, line, err)
	}
}

func wantUDPOptions200(t *testing.T, srv *testbed.Server, what string) {
	t.Helper()
	line, err := udpOptions(srv.Addr(t, "udp"), 3*time.Second)
	if err != nil || !strings.HasPrefix(line, "SIP/2.0 200") {
		t.Fatalf("%s: UDP OPTIONS got %q, %v; want 200", what, line, err)
	}
}

// TestConnFDExhaustionRecovers runs the switch out of file descriptors with
// idle TCP connections (caps raised past the limit): accept fails with
// EMFILE, the switch backs off instead of giving up its TCP listener, UDP
// still answers, and TCP answers again once the connections are gone.
func TestConnFDExhaustionRecovers(t *testing.T) {
	srv := startConnVictim(t, "connections: {max: 100000, max_per_source: 100000}")
	base := openFDs(t, srv.PID())
	waitTCPOptions200(t, srv, 5*time.Second, "before the flood")

	var flood connFlood
	defer flood.close()
	flood.open(t, srv.Addr(t, "tcp"), connFDLimit+100)
	if !testbed.Poll(10*time.Second, 20*time.Millisecond, func() bool {
		return strings.Contains(srv.Log(), "accept failing")
	}) {
		t.Fatalf("switch (%d fds at start, limit %d) did not log an accept failure with %d connections open; fds now %d",
			base, connFDLimit, len(flood.conns), openFDs(t, srv.PID()))
	}
	if n := openFDs(t, srv.PID()); n < connFDLimit-5 {
		t.Errorf("accept failing with only %d of %d descriptors open", n, connFDLimit)
	}
	wantUDPOptions200(t, srv, "out of descriptors")
	if n := strings.Count(srv.Log(), "accept failing"); n != 1 {
		t.Errorf("%d 'accept failing' lines for one exhaustion, want 1 (rate-limited)", n)
	}

	flood.close()
	waitTCPOptions200(t, srv, 15*time.Second, "after the connections closed")
	if !strings.Contains(srv.Log(), "accept recovered") {
		t.Errorf("no 'accept recovered' logged")
	}
	if strings.Contains(srv.Log(), "listener stopped") {
		t.Errorf("a listener stopped:\n%s", srv.Log())
	}
	wantUDPOptions200(t, srv, "after the flood")
}

// TestConnCapBelowFDLimit floods the switch on its default caps under a
// descriptor limit of 256: the global cap (derived from the limit: at
// least 64) refuses connections beyond it before descriptors run out.
func TestConnCapBelowFDLimit(t *testing.T) {
	const wantMax = 64 // max(256 - 1024, 64)
	srv := startConnVictim(t, "")
	var flood connFlood
	defer flood.close()
	flood.open(t, srv.Addr(t, "tcp"), wantMax+60)
	if !testbed.Eventually(t, 10*time.Second, func() bool {
		return strings.Contains(srv.Log(), "connection refused: too many connections")
	}, fmt.Sprintf("a refusal logged with %d connections opened", len(flood.conns))) {
		t.FailNow()
	}
	// Connections still in the listen backlog are refused as the switch
	// gets to them.
	open := 0
	if !testbed.Poll(10*time.Second, 50*time.Millisecond, func() bool { open = flood.stillOpen(); return open == wantMax }) {
		t.Errorf("%d connections left open by the switch, want the cap, %d", open, wantMax)
	}
	if n := openFDs(t, srv.PID()); n >= connFDLimit {
		t.Errorf("%d descriptors open, want fewer than the limit %d", n, connFDLimit)
	}
	if strings.Contains(srv.Log(), "accept failing") {
		t.Errorf("accept failed: the cap should have kept descriptors free")
	}
	wantUDPOptions200(t, srv, "at the connection cap")
	flood.close()
	waitTCPOptions200(t, srv, 15*time.Second, "after the connections closed")
}

// TestConnIdleTimeout checks sip.connections.idle_timeout on the real
// binary: a TCP connection that sends nothing, and one that sent a request
// and then nothing, are closed after the timeout; a phone that registered
// over its connection keeps it.
func TestConnIdleTimeout(t *testing.T) {
	const idle = 2 * time.Second
	srv := testbed.StartServer(t, testbed.Binary(t), testbed.ServerConfig{SIP: "connections: {idle_timeout: 2s}"})
	srv.AddUser(t, "bob", passwords["bob"])
	tr := siptest.NewTrace(t)
	bob := siptest.NewPhone(t, siptest.Config{Transport: "tcp", Server: srv.Addr(t, "tcp"), User: "bob", Password: passwords["bob"], Trace: tr})
	bob.MustRegister()

	start := time.Now()
	silent, err := net.Dial("tcp", srv.Addr(t, "tcp"))
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	asked, err := net.Dial("tcp", srv.Addr(t, "tcp"))
	if err != nil {
		t.Fatal(err)
	}
	defer asked.Close()
	asked.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := asked.Write([]byte(optionsText("TCP", asked.LocalAddr()))); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(asked)
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "SIP/2.0 200") {
		t.Fatalf("OPTIONS over TCP: %q, %v", line, err)
	}
	answered := time.Now()

	for _, c := range []struct {
		conn  net.Conn
		r     *bufio.Reader
		since time.Time
		what  string
	}{
		{silent, bufio.NewReader(silent), start, "connection that sent nothing"},
		{asked, r, answered, "connection idle after an OPTIONS, no registration"},
	} {
		c.conn.SetReadDeadline(time.Now().Add(idle + 8*time.Second))
		for {
			if _, err := c.r.ReadString('\n'); err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatalf("%s: still open %s after it went idle", c.what, time.Since(c.since))
				}
				break
			}
		}
		if d := time.Since(c.since); d < idle {
			t.Errorf("%s: closed after %s, before the idle timeout %s", c.what, d, idle)
		}
	}
	// bob has been quiet since before either was opened, and keeps his
	// connection: an OPTIONS over it is answered.
	m := bob.Request("OPTIONS", "sip:switchboard.local")
	bob.Send(m)
	if res := bob.WaitFinal(m); res.StatusCode != 200 {
		t.Fatalf("OPTIONS over the registered connection: %d %s", res.StatusCode, res.Reason)
	}
	if !strings.Contains(srv.Log(), "idle connections closed") {
		t.Errorf("idle closes not logged")
	}
}

//go:build linux

package nat

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/test/interop"
)

// nsServerConfig is the switch of a NAT test.
type nsServerConfig struct {
	Netns string // namespace to run in
	IP    string // its public address: SIP listener, media.public_ip and bind_ip
	// Relay is media.relay: always, nat or never.
	Relay string
	// Users are created (name → password) before the switch starts.
	Users map[string]string
}

// Fixed ports are fine inside a namespace of the test's own.
const (
	nsSIPPort = 5060
	nsRTPLo   = 10000
	nsRTPHi   = 10199
)

// nsServer is a switchboard process running in a network namespace.
type nsServer struct {
	Bin, Dir, Config string
	Domain           string
	SIPAddr          string // IP:port of the UDP listener
	proc             *interop.Process
}

// startNSServer writes a config, creates the users with the CLI, and starts
// `ip netns exec NS switchboard serve` (the PID is the switch's), waiting
// for its UDP listener. The switch gets SIGTERM when the test ends; a data
// race report or a non-zero exit status fails the test.
func startNSServer(t testing.TB, bin string, c nsServerConfig) *nsServer {
	t.Helper()
	dir := t.TempDir()
	s := &nsServer{Bin: bin, Dir: dir, Config: filepath.Join(dir, "switchboard.yaml"), Domain: "switchboard.local"}
	// Short registrations: a phone behind NAT refreshes its binding (and
	// the NAT's mapping) well within the routers' UDP timeouts.
	yaml := fmt.Sprintf(`domain: %s
database: %s
log: {level: debug}
sip:
  listen: ["udp://%s:%d"]
http:
  listen: 127.0.0.1:0
media: {public_ip: %s, bind_ip: %s, rtp_ports: %d-%d, relay: %s, timeout: 30s}
turn: {enabled: false}
registrar: {default_expires: 60, min_expires: 30, max_expires: 120}
security: {auth_failures: 10, auth_window: 1m, ban: 5m, digest_algorithms: [%s]}
`, s.Domain, filepath.Join(dir, "switchboard.db"), c.IP, nsSIPPort, c.IP, c.IP, nsRTPLo, nsRTPHi, c.Relay,
		strings.Join(baresipDigest, ", "))
	if err := os.WriteFile(s.Config, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, pw := range c.Users {
		if out, err := s.CLI("user", "add", name, "--password", pw); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}

	cmd := exec.Command("ip", "netns", "exec", c.Netns, bin, "serve", "--config", s.Config)
	cmd.Dir = dir
	cmd.Env = serverEnv()
	proc, err := interop.StartProcess("switchboard", cmd, filepath.Join(dir, "server.log"))
	if err != nil {
		t.Fatal(err)
	}
	s.proc = proc
	t.Cleanup(func() { s.stop(t) })

	if !interop.Poll(30*time.Second, 20*time.Millisecond, func() bool {
		for _, l := range strings.Split(proc.Out.String(), "\n") {
			kv := interop.ParseLogfmt(l)
			if kv["msg"] == "listening" && kv["component"] == "sip" && strings.EqualFold(kv["transport"], "udp") {
				s.SIPAddr = kv["addr"]
				return true
			}
		}
		return proc.Exited()
	}) || s.SIPAddr == "" {
		t.Fatalf("switchboard in %s did not log its UDP listener (exited=%v); config:\n%s\nlog:\n%s",
			c.Netns, proc.Exited(), yaml, tailLines(proc.Out.String(), 80))
	}
	return s
}

// serverEnv is the environment of switchboard processes: without the race
// detector's one-second sleep at exit.
func serverEnv() []string {
	return append(os.Environ(), strings.TrimSpace("GORACE=atexit_sleep_ms=0 "+os.Getenv("GORACE")))
}

// CLI runs `switchboard ARGS... --config FILE` here (it only opens the
// database) and returns its combined output.
func (s *nsServer) CLI(args ...string) (string, error) {
	args = append(args, "--config", s.Config)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.Bin, args...)
	cmd.Dir = s.Dir
	cmd.Env = serverEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("switchboard %s: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}

// Log returns what the switch logged so far.
func (s *nsServer) Log() string { return s.proc.Out.String() }

func (s *nsServer) stop(t testing.TB) {
	ended := s.proc.Stop(syscall.SIGTERM, 15*time.Second)
	log := s.proc.Out.String()
	if strings.Contains(log, "WARNING: DATA RACE") {
		t.Errorf("switchboard reported a data race:\n%s", tailLines(log[strings.Index(log, "WARNING: DATA RACE"):], 200))
	}
	switch {
	case !ended:
		t.Errorf("switchboard (pid %d) did not exit within 15s of SIGTERM; killed", s.proc.Cmd.Process.Pid)
	case s.proc.ExitCode() != 0:
		t.Errorf("switchboard exited with status %d after SIGTERM", s.proc.ExitCode())
	}
	if t.Failed() {
		t.Logf("switchboard log (%s):\n%s", filepath.Join(s.Dir, "server.log"), tailLines(log, 200))
	}
}

package testbed

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ServerConfig is what a test chooses about the server it starts. The zero
// value is a server for switchboard.local on ephemeral UDP and TCP ports of
// 127.0.0.1, with an ephemeral HTTP port.
type ServerConfig struct {
	// Domain is the SIP domain and digest realm. Default switchboard.local.
	Domain string
	// Listen is the sip.listen list. Default udp and tcp on 127.0.0.1:0.
	Listen []string
	// LogLevel is log.level. Default info.
	LogLevel string
	// DigestAlgorithms is security.digest_algorithms; nil keeps the
	// server's default.
	DigestAlgorithms []string
	// MediaRelay is media.relay (always, nat, never); "" keeps the default.
	MediaRelay string
	// MediaIP is media.public_ip and media.bind_ip. Default 127.0.0.1.
	MediaIP string
	// Media is YAML added inside the generated media: flow mapping,
	// overriding its keys, for example "timeout: 30s" or `bind_ip: "::"`.
	Media string
	// Registrar is the registrar: section as a YAML flow mapping. Default
	// {default_expires: 3600, min_expires: 60, max_expires: 86400}.
	Registrar string
	// Security is YAML added inside the generated security: flow mapping,
	// overriding its defaults (auth_failures: 10, auth_window: 1m, ban:
	// 5m), for example "auth_failures: 0".
	Security string
	// HTTP is http.listen. Default 127.0.0.1:0.
	HTTP string
	// HTTPOptions is YAML added inside the generated http: section (which
	// Extra cannot repeat), one key a line, unindented: for example
	// "allowed_origins: [https://198.51.100.11:9443]".
	HTTPOptions string
	// HTTPS is YAML added inside the generated http.https flow mapping,
	// overriding its keys: the default "listen: 127.0.0.1:0" (so that
	// servers of parallel tests do not compete for the shipped 8443), for
	// example "cert: a.pem, key: a.key", or `listen: ""` for no HTTPS.
	HTTPS string
	// Netns is a network namespace (NewNetns) to run the server in, as
	// `ip netns exec NS switchboard serve` (so the PID is the server's).
	// The CLI still runs in the test's namespace: it only opens the
	// database.
	Netns string
	// TURN turns the TURN server on, listening on ephemeral UDP and TCP
	// ports of 127.0.0.1 (logged as "turn/udp" and "turn/tcp" in Addrs when
	// the server logs them). Off by default: its default ports are fixed.
	TURN bool
	// TURNOptions is YAML added inside the generated turn: flow mapping
	// when TURN is on, overriding its keys, for example "allow_peers:
	// [127.0.0.0/8]".
	TURNOptions string
	// Extra is YAML appended to the generated config file at top level, for
	// sections the fields above do not cover.
	Extra string
	// SIP is YAML added inside the generated sip: section (which Extra
	// cannot repeat), one key a line, unindented: for example
	// "connections: {idle_timeout: 2s}".
	SIP string
	// Prefix is a command the server is started under, given the server's
	// command line as its arguments: for example
	// []string{"prlimit", "--nofile=256:256", "--"}. It must exec the server
	// in its own process, so that PID and signals reach the server.
	Prefix []string
	// Env is added to the server process's environment ("NAME=value"
	// entries), for example the certs package's
	// SWITCHBOARD_ACME_RENEW_CHECK; the CLI does not get it.
	Env []string
}

// Server is a running switchboard process.
type Server struct {
	Bin    string
	Dir    string // temp dir holding the config, database and logs
	Config string // config file path
	Domain string

	// Addrs maps a SIP transport (udp, tcp, tls, ws) to the host:port the
	// server listens on, as its "listening" log lines say. "http" is the
	// HTTP listener, "https" the HTTPS one (and "wss" SIP over it).
	Addrs map[string]string

	proc      *Process
	prefix    []string        // ServerConfig.Prefix
	env       []string        // ServerConfig.Env
	yaml      string          // the config written, for failure messages
	want      map[string]bool // the listeners to wait for at start
	starts    int             // processes started on this Dir so far
	signalled bool            // the test signalled the process itself
}

// StartServer writes a config into a temp dir, starts `switchboard serve`
// and waits until it has logged every listener the config asks for and
// "switchboard ready". The
// server is stopped (SIGTERM, then SIGKILL) when the test ends; a data race
// report or a non-zero exit status then fails the test.
func StartServer(t testing.TB, bin string, cfg ServerConfig) *Server {
	t.Helper()
	if cfg.Domain == "" {
		cfg.Domain = "switchboard.local"
	}
	if len(cfg.Listen) == 0 {
		cfg.Listen = []string{"udp://127.0.0.1:0", "tcp://127.0.0.1:0"}
	}
	if cfg.LogLevel == "" {
		cfg.LogLevel = "info"
	}
	if cfg.MediaIP == "" {
		cfg.MediaIP = "127.0.0.1"
	}
	if cfg.Registrar == "" {
		cfg.Registrar = "{default_expires: 3600, min_expires: 60, max_expires: 86400}"
	}
	if cfg.HTTP == "" {
		cfg.HTTP = "127.0.0.1:0"
	}
	if cfg.Netns != "" {
		cfg.Prefix = append([]string{"ip", "netns", "exec", cfg.Netns}, cfg.Prefix...)
	}
	dir := t.TempDir()
	s := &Server{
		Bin:    bin,
		Dir:    dir,
		Config: filepath.Join(dir, "switchboard.yaml"),
		Domain: cfg.Domain,
		Addrs:  map[string]string{},
	}
	var quoted []string
	want := map[string]bool{"http": true}
	https := "listen: 127.0.0.1:0"
	if cfg.HTTPS != "" {
		https = overrideFlow(https, cfg.HTTPS)
	}
	if !strings.Contains(https, `listen: ""`) {
		want["https"] = true
	}
	for _, l := range cfg.Listen {
		quoted = append(quoted, fmt.Sprintf("%q", l))
		u, err := url.Parse(l)
		if err != nil {
			t.Fatalf("listen %q: %v", l, err)
		}
		want[u.Scheme] = true
	}
	// Media stays on loopback, on a port range of its own so that servers
	// of tests running in parallel do not compete for ports. Media ranges
	// are drawn from 10000-15999, TURN relay ranges from 16000-19999: below
	// FreePort's range and the kernel's ephemeral ports.
	rtp := 10000 + 200*rand.IntN(30)
	media := fmt.Sprintf("public_ip: %s, bind_ip: %s, rtp_ports: %d-%d", cfg.MediaIP, cfg.MediaIP, rtp, rtp+199)
	if cfg.MediaRelay != "" {
		media += ", relay: " + cfg.MediaRelay
	}
	if cfg.Media != "" {
		media = overrideFlow(media, cfg.Media)
	}
	security := "auth_failures: 10, auth_window: 1m, ban: 5m"
	if cfg.Security != "" {
		security = overrideFlow(security, cfg.Security)
	}
	if cfg.DigestAlgorithms != nil {
		security += ", digest_algorithms: [" + strings.Join(cfg.DigestAlgorithms, ", ") + "]"
	}
	turn := "enabled: false"
	if cfg.TURN {
		rp := 16000 + 200*rand.IntN(20)
		turn = fmt.Sprintf("enabled: true, listen: [udp://127.0.0.1:0, tcp://127.0.0.1:0], public_ip: 127.0.0.1, relay_ports: %d-%d", rp, rp+199)
		if cfg.TURNOptions != "" {
			turn = overrideFlow(turn, cfg.TURNOptions)
		}
	}
	yaml := fmt.Sprintf(`domain: %s
database: %s
log: {level: %s}
sip:
  listen: [%s]
http:
  listen: %s
  https: {%s}
media: {%s}
turn: {%s}
registrar: %s
security: {%s}
`, cfg.Domain, filepath.Join(dir, "switchboard.db"), cfg.LogLevel, strings.Join(quoted, ", "), cfg.HTTP, https, media, turn, cfg.Registrar, security)
	if cfg.SIP != "" {
		lines := strings.Split(strings.TrimRight(cfg.SIP, "\n"), "\n")
		yaml = strings.Replace(yaml, "\nsip:\n", "\nsip:\n  "+strings.Join(lines, "\n  ")+"\n", 1)
	}
	if cfg.HTTPOptions != "" {
		lines := strings.Split(strings.TrimRight(cfg.HTTPOptions, "\n"), "\n")
		yaml = strings.Replace(yaml, "\nhttp:\n", "\nhttp:\n  "+strings.Join(lines, "\n  ")+"\n", 1)
	}
	if cfg.Extra != "" {
		yaml += strings.TrimRight(cfg.Extra, "\n") + "\n"
	}
	if err := os.WriteFile(s.Config, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}

	s.yaml, s.want, s.prefix, s.env = yaml, want, cfg.Prefix, cfg.Env
	if !s.launch(t) {
		t.Fatalf("switchboard did not log all listeners %v and \"switchboard ready\" (got %v, exited=%v); config:\n%s\nlog:\n%s",
			keys(want), s.Addrs, s.proc.Exited(), yaml, Tail(s.proc.Out.String(), 80))
	}
	return s
}

// launch starts `switchboard serve` on s.Config and waits until it has
// logged every listener in s.want and that it is ready. The first launch registers the stop at
// the end of the test; later ones (Restart) log to server.N.log.
func (s *Server) launch(t testing.TB) bool {
	t.Helper()
	args := append(append([]string{}, s.prefix...), s.Bin, "serve", "--config", s.Config)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = s.Dir
	cmd.Env = append(serverEnv(), s.env...)
	s.starts++
	logName := "server.log"
	if s.starts > 1 {
		logName = fmt.Sprintf("server.%d.log", s.starts)
	}
	proc, err := StartProcess("switchboard", cmd, filepath.Join(s.Dir, logName))
	if err != nil {
		t.Fatal(err)
	}
	s.proc = proc
	s.signalled = false
	if s.starts == 1 {
		t.Cleanup(func() { s.stop(t) })
	}
	ok := Poll(30*time.Second, 20*time.Millisecond, func() bool {
		if proc.Exited() {
			return true
		}
		s.parseListening()
		if !strings.Contains(proc.Out.String(), "switchboard ready") {
			return false
		}
		for k := range s.want {
			if s.Addrs[k] == "" {
				return false
			}
		}
		return true
	}) // the config's listeners, or the process died
	return ok && !proc.Exited()
}

// Signal sends sig to the server process (SIGTERM to drain, SIGKILL to
// crash it). The end-of-test stop then does not fail the test for the exit
// status: the test checks it itself with WaitExit.
func (s *Server) Signal(sig syscall.Signal) error {
	s.signalled = true
	return s.proc.Cmd.Process.Signal(sig)
}

// Done is closed when the current server process has ended.
func (s *Server) Done() <-chan struct{} { return s.proc.Done() }

// WaitExit waits at most timeout for the server process to end and returns
// its exit status (-1 when a signal ended it). It returns an error if the
// process is still running after timeout.
func (s *Server) WaitExit(timeout time.Duration) (int, error) {
	select {
	case <-s.proc.Done():
		return s.proc.ExitCode(), nil
	case <-time.After(timeout):
		return -1, fmt.Errorf("switchboard (pid %d) still running after %s", s.PID(), timeout)
	}
}

// Restart starts the server again on the same config and database once the
// previous process has ended (after Signal and WaitExit), and waits for its
// listeners; ports given as 0 are new. It fails the test if the previous
// process still runs or the new one does not come up.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if !s.proc.Exited() {
		t.Fatalf("Restart: switchboard (pid %d) is still running", s.PID())
	}
	prev := s.proc.Out.String()
	s.Addrs = map[string]string{}
	if !s.launch(t) {
		t.Fatalf("restarted switchboard did not log all listeners %v and \"switchboard ready\" (got %v, exited=%v); previous run's log:\n%s\nlog:\n%s",
			keys(s.want), s.Addrs, s.proc.Exited(), Tail(prev, 40), Tail(s.proc.Out.String(), 80))
	}
}

// overrideFlow returns the entries of the YAML flow mapping body base
// ("k: v, k: v") with those of extra put in place of the same keys, and
// extra's other keys added.
func overrideFlow(base, extra string) string {
	set := map[string]string{}
	var order []string
	for _, kv := range splitFlow(extra) {
		k, _, _ := strings.Cut(kv, ":")
		set[strings.TrimSpace(k)] = kv
		order = append(order, strings.TrimSpace(k))
	}
	var out []string
	for _, kv := range splitFlow(base) {
		k, _, _ := strings.Cut(kv, ":")
		if v, ok := set[strings.TrimSpace(k)]; ok {
			kv = v
			delete(set, strings.TrimSpace(k))
		}
		out = append(out, kv)
	}
	for _, k := range order {
		if v, ok := set[k]; ok {
			out = append(out, v)
		}
	}
	return strings.Join(out, ", ")
}

// splitFlow splits a YAML flow mapping body at its top-level commas.
func splitFlow(s string) []string {
	var out []string
	depth, start := 0, 0
	for i, c := range s {
		switch c {
		case '[', '{':
			depth++
		case ']', '}':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, strings.TrimSpace(s[start:i]))
				start = i + 1
			}
		}
	}
	if rest := strings.TrimSpace(s[start:]); rest != "" {
		out = append(out, rest)
	}
	return out
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// parseListening reads the "listening" lines logged so far into s.Addrs.
func (s *Server) parseListening() {
	for _, line := range strings.Split(s.proc.Out.String(), "\n") {
		kv := ParseLogfmt(line)
		if kv["msg"] != "listening" || kv["addr"] == "" {
			continue
		}
		switch kv["component"] {
		case "sip":
			if tr := strings.ToLower(kv["transport"]); tr != "" {
				s.Addrs[tr] = kv["addr"]
			}
		case "http", "https":
			s.Addrs[kv["component"]] = kv["addr"]
		default:
			if c := kv["component"]; c != "" {
				if tr := kv["transport"]; tr != "" {
					s.Addrs[c+"/"+tr] = kv["addr"]
				} else if _, seen := s.Addrs[c]; !seen {
					s.Addrs[c] = kv["addr"]
				}
			}
		}
	}
}

// Log returns everything the server wrote to stdout and stderr so far.
func (s *Server) Log() string { return s.proc.Out.String() }

// PID returns the server's process id.
func (s *Server) PID() int { return s.proc.Cmd.Process.Pid }

// Addr returns the listening address for a transport or fails the test.
func (s *Server) Addr(t testing.TB, transport string) string {
	t.Helper()
	a := s.Addrs[transport]
	if a == "" {
		t.Fatalf("server has no %s listener (have %v)", transport, s.Addrs)
	}
	return a
}

func (s *Server) stop(t testing.TB) {
	ended := s.proc.Stop(syscall.SIGTERM, 15*time.Second)
	log := s.proc.Out.String()
	if strings.Contains(log, "WARNING: DATA RACE") {
		t.Errorf("switchboard reported a data race:\n%s", raceReports(log))
	}
	switch {
	case !ended:
		t.Errorf("switchboard (pid %d) did not exit within 15s of SIGTERM; killed", s.PID())
	case s.signalled:
		// The test ended the process itself and checked how.
	case s.proc.ExitCode() != 0:
		t.Errorf("switchboard exited with status %d after SIGTERM", s.proc.ExitCode())
	}
	if t.Failed() {
		t.Logf("switchboard log (%s):\n%s", filepath.Join(s.Dir, "server.log"), Tail(log, 150))
	}
}

// raceReports extracts the race detector's reports from a log.
func raceReports(log string) string {
	var b strings.Builder
	in := false
	for _, l := range strings.Split(log, "\n") {
		if strings.HasPrefix(l, "WARNING: DATA RACE") {
			in = true
		}
		if in {
			b.WriteString(l)
			b.WriteByte('\n')
		}
		if in && strings.HasPrefix(l, "==================") && !strings.HasPrefix(l, "WARNING") {
			in = false
		}
	}
	return Tail(b.String(), 200)
}

// serverEnv is the environment of switchboard processes: the test's, with
// the race detector's one-second sleep at exit turned off (it would make each
// CLI call of a -race build take a second).
func serverEnv() []string {
	return append(os.Environ(), strings.TrimSpace("GORACE=atexit_sleep_ms=0 "+os.Getenv("GORACE")))
}

// CLI runs `switchboard ARGS... --config FILE` against this server's config
// and returns its combined output.
func (s *Server) CLI(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	args = append(args, "--config", s.Config)
	cmd := exec.CommandContext(ctx, s.Bin, args...)
	cmd.Dir = s.Dir
	cmd.Env = serverEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("switchboard %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// AddUser creates a user with the CLI or fails the test.
func (s *Server) AddUser(t testing.TB, name, password string) {
	t.Helper()
	if _, err := s.CLI(context.Background(), "user", "add", name, "--password", password); err != nil {
		t.Fatal(err)
	}
}

// CDR is one row of `switchboard cdr list`, keyed by the lower-cased column
// header (for example "caller", "callee", "call-id", "status", "answered").
type CDR map[string]string

// CDRs returns the rows of `switchboard cdr list`, newest first.
func (s *Server) CDRs(t testing.TB) []CDR {
	t.Helper()
	out, err := s.CLI(context.Background(), "cdr", "list")
	if err != nil {
		t.Fatal(err)
	}
	rows, err := ParseTable(out)
	if err != nil {
		t.Fatalf("cdr list: %v\n%s", err, out)
	}
	cdrs := make([]CDR, len(rows))
	for i, r := range rows {
		cdrs[i] = CDR(r)
	}
	return cdrs
}

// Answered reports whether the CDR's answered column holds a time.
func (c CDR) Answered() bool {
	a := strings.TrimSpace(c["answered"])
	return a != "" && a != "-" && a != "0" && !strings.EqualFold(a, "no") && !strings.EqualFold(a, "null")
}

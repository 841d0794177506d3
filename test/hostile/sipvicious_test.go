package hostile

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/siptest"
	"github.com/switchboard/switchboard/test/internal/testbed"
)

// runSipvicious runs one sipvicious tool (svwar, svcrack) from the loopback
// address ip against the switch's UDP listener and returns its output
// (stdout and stderr). It is killed after limit; killed reports whether it
// had to be.
func (v *victim) runSipvicious(t *testing.T, tool, ip string, limit time.Duration, args ...string) (out string, killed bool) {
	t.Helper()
	bin := testbed.RequireTool(t, tool)
	// sipvicious writes its source port into Via and Contact: give it a
	// free one on ip rather than its default 5060.
	pc, err := net.ListenPacket("udp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	full := append([]string{"-b", ip, "-x", ip, "-P", strconv.Itoa(port)}, args...)
	full = append(full, "udp://"+v.udp)
	// svwar and svcrack 0.3.3 parse -b but never pass it on: their socket
	// binds to every address and sends from 127.0.0.1, the legitimate
	// clients' address. bindWrapper makes that bind use ip.
	cmd := exec.CommandContext(ctx, testbed.RequireTool(t, "python3"), append([]string{"-c", bindWrapper, ip, bin}, full...)...)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "HOME="+cmd.Dir)
	cmd.WaitDelay = 5 * time.Second
	b, err := cmd.CombinedOutput()
	killed = ctx.Err() != nil
	var ee *exec.ExitError
	if err != nil && !killed && !errors.As(err, &ee) {
		t.Fatalf("%s %s: %v\n%s", tool, strings.Join(full, " "), err, b)
	}
	t.Logf("%s %s (%s):\n%s", tool, strings.Join(full, " "), map[bool]string{true: "killed at the time limit", false: "finished"}[killed], testbed.Tail(string(b), 25))
	return string(b), killed
}

// bindWrapper runs a Python program (argv[2], with argv[3:]) with every
// socket bound to the wildcard address bound to argv[1] instead.
const bindWrapper = `import os, runpy, socket, sys
ip = sys.argv.pop(1)
bind = socket.socket.bind
def bind_to_ip(s, addr):
    if isinstance(addr, tuple) and addr[0] in ("", "0.0.0.0"):
        addr = (ip,) + tuple(addr[1:])
    return bind(s, addr)
socket.socket.bind = bind_to_ip
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(os.path.realpath(sys.argv[0])))
runpy.run_path(sys.argv[0], run_name="__main__")
`

// writeLines writes a word list into the test's temp dir.
func writeLines(t *testing.T, name string, words []string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(strings.Join(words, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// svwarFound returns the extensions svwar reports as existing: its
// "extension 'X' exists" log lines and the rows of its result table.
func svwarFound(out string) []string {
	var found []string
	for _, m := range regexp.MustCompile(`extension '([^']*)' (?:exists|probably exists)`).FindAllStringSubmatch(out, -1) {
		found = append(found, m[1])
	}
	if strings.Contains(out, "Extension") && strings.Contains(out, "Authentication") {
		for _, l := range strings.Split(out, "\n") {
			f := strings.Split(l, "|")
			if len(f) >= 3 {
				if ext := strings.TrimSpace(f[1]); ext != "" && ext != "Extension" && !strings.HasPrefix(ext, "-") {
					found = append(found, ext)
				}
			}
		}
	}
	return found
}

// svcrackFound returns the password svcrack reports for user: its
// "The password for USER is PW" log line (-v) or the row of its result
// table, "" when none.
func svcrackFound(out, user string) string {
	if m := regexp.MustCompile(`The password for ` + regexp.QuoteMeta(user) + ` is (\S+)`).FindStringSubmatch(out); m != nil {
		return m[1]
	}
	if m := regexp.MustCompile(`(?m)^\|\s*` + regexp.QuoteMeta(user) + `\s*\|\s*(\S+)\s*\|`).FindStringSubmatch(out); m != nil {
		return m[1]
	}
	return ""
}

// TestSvwarFindsNoExtension runs sipvicious's svwar from strangers'
// addresses with REGISTER, INVITE and OPTIONS over a dictionary holding the
// real users (alice registered, bob and carol not) among made-up ones,
// plainly and with --force (which skips svwar's sanity check and compares
// every answer with the answer for a random extension). It must report no
// extension: the switch answers users and non-users alike.
func TestSvwarFindsNoExtension(t *testing.T) {
	testbed.RequireTool(t, "svwar")
	v := startVictim(t, "")
	v.registered("alice")
	dict := writeLines(t, "users.txt", []string{"100", "admin", "alice", "1000", "bob", "test", "carol", "2000", "operator", "guest"})
	i := 0
	for _, method := range []string{"REGISTER", "INVITE", "OPTIONS"} {
		for _, force := range []bool{false, true} {
			name := method
			args := []string{"-m", method, "-d", dict, "-v", "--maximumtime", "5"}
			if force {
				name += "/force"
				args = append(args, "--force")
			}
			t.Run(name, func(t *testing.T) {
				out, killed := v.runSipvicious(t, "svwar", attackerIP(60+i), 60*time.Second, args...)
				i++
				if killed {
					t.Errorf("svwar did not finish within 60 s")
				}
				if found := svwarFound(out); len(found) > 0 {
					t.Errorf("svwar -m %s found extensions %q", method, found)
				}
				if strings.Contains(out, "Unhandled exception") || strings.Contains(out, "Traceback") {
					t.Errorf("svwar crashed; its output cannot be judged")
				}
				switch {
				case strings.Contains(out, "found nothing"):
				case strings.Contains(out, "authentication request for an unknown extension"):
				default:
					t.Errorf("svwar -m %s: neither \"found nothing\" nor a refusal to scan in its output", method)
				}
				if strings.Contains(out, "No server response") {
					t.Logf("(the switch did not answer svwar's first %s at all)", method)
				}
			})
		}
	}
}

// TestSvcrackIsBanned runs sipvicious's svcrack against alice: first, from
// one address, with a short list ending in her password (it must find it:
// the tool works against this switch); then, from another address, with 200
// wrong passwords before the right one. The switch refuses that source
// (403) after 10 failures, so svcrack never gets to try the right one; the
// right password from that address is refused too, while alice's own phone,
// registered before the attack, still registers.
func TestSvcrackIsBanned(t *testing.T) {
	testbed.RequireTool(t, "svcrack")
	v := startVictim(t, "")
	right := passwords["alice"]
	alice := v.registered("alice") // her phone, in use before the attack

	short := writeLines(t, "short.txt", []string{"123456", "password", "alice", right})
	out, _ := v.runSipvicious(t, "svcrack", attackerIP(70), 30*time.Second, "-u", "alice", "-d", short, "--maximumtime", "5")
	if svcrackFound(out, "alice") != right {
		t.Fatalf("control: svcrack with 3 wrong passwords and the right one did not find alice's password; the attack below would prove nothing")
	}

	var words []string
	for n := range 200 {
		words = append(words, fmt.Sprintf("guess%03d", n))
	}
	words = append(words, right)
	long := writeLines(t, "long.txt", words)
	ip := attackerIP(71)
	out, killed := v.runSipvicious(t, "svcrack", ip, 8*time.Second, "-u", "alice", "-d", long, "--maximumtime", "5")
	if pw := svcrackFound(out, "alice"); pw != "" {
		t.Errorf("svcrack found alice's password (%q) after 200 wrong guesses from one address", pw)
	}
	if killed {
		t.Logf("(svcrack kept sending until it was killed: the switch kept answering the banned source)")
	}

	// The source is refused even with the right password.
	p := siptest.NewPhone(t, siptest.Config{Server: v.udp, Local: ip + ":0", User: "alice", Password: right, Name: "alice@" + ip, Trace: v.tr})
	m := p.Register(3600)
	res := sendUDP(p, m, 4*time.Second)
	if res != nil && res.StatusCode == 401 {
		res = sendUDP(p, p.Authenticate(m, res, "MD5"), 4*time.Second)
	}
	switch {
	case res == nil:
		t.Logf("the banned source got no answer at all to REGISTER with the right password (dropped)")
	case res.StatusCode != 403:
		t.Errorf("REGISTER with the right password from the banned source %s: got %d %s, want 403", ip, res.StatusCode, res.Reason)
	}
	// And alice's phone, signed in from 127.0.0.1 before, is not locked out.
	if code := tryRegister(alice); code != 200 {
		t.Errorf("alice from 127.0.0.1 after the attack: REGISTER got %d, want 200", code)
	}
}

package testbed

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// InCI reports whether the suite runs in CI (CI=true), where a missing
// client tool fails a test instead of skipping it.
func InCI() bool { return os.Getenv("CI") == "true" }

// RequireTool returns the path of an external program the test needs. When the
// program is missing the test is skipped, or fails when running in CI, since
// test/install.sh must have installed it there.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if InCI() {
		t.Fatalf("%s is not installed (CI=true): run test/install.sh", name)
	}
	t.Skipf("%s is not installed: run test/install.sh", name)
	return ""
}

// ModuleRoot returns the repository root: the nearest directory at or
// above the working directory (a test's package directory) with a go.mod.
func ModuleRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("module root: no go.mod at or above %s", wd)
		}
	}
}

// BuildServer builds ./cmd/switchboard into dir and returns the binary's path.
// With race set the binary is built with the race detector, so the real server
// reports its own data races while the interop tests drive it.
func BuildServer(ctx context.Context, dir string, race bool) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "switchboard")
	args := []string{"build"}
	if race {
		args = append(args, "-race")
	}
	args = append(args, "-o", bin, "./cmd/switchboard")
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return bin, nil
}

// Poll calls cond every interval until it returns true or timeout passes. It
// reports whether cond became true. It is for waits whose failure is not a
// test failure by itself (cleanups, best-effort waits, helpers without a
// test); a test's condition is waited for with Eventually.
func Poll(timeout, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
	}
}

// Eventually waits up to timeout for cond to return true, calling it every
// 20 ms at first and backing off to every 250 ms, and reports whether it
// did. When it did not, the test fails (t.Errorf, so the caller may add
// what it saw, or stop with t.FailNow) with "what: not within TIMEOUT".
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, what string) bool {
	t.Helper()
	deadline := time.Now().Add(timeout)
	interval := 20 * time.Millisecond
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: not within %s", what, timeout)
			return false
		}
		time.Sleep(min(interval, max(time.Until(deadline), time.Millisecond)))
		interval = min(2*interval, 250*time.Millisecond)
	}
}

// FreePort returns a port on 127.0.0.1 that is free for both UDP and TCP,
// together with the next n-1 ports. It picks from 20000-31999, below Linux's
// ephemeral range, so that ports the kernel hands out to other sockets of the
// test (port 0 binds) cannot take it between the check and the use.
func FreePort(t testing.TB, n int) int {
	t.Helper()
	if n < 1 {
		n = 1
	}
	for range 500 {
		p := 20000 + rand.IntN(12000-n)
		if portsFree(p, n) {
			return p
		}
	}
	t.Fatalf("no %d free consecutive ports found on 127.0.0.1", n)
	return 0
}

func portsFree(p, n int) bool {
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	for i := range n {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p+i))
		u, err := net.ListenPacket("udp", addr)
		if err != nil {
			return false
		}
		closers = append(closers, u)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return false
		}
		closers = append(closers, l)
	}
	return true
}

// syncBuffer is a bytes.Buffer safe for one writer and many readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Tail returns the last n lines of s, after a line saying how many came
// before them: for failure messages.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[... %d lines before]", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// Process is a child process whose output is captured.
type Process struct {
	Name string
	Cmd  *exec.Cmd
	Out  *syncBuffer // stdout and stderr

	done    chan struct{}
	waitErr error
}

// StartProcess starts cmd with stdin from /dev/null (unless cmd.Stdin is
// set: a program driven by commands on its stdin) and stdout+stderr into
// the returned Process's buffer (and into logFile when it is not empty).
func StartProcess(name string, cmd *exec.Cmd, logFile string) (*Process, error) {
	p := &Process{Name: name, Cmd: cmd, Out: &syncBuffer{}, done: make(chan struct{})}
	var w io.Writer = p.Out
	var f *os.File
	if logFile != "" {
		var err error
		f, err = os.Create(logFile)
		if err != nil {
			return nil, err
		}
		w = io.MultiWriter(p.Out, f)
	}
	cmd.Stdout = w
	cmd.Stderr = w
	// Own process group: a signal to the group also reaches helpers it forks.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		if f != nil {
			f.Close()
		}
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		if f != nil {
			f.Close()
		}
		close(p.done)
	}()
	return p, nil
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Done is closed when the process has ended.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait waits for the process to end, at most timeout, and returns its exit
// error (nil for status 0). It returns an error if the process is still
// running after timeout.
func (p *Process) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.waitErr
	case <-time.After(timeout):
		return fmt.Errorf("%s (pid %d) still running after %s", p.Name, p.Cmd.Process.Pid, timeout)
	}
}

// ExitCode returns the exit status once the process ended, -1 while it runs
// or when a signal ended it.
func (p *Process) ExitCode() int {
	if !p.Exited() {
		return -1
	}
	return p.Cmd.ProcessState.ExitCode()
}

// Stop sends sig to the process (by PID) and waits up to grace for it to
// end, then kills it (SIGKILL to its PID and its process group). It reports
// whether the process ended by itself within grace.
func (p *Process) Stop(sig syscall.Signal, grace time.Duration) bool {
	if p.Exited() {
		return true
	}
	_ = p.Cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return true
	case <-time.After(grace):
	}
	pid := p.Cmd.Process.Pid
	_ = syscall.Kill(-pid, syscall.SIGKILL) // its own group (Setpgid)
	_ = p.Cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
	return false
}

// RaceEnabled reports whether this test binary runs with the race detector
// (see race.go), in which case Main builds the server with it too.
func RaceEnabled() bool { return raceDetector }

// readLines returns the non-empty lines of r.
func readLines(r io.Reader) []string {
	var out []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		if l := strings.TrimRight(sc.Text(), "\r"); strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

// ReadFile returns a file's content, or "" if it cannot be read or path is "".
func ReadFile(path string) string {
	if path == "" {
		return ""
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return string(b)
}

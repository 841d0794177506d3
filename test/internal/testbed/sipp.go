package testbed

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// SIPp describes one run of SIPp (Debian's sip-tester).
type SIPp struct {
	// Scenario is a file name under testdata/ or an absolute path.
	Scenario string
	// Remote is the host:port requests go to; empty for a UAS.
	Remote string
	// Transport is SIPp's -t: u1 (UDP, one socket; default), un, t1 (TCP) ...
	Transport string
	// Port is -p, the local SIP port. 0 picks a free one.
	Port int
	// Inf is an -inf injection file (see WriteInf).
	Inf string
	// Keys are -key NAME VALUE pairs, used as [NAME] in the scenario.
	Keys map[string]string
	// Args are further arguments: -m, -r, -l, -s, -d ...
	Args []string
	// Timeout bounds the whole run (SIPp's -timeout, and a kill after it).
	// Default one minute.
	Timeout time.Duration
	// Dir receives the trace files. Default a new temp dir.
	Dir string
	// Name names the trace files and the process in messages. Default the
	// scenario's base name.
	Name string
	// TraceMessages adds -trace_msg (every message sent and received).
	TraceMessages bool
	// Netns is a network namespace (NewNetns) to run SIPp in; "" is the
	// test's own.
	Netns string
}

// SIPpResult is what a finished SIPp run reports.
type SIPpResult struct {
	Name     string
	ExitCode int // 0: every call succeeded; 1: some failed; others: see sipp(1)
	// Successful and Failed are the cumulative call counts from the last
	// row of the -trace_stat file (-1 if it could not be read).
	Successful, Failed int
	// Stats is that last row, keyed by column name.
	Stats map[string]string
	// Screen is SIPp's final screen (stdout and stderr).
	Screen string
	// Errors is the -trace_err file: unexpected messages with their text.
	Errors string
	// MessageLog is the path of the -trace_msg file, if TraceMessages.
	MessageLog string
	// Port is the local SIP port it used.
	Port int
	// PID is the SIPp process id, part of its Call-IDs ("N-PID@IP").
	PID int
}

// String summarizes the result for test failure messages.
func (r SIPpResult) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sipp %s: exit %d, %d successful, %d failed calls", r.Name, r.ExitCode, r.Successful, r.Failed)
	for _, k := range []string{"FailedMaxUDPRetrans(C)", "FailedUnexpectedMessage(C)", "FailedCallRejected(C)",
		"FailedCannotSendMessage(C)", "FailedTcpConnect(C)", "FailedTcpClosed(C)", "FailedRegexpDoesntMatch(C)",
		"FailedOutboundCongestion(C)", "FailedTimeoutOnRecv(C)", "FailedTimeoutOnSend(C)", "Retransmissions(C)"} {
		if v := r.Stats[k]; v != "" && v != "0" {
			fmt.Fprintf(&b, ", %s=%s", k, v)
		}
	}
	if r.Errors != "" {
		fmt.Fprintf(&b, "\nerrors (%d bytes, first part):\n%s", len(r.Errors), Head(r.Errors, 6000))
	}
	if r.Successful < 0 || r.ExitCode > 1 {
		fmt.Fprintf(&b, "\nscreen:\n%s", Tail(r.Screen, 60))
	}
	return b.String()
}

// Head returns the first n bytes of s, marked "[...]" when cut:
// for failure messages.
func Head(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "\n[...]"
}

// SIPpRun is a SIPp process started by StartSIPp.
type SIPpRun struct {
	opts  SIPp
	proc  *Process
	stat  string
	errf  string
	msgf  string
	port  int
	start time.Time
}

// TestdataPath returns the absolute path of a file under testdata/.
func TestdataPath(name string) string {
	if filepath.IsAbs(name) {
		return name
	}
	wd, _ := os.Getwd()
	return filepath.Join(wd, "testdata", name)
}

// StartSIPp starts SIPp in the background. Call Wait for its result. The
// process is killed when the test ends if it still runs.
func StartSIPp(t testing.TB, o SIPp) *SIPpRun {
	t.Helper()
	bin := RequireTool(t, "sipp")
	if o.Timeout == 0 {
		o.Timeout = time.Minute
	}
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	if o.Name == "" {
		o.Name = strings.TrimSuffix(filepath.Base(o.Scenario), ".xml")
	}
	if o.Port == 0 {
		o.Port = FreePort(t, 1)
	}
	if o.Transport == "" {
		o.Transport = "u1"
	}
	r := &SIPpRun{
		opts: o,
		stat: filepath.Join(o.Dir, o.Name+"_stat.csv"),
		errf: filepath.Join(o.Dir, o.Name+"_errors.log"),
		port: o.Port,
	}
	args := []string{
		"-nostdin",
		"-sf", TestdataPath(o.Scenario),
		"-t", o.Transport,
		"-i", "127.0.0.1",
		"-p", strconv.Itoa(o.Port),
		"-timeout", fmt.Sprintf("%ds", int(o.Timeout.Seconds())),
		"-timeout_error",
		"-trace_stat", "-stf", r.stat,
		"-trace_err", "-error_file", r.errf,
	}
	if o.TraceMessages {
		r.msgf = filepath.Join(o.Dir, o.Name+"_messages.log")
		args = append(args, "-trace_msg", "-message_file", r.msgf)
	}
	if o.Inf != "" {
		args = append(args, "-inf", o.Inf)
	}
	for k, v := range o.Keys {
		args = append(args, "-key", k, v)
	}
	args = append(args, o.Args...)
	if o.Remote != "" {
		args = append(args, o.Remote)
	}
	cmd := exec.Command(bin, args...)
	if o.Netns != "" {
		// ip netns exec execs SIPp: the PID stays SIPp's.
		cmd = exec.Command("ip", append([]string{"netns", "exec", o.Netns, bin}, args...)...)
	}
	cmd.Dir = o.Dir
	proc, err := StartProcess("sipp "+o.Name, cmd, filepath.Join(o.Dir, o.Name+"_screen.log"))
	if err != nil {
		t.Fatal(err)
	}
	r.proc = proc
	r.start = time.Now()
	t.Cleanup(func() { proc.Stop(syscall.SIGKILL, 0) })
	return r
}

// Port returns the local SIP port SIPp uses.
func (r *SIPpRun) Port() int { return r.port }

// Wait waits for SIPp to end (killing it a little after its own timeout)
// and returns its result.
func (r *SIPpRun) Wait(ctx context.Context) SIPpResult {
	limit := time.Until(r.start.Add(r.opts.Timeout + 15*time.Second))
	select {
	case <-r.proc.Done():
	case <-time.After(limit):
		r.proc.Stop(syscall.SIGKILL, 0)
	case <-ctx.Done():
		r.proc.Stop(syscall.SIGKILL, 0)
	}
	res := SIPpResult{
		Name:       r.opts.Name,
		ExitCode:   r.proc.ExitCode(),
		Successful: -1,
		Failed:     -1,
		Screen:     r.proc.Out.String(),
		MessageLog: r.msgf,
		Port:       r.port,
		PID:        r.proc.Cmd.Process.Pid,
	}
	if b, err := os.ReadFile(r.errf); err == nil {
		res.Errors = string(b)
	}
	if b, err := os.ReadFile(r.stat); err == nil {
		res.Stats = lastStatRow(string(b))
		if v, err := strconv.Atoi(res.Stats["SuccessfulCall(C)"]); err == nil {
			res.Successful = v
		}
		if v, err := strconv.Atoi(res.Stats["FailedCall(C)"]); err == nil {
			res.Failed = v
		}
	}
	return res
}

// Stop ends a SIPp that is still running (for a UAS once the test is done).
func (r *SIPpRun) Stop() { r.proc.Stop(syscall.SIGTERM, 3*time.Second) }

// RunSIPp runs SIPp to completion and returns its result.
func RunSIPp(t testing.TB, o SIPp) SIPpResult {
	t.Helper()
	return StartSIPp(t, o).Wait(context.Background())
}

// lastStatRow parses SIPp's -trace_stat CSV (';'-separated, header first)
// and returns its last row keyed by column name.
func lastStatRow(csv string) map[string]string {
	lines := readLines(strings.NewReader(csv))
	if len(lines) < 2 {
		return map[string]string{}
	}
	hdr := strings.Split(lines[0], ";")
	row := strings.Split(lines[len(lines)-1], ";")
	m := make(map[string]string, len(hdr))
	for i, h := range hdr {
		if i < len(row) {
			m[h] = row[i]
		}
	}
	return m
}

// Cred is a user name and password.
type Cred struct{ User, Password string }

// WriteInf writes a SIPp injection file: a SEQUENTIAL header, then per user
// "user;password;[authentication username=user password=password]", so that
// [field0] is the user and [field2] the credentials after a 401/407.
func WriteInf(t testing.TB, path string, users []Cred) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("SEQUENTIAL\n")
	for _, u := range users {
		fmt.Fprintf(&b, "%s;%s;[authentication username=%s password=%s]\n", u.User, u.Password, u.User, u.Password)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

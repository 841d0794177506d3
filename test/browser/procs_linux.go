//go:build linux

package browser

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

	"github.com/switchboard/switchboard/test/interop"
)

// Fixed addresses are fine inside a namespace of the test's own.
const (
	domain   = "switchboard.local"
	sipAddr  = "127.0.0.1:5060"
	httpAddr = "127.0.0.1:8080"
	turnPort = 3478
)

// nsSwitch is the switch binary running in the test's namespace.
type nsSwitch struct {
	bin, dir, config string
	proc             *interop.Process
}

// startSwitch writes a config, creates the users with the CLI and starts
// `switchboard serve` in ns, waiting for its HTTP listener. The webrtc
// section is left at its defaults: enabled, ICE on every address of the
// namespace (only lo), ephemeral ports.
func startSwitch(t *testing.T, ns, bin string, users map[string]string) *nsSwitch {
	t.Helper()
	dir := t.TempDir()
	s := &nsSwitch{bin: bin, dir: dir, config: filepath.Join(dir, "switchboard.yaml")}
	level := os.Getenv("SWITCHBOARD_LOG_LEVEL") // debug for a failure's details
	if level == "" {
		level = "info"
	}
	yaml := fmt.Sprintf(`domain: %s
database: %s
log: {level: %s}
sip:
  listen: ["udp://%s", "tcp://%s"]
http:
  listen: %s
media: {public_ip: 127.0.0.1, bind_ip: 127.0.0.1, rtp_ports: 10000-10399, relay: always}
turn:
  enabled: true
  listen: ["udp://127.0.0.1:%d", "tcp://127.0.0.1:%d"]
  public_ip: 127.0.0.1
  relay_ports: 11000-11399
  allow_peers: ["127.0.0.0/8"]
security: {auth_failures: 0}
`, domain, filepath.Join(dir, "switchboard.db"), level, sipAddr, sipAddr, httpAddr, turnPort, turnPort)
	if err := os.WriteFile(s.config, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	for u, pw := range users {
		if out, err := s.cli("user", "add", u, "--password", pw); err != nil {
			t.Fatalf("user add %s: %v\n%s", u, err, out)
		}
	}
	proc, err := interop.StartProcess("switchboard", inNetns(ns, bin, "serve", "--config", s.config), filepath.Join(dir, "server.log"))
	if err != nil {
		t.Fatal(err)
	}
	s.proc = proc
	t.Cleanup(func() {
		if !proc.Stop(syscall.SIGTERM, 15*time.Second) {
			t.Errorf("switchboard did not stop within 15s of SIGTERM")
		} else if code := proc.ExitCode(); code != 0 {
			t.Errorf("switchboard exited with status %d", code)
		}
		if strings.Contains(proc.Out.String(), "DATA RACE") {
			t.Errorf("switchboard reported a data race")
		}
		if t.Failed() {
			t.Logf("switchboard log:\n%s", tail(proc.Out.String(), 120))
		}
	})
	if !interop.Poll(30*time.Second, 50*time.Millisecond, func() bool {
		return proc.Exited() || strings.Contains(proc.Out.String(), "switchboard ready")
	}) || proc.Exited() {
		t.Fatalf("switchboard did not start:\n%s", tail(proc.Out.String(), 60))
	}
	return s
}

func (s *nsSwitch) cli(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.bin, append(args, "--config", s.config)...)
	cmd.Dir = s.dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// cdrs returns `switchboard cdr list` as rows.
func (s *nsSwitch) cdrs(t *testing.T) []map[string]string {
	t.Helper()
	out, err := s.cli("cdr", "list")
	if err != nil {
		t.Fatalf("cdr list: %v\n%s", err, out)
	}
	rows, err := interop.ParseTable(out)
	if err != nil {
		t.Fatalf("cdr list: %v\n%s", err, out)
	}
	return rows
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// baresip is a baresip phone in the namespace, driven through ctrl_tcp.
type baresip struct {
	name, dir string
	proc      *interop.Process
	conn      net.Conn

	mu      sync.Mutex
	events  []event
	changed chan struct{}
	waiting map[string]chan reply
	token   int
}

type event struct {
	Type  string `json:"type"`
	Param string `json:"param"`
	Peer  string `json:"peeruri"`
}

type reply struct {
	OK    bool   `json:"ok"`
	Data  string `json:"data"`
	Token string `json:"token"`
}

// startBaresip runs `baresip -f DIR -s` (SIP trace on) in ns as user, with
// tone as its microphone, answering calls by itself when auto is set.
func startBaresip(t *testing.T, ns, user, tone string, sipPort, ctrlPort int, auto bool) *baresip {
	t.Helper()
	bin := interop.RequireTool(t, "baresip")
	b := &baresip{name: user, dir: t.TempDir(), changed: make(chan struct{}), waiting: map[string]chan reply{}}
	snd := filepath.Join(b.dir, "snd")
	if err := os.MkdirAll(snd, 0o755); err != nil {
		t.Fatal(err)
	}
	answer := "manual"
	if auto {
		answer = "auto"
	}
	config := fmt.Sprintf(`poll_method epoll
sip_listen 127.0.0.1:%d
net_interface 127.0.0.1
call_local_timeout 60
call_max_calls 4
audio_player aubridge,nil
audio_source aufile,%s
audio_alert aubridge,nil
audio_level no
ausrc_format s16
auplay_format s16
auenc_format s16
audec_format s16
audio_buffer 20-160
rtp_stats no
module_path /usr/lib/baresip/modules
module g711.so
module aufile.so
module aubridge.so
module sndfile.so
module_tmp account.so
module_app menu.so
module_app ctrl_tcp.so
ctrl_tcp_listen 127.0.0.1:%d
snd_path %s
`, sipPort, tone, ctrlPort, snd)
	account := fmt.Sprintf("<sip:%s@%s;transport=udp>;auth_pass=%spw;audio_codecs=pcmu;answermode=%s;regint=600;outbound=\"sip:%s;transport=udp\"\n",
		user, domain, user, answer, sipAddr)
	for f, s := range map[string]string{"config": config, "accounts": account, "contacts": ""} {
		if err := os.WriteFile(filepath.Join(b.dir, f), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	proc, err := interop.StartProcess("baresip "+user, inNetns(ns, bin, "-f", b.dir, "-s"), filepath.Join(b.dir, "baresip.log"))
	if err != nil {
		t.Fatal(err)
	}
	b.proc = proc
	t.Cleanup(func() {
		if b.conn != nil {
			b.conn.Close()
		}
		proc.Stop(syscall.SIGTERM, 5*time.Second)
		if t.Failed() {
			t.Logf("baresip %s log:\n%s", user, tail(proc.Out.String(), 120))
		}
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ctrlPort))
	interop.Poll(10*time.Second, 50*time.Millisecond, func() bool {
		if proc.Exited() {
			return true
		}
		c, err := dialIn(ns, addr)
		if err != nil {
			return false
		}
		b.conn = c
		return true
	})
	if b.conn == nil {
		t.Fatalf("baresip %s: no ctrl_tcp on %s:\n%s", user, addr, tail(proc.Out.String(), 40))
	}
	go b.read()
	return b
}

func (b *baresip) read() {
	r := bufio.NewReader(b.conn)
	for {
		n, err := r.ReadString(':')
		if err != nil {
			return
		}
		size, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(n, ":")))
		if err != nil || size < 0 || size > 1<<20 {
			return
		}
		msg := make([]byte, size+1)
		if _, err := io.ReadFull(r, msg); err != nil {
			return
		}
		msg = msg[:size]
		var probe struct {
			Event    bool `json:"event"`
			Response bool `json:"response"`
		}
		if json.Unmarshal(msg, &probe) != nil {
			continue
		}
		b.mu.Lock()
		switch {
		case probe.Event:
			var ev event
			if json.Unmarshal(msg, &ev) == nil {
				b.events = append(b.events, ev)
				close(b.changed)
				b.changed = make(chan struct{})
			}
		case probe.Response:
			var rp reply
			if json.Unmarshal(msg, &rp) == nil {
				if ch := b.waiting[rp.Token]; ch != nil {
					delete(b.waiting, rp.Token)
					ch <- rp
				}
			}
		}
		b.mu.Unlock()
	}
}

// command runs a ctrl_tcp command (dial, hangup, accept, reginfo, ...).
func (b *baresip) command(command, params string) (reply, error) {
	b.mu.Lock()
	b.token++
	tok := strconv.Itoa(b.token)
	ch := make(chan reply, 1)
	b.waiting[tok] = ch
	b.mu.Unlock()
	msg, _ := json.Marshal(map[string]string{"command": command, "params": params, "token": tok})
	if _, err := fmt.Fprintf(b.conn, "%d:%s,", len(msg), msg); err != nil {
		return reply{}, err
	}
	select {
	case r := <-ch:
		if !r.OK {
			return r, fmt.Errorf("baresip %s: %s %s: %s", b.name, command, params, r.Data)
		}
		return r, nil
	case <-time.After(10 * time.Second):
		return reply{}, fmt.Errorf("baresip %s: %s: no response", b.name, command)
	}
}

// waitEvent waits for an event of type typ (and param, when not empty)
// received after the first skip events.
func (b *baresip) waitEvent(t *testing.T, typ, param string, timeout time.Duration) event {
	t.Helper()
	deadline := time.After(timeout)
	for {
		b.mu.Lock()
		evs, ch := append([]event(nil), b.events...), b.changed
		b.mu.Unlock()
		for _, ev := range evs {
			if ev.Type == typ && (param == "" || ev.Param == param) {
				return ev
			}
		}
		select {
		case <-ch:
		case <-deadline:
			var seen []string
			for _, ev := range evs {
				seen = append(seen, ev.Type+"("+ev.Param+")")
			}
			t.Fatalf("baresip %s: no %s %s within %s; events: %v", b.name, typ, param, timeout, seen)
		}
	}
}

// clearEvents forgets the events received so far.
func (b *baresip) clearEvents() {
	b.mu.Lock()
	b.events = nil
	b.mu.Unlock()
}

func (b *baresip) waitRegistered(t *testing.T) {
	t.Helper()
	if !interop.Poll(15*time.Second, 100*time.Millisecond, func() bool {
		r, err := b.command("reginfo", "")
		return err == nil && strings.Contains(r.Data, "OK")
	}) {
		t.Fatalf("baresip %s did not register", b.name)
	}
}

func (b *baresip) log() string { return b.proc.Out.String() }

// received returns the WAV files of audio baresip received, newest last.
func (b *baresip) received() []string {
	m, _ := filepath.Glob(filepath.Join(b.dir, "snd", "*-dec.wav"))
	return m
}

// driver is driver.mjs: headless Chromium under playwright-core, in ns.
type driver struct {
	t     *testing.T
	proc  *exec.Cmd
	in    io.WriteCloser
	out   *bufio.Reader
	log   *syncBuf
	seq   int
	mu    sync.Mutex
	ended chan struct{}
}

type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startDriver(t *testing.T, ns, node, dir string) *driver {
	t.Helper()
	cmd := inNetns(ns, node, filepath.Join(dir, "driver.mjs"))
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	d := &driver{t: t, proc: cmd, log: &syncBuf{}, ended: make(chan struct{})}
	cmd.Stderr = d.log
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	d.in, d.out = in, bufio.NewReaderSize(out, 1<<20)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		cmd.Wait()
		close(d.ended)
	}()
	t.Cleanup(func() {
		d.in.Close() // the driver closes its browsers and exits
		select {
		case <-d.ended:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-d.ended
		}
		if t.Failed() {
			t.Logf("driver log:\n%s", tail(d.log.String(), 150))
		}
	})
	return d
}

// do runs one driver operation and returns its result.
func (d *driver) do(op string, args map[string]any) (json.RawMessage, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seq++
	req := map[string]any{"id": d.seq, "op": op}
	for k, v := range args {
		req[k] = v
	}
	b, _ := json.Marshal(req)
	if _, err := d.in.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("driver: %w", err)
	}
	type resp struct {
		ID     int             `json:"id"`
		OK     bool            `json:"ok"`
		Result json.RawMessage `json:"result"`
		Error  string          `json:"error"`
	}
	ch := make(chan resp, 1)
	errc := make(chan error, 1)
	go func() {
		line, err := d.out.ReadBytes('\n')
		if err != nil {
			errc <- err
			return
		}
		var r resp
		if err := json.Unmarshal(line, &r); err != nil {
			errc <- fmt.Errorf("driver reply %q: %w", line, err)
			return
		}
		ch <- r
	}()
	select {
	case r := <-ch:
		if !r.OK {
			return nil, errors.New(r.Error)
		}
		return r.Result, nil
	case err := <-errc:
		return nil, fmt.Errorf("driver %s: %w", op, err)
	case <-time.After(60 * time.Second):
		return nil, fmt.Errorf("driver %s: no reply within 60s", op)
	}
}

// must runs an operation or fails the test.
func (d *driver) must(op string, args map[string]any) json.RawMessage {
	d.t.Helper()
	r, err := d.do(op, args)
	if err != nil {
		d.t.Fatalf("%s %v: %v", op, args, err)
	}
	return r
}

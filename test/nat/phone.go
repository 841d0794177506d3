package nat

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/test/interop"
)

// phoneConfig describes one baresip phone. Unlike interop.StartBaresip it
// can run inside a network namespace, bound to that namespace's address,
// with nothing in its config about NAT: no STUN, no ICE, no outbound
// keep-alives, so the phone writes its private address into Contact and SDP.
type phoneConfig struct {
	// User and Password are the account's credentials; Domain is the AOR's
	// host (the switch's domain).
	User, Password, Domain string
	// Proxy is the switch's IP:port; every request goes there.
	Proxy string
	// IP is the address baresip binds SIP and RTP to and advertises.
	IP string
	// SIPPort is baresip's SIP port; SIPPort+1 is taken by its TLS listener.
	SIPPort int
	// CtrlPort is the ctrl_tcp port, on 127.0.0.1 of the phone's namespace.
	CtrlPort int
	// Netns is the network namespace to run in; "" is the test's own.
	Netns string
	// AnswerMode is manual (default) or auto.
	AnswerMode string
	// AudioFile is the WAV (8 kHz, mono, 16-bit) baresip sends in calls.
	AudioFile string
	// Regint is the registration interval in seconds. Default 60.
	Regint int
}

// phone is a running baresip driven through its ctrl_tcp module.
type phone struct {
	Name string
	Dir  string // config dir (-f); received audio is in Dir/snd
	AOR  string
	cfg  phoneConfig

	proc *interop.Process
	conn net.Conn

	mu      sync.Mutex
	events  []phoneEvent
	changed chan struct{} // closed and replaced on every new event
	waiting map[string]chan phoneResponse
	token   int
}

// phoneEvent is an event baresip sent on ctrl_tcp.
type phoneEvent struct {
	Type  string `json:"type"`
	Class string `json:"class"`
	Param string `json:"param"`
}

// phoneResponse is baresip's answer to a command.
type phoneResponse struct {
	OK    bool   `json:"ok"`
	Data  string `json:"data"`
	Token string `json:"token"`
}

// baresipModules are the modules the phones load.
var baresipModules = []string{"ctrl_tcp", "menu", "account", "aufile", "sndfile", "aubridge", "g711"}

// requireBaresip returns baresip's path, skipping the test (failing it in
// CI) when baresip or one of its modules is missing.
func requireBaresip(t testing.TB) string {
	t.Helper()
	bin := interop.RequireTool(t, "baresip")
	for _, m := range baresipModules {
		if _, err := os.Stat("/usr/lib/baresip/modules/" + m + ".so"); err != nil {
			if interop.InCI() {
				t.Fatalf("baresip module %s missing (CI=true): %v", m, err)
			}
			t.Skipf("baresip module %s missing: %v", m, err)
		}
	}
	return bin
}

// startPhone writes a config dir, starts `baresip -f DIR -s` (SIP trace
// on), inside cfg.Netns when set (as `ip netns exec NS baresip ...`, so the
// process's PID is baresip's), and connects to its ctrl_tcp port. dial
// opens that connection (inside the namespace); nil dials from here. The
// phone is stopped by PID when the test ends; on failure its log is printed.
func startPhone(t testing.TB, name string, cfg phoneConfig, dial func(addr string) (net.Conn, error)) *phone {
	t.Helper()
	bin := requireBaresip(t)
	if cfg.AnswerMode == "" {
		cfg.AnswerMode = "manual"
	}
	if cfg.Regint == 0 {
		cfg.Regint = 60
	}
	if dial == nil {
		dial = func(addr string) (net.Conn, error) { return net.DialTimeout("tcp", addr, time.Second) }
	}
	p := &phone{
		Name:    name,
		Dir:     t.TempDir(),
		AOR:     fmt.Sprintf("sip:%s@%s", cfg.User, cfg.Domain),
		cfg:     cfg,
		changed: make(chan struct{}),
		waiting: map[string]chan phoneResponse{},
	}
	snd := filepath.Join(p.Dir, "snd")
	if err := os.MkdirAll(snd, 0o755); err != nil {
		t.Fatal(err)
	}
	// menu provides the commands ctrl_tcp runs; aubridge's "nil" device is
	// a player that does not spin (alsa's null device busy-loops); sndfile
	// records each call as snd/*-enc.wav (sent) and snd/*-dec.wav
	// (received). Nothing here knows about NAT.
	config := fmt.Sprintf(`poll_method epoll
sip_listen %s
net_interface %s
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
`, net.JoinHostPort(cfg.IP, strconv.Itoa(cfg.SIPPort)), cfg.IP, cfg.AudioFile, cfg.CtrlPort, snd)
	account := fmt.Sprintf("<sip:%s@%s;transport=udp>;auth_pass=%s;audio_codecs=pcmu;answermode=%s;regint=%d;outbound=\"sip:%s;transport=udp\"\n",
		cfg.User, cfg.Domain, cfg.Password, cfg.AnswerMode, cfg.Regint, cfg.Proxy)
	for f, s := range map[string]string{"config": config, "accounts": account, "contacts": ""} {
		if err := os.WriteFile(filepath.Join(p.Dir, f), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	args := []string{bin, "-f", p.Dir, "-s"}
	if cfg.Netns != "" {
		args = append([]string{"ip", "netns", "exec", cfg.Netns}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = p.Dir
	proc, err := interop.StartProcess("baresip "+name, cmd, filepath.Join(p.Dir, "baresip.log"))
	if err != nil {
		t.Fatal(err)
	}
	p.proc = proc
	t.Cleanup(func() { p.stop(t) })

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.CtrlPort))
	var lastErr error
	interop.Poll(10*time.Second, 20*time.Millisecond, func() bool {
		if proc.Exited() {
			return true
		}
		conn, err := dial(addr)
		if err != nil {
			lastErr = err
			return false
		}
		p.conn = conn
		return true
	})
	if p.conn == nil {
		t.Fatalf("baresip %s: no ctrl_tcp on %s in netns %q (exited=%v, last error %v)\n%s",
			name, addr, cfg.Netns, proc.Exited(), lastErr, tailLines(proc.Out.String(), 40))
	}
	go p.read()
	return p
}

// sipAddr is the phone's own SIP address, ip:port.
func (p *phone) sipAddr() string { return net.JoinHostPort(p.cfg.IP, strconv.Itoa(p.cfg.SIPPort)) }

// PID returns baresip's process id.
func (p *phone) PID() int { return p.proc.Cmd.Process.Pid }

func (p *phone) stop(t testing.TB) {
	if p.conn != nil {
		p.conn.Close()
	}
	p.proc.Stop(syscall.SIGTERM, 5*time.Second)
	if t.Failed() {
		t.Logf("baresip %s log (%s):\n%s", p.Name, filepath.Join(p.Dir, "baresip.log"), tailLines(p.Log(), 200))
	}
}

// Log returns what baresip printed so far (with -s: every SIP message).
func (p *phone) Log() string { return p.proc.Out.String() }

// read decodes netstrings ("LEN:JSON,") from ctrl_tcp until the connection
// closes.
func (p *phone) read() {
	r := bufio.NewReader(p.conn)
	for {
		lenStr, err := r.ReadString(':')
		if err != nil {
			return
		}
		n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(lenStr, ":")))
		if err != nil || n < 0 || n > 1<<20 {
			return
		}
		msg := make([]byte, n+1)
		if _, err := io.ReadFull(r, msg); err != nil || msg[n] != ',' {
			return
		}
		msg = msg[:n]
		var probe struct {
			Event    bool `json:"event"`
			Response bool `json:"response"`
		}
		if json.Unmarshal(msg, &probe) != nil {
			continue
		}
		switch {
		case probe.Event:
			var ev phoneEvent
			if json.Unmarshal(msg, &ev) == nil {
				p.mu.Lock()
				p.events = append(p.events, ev)
				close(p.changed)
				p.changed = make(chan struct{})
				p.mu.Unlock()
			}
		case probe.Response:
			var resp phoneResponse
			if json.Unmarshal(msg, &resp) == nil {
				p.mu.Lock()
				ch := p.waiting[resp.Token]
				delete(p.waiting, resp.Token)
				p.mu.Unlock()
				if ch != nil {
					ch <- resp
				}
			}
		}
	}
}

// Command runs a ctrl_tcp command (dial, hangup, reginfo, ...) and returns
// baresip's response, waiting at most 10 s for it.
func (p *phone) Command(command, params string) (phoneResponse, error) {
	p.mu.Lock()
	p.token++
	tok := strconv.Itoa(p.token)
	ch := make(chan phoneResponse, 1)
	p.waiting[tok] = ch
	p.mu.Unlock()
	msg, _ := json.Marshal(map[string]string{"command": command, "params": params, "token": tok})
	frame := append([]byte(strconv.Itoa(len(msg))+":"), msg...)
	frame = append(frame, ',')
	if _, err := p.conn.Write(frame); err != nil {
		return phoneResponse{}, fmt.Errorf("baresip %s: %s: %w", p.Name, command, err)
	}
	select {
	case r := <-ch:
		if !r.OK {
			return r, fmt.Errorf("baresip %s: %s %s: %s", p.Name, command, params, strings.TrimSpace(r.Data))
		}
		return r, nil
	case <-p.proc.Done():
		return phoneResponse{}, fmt.Errorf("baresip %s: %s: baresip exited", p.Name, command)
	case <-time.After(10 * time.Second):
		return phoneResponse{}, fmt.Errorf("baresip %s: %s: no response within 10s", p.Name, command)
	}
}

var ansi = regexp.MustCompile("\x1b\\[[0-9;]*m")

// regState returns the account's state as `reginfo` shows it: "OK"
// (registered), "ERR" (failed) or "zzz" (not yet), with the line.
func (p *phone) regState() (string, string, error) {
	r, err := p.Command("reginfo", "")
	if err != nil {
		return "", "", err
	}
	for _, l := range strings.Split(ansi.ReplaceAllString(r.Data, ""), "\n") {
		f := strings.Fields(l)
		for i, w := range f {
			if strings.HasPrefix(w, p.AOR) && i+1 < len(f) {
				return f[i+1], strings.TrimSpace(l), nil
			}
		}
	}
	return "", strings.TrimSpace(r.Data), fmt.Errorf("baresip %s: %s not in reginfo", p.Name, p.AOR)
}

// WaitRegistered waits until reginfo shows the account registered.
func (p *phone) WaitRegistered(t testing.TB, timeout time.Duration) {
	t.Helper()
	var last string
	if !interop.Poll(timeout, 50*time.Millisecond, func() bool {
		st, line, err := p.regState()
		last = line
		if err != nil {
			last = err.Error()
		}
		return st == "OK"
	}) {
		t.Fatalf("baresip %s did not register within %s: %s", p.Name, timeout, last)
	}
}

// Events returns the events received so far.
func (p *phone) Events() []phoneEvent {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]phoneEvent(nil), p.events...)
}

// WaitEvent waits up to timeout for an event of type typ among all events
// received since the connection opened (earlier ones included).
func (p *phone) WaitEvent(t testing.TB, typ string, timeout time.Duration) phoneEvent {
	t.Helper()
	deadline := time.After(timeout)
	seen := 0
	for {
		p.mu.Lock()
		evs := p.events[seen:]
		ch := p.changed
		p.mu.Unlock()
		for _, ev := range evs {
			if ev.Type == typ {
				return ev
			}
		}
		seen += len(evs)
		select {
		case <-ch:
			continue
		case <-p.proc.Done():
		case <-deadline:
		}
		var types []string
		for _, e := range p.Events() {
			types = append(types, e.Type+"("+e.Param+")")
		}
		t.Fatalf("baresip %s: no %s event within %s (exited=%v); events so far: %v",
			p.Name, typ, timeout, p.proc.Exited(), types)
		return phoneEvent{}
	}
}

// ReceivedAudio returns the WAV files of audio baresip received (sndfile's
// *-dec.wav), one per call.
func (p *phone) ReceivedAudio() []string {
	m, _ := filepath.Glob(filepath.Join(p.Dir, "snd", "*-dec.wav"))
	return m
}

// receivedBytes is the size of the received-audio recordings so far.
func (p *phone) receivedBytes() int64 {
	var n int64
	for _, f := range p.ReceivedAudio() {
		if st, err := os.Stat(f); err == nil {
			n += st.Size()
		}
	}
	return n
}

// tailLines returns the last n lines of s.
func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[... %d lines before]", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

package testbed

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BaresipConfig describes one baresip phone.
type BaresipConfig struct {
	// User and Password are the account's credentials; Domain is the AOR's
	// host (the switch's domain).
	User, Password, Domain string
	// Proxy is the switch's host:port; every request goes there (baresip's
	// outbound proxy), so Domain need not resolve.
	Proxy string
	// Transport is udp (default), tcp or tls.
	Transport string
	// CAFile is a PEM file of roots baresip trusts for TLS (sip_cafile).
	CAFile string
	// AnswerMode is manual (default) or auto.
	AnswerMode string
	// AudioFile is the WAV (8 kHz, mono, 16-bit) baresip sends in calls.
	AudioFile string
	// Regint is the registration interval in seconds. Default 600.
	Regint int
	// IP is the address baresip binds SIP and RTP to and advertises.
	// Default 127.0.0.1.
	IP string
	// SIPPort is baresip's SIP port (UDP and TCP); SIPPort+1 is taken by
	// its TLS listener. 0 picks a free pair on 127.0.0.1 (FreePort).
	SIPPort int
	// CtrlPort is the ctrl_tcp port, on 127.0.0.1 of the phone's
	// namespace. 0 picks a free one on 127.0.0.1.
	CtrlPort int
	// Netns is the network namespace to run in (NewNetns); "" is the
	// test's own. Nothing in the config is about NAT: no STUN, no ICE, no
	// outbound keep-alives, so behind a NAT router the phone writes its
	// private address into Contact and SDP (unless Outbound is set).
	Netns string
	// Outbound registers an RFC 5626 flow (sipnat=outbound: reg-id 1 and a
	// +sip.instance that the uuid module keeps in Dir, so that Restart
	// registers the same instance) and keeps it alive as the registrar's
	// Flow-Timer asks: CRLF pings on TCP, STUN on UDP.
	Outbound bool
}

// Baresip is a running baresip process driven through its ctrl_tcp module.
type Baresip struct {
	Name     string
	Dir      string // config dir (-f); received audio is in Dir/snd
	IP       string // the address it binds and advertises
	SIPPort  int    // SIP port (UDP and TCP); SIPPort+1 is its TLS port
	CtrlPort int
	AOR      string
	Netns    string // its network namespace; "" is the test's own

	cfg     BaresipConfig
	bin     string
	prevLog string // what earlier processes (before Restart) printed

	proc *Process
	conn net.Conn

	mu      sync.Mutex
	events  []BaresipEvent
	changed chan struct{} // closed and replaced on every new event
	waiting map[string]chan BaresipResponse
	token   int
}

// BaresipEvent is an event baresip sent on ctrl_tcp.
type BaresipEvent struct {
	Type       string `json:"type"`
	Class      string `json:"class"`
	AccountAOR string `json:"accountaor"`
	Direction  string `json:"direction"`
	PeerURI    string `json:"peeruri"`
	ID         string `json:"id"`
	Param      string `json:"param"`
	Raw        string `json:"-"`
}

// BaresipResponse is baresip's answer to a command.
type BaresipResponse struct {
	OK    bool   `json:"ok"`
	Data  string `json:"data"`
	Token string `json:"token"`
}

// baresipModules are the modules the phones load.
var baresipModules = []string{"ctrl_tcp", "menu", "account", "aufile", "sndfile", "aubridge", "g711", "uuid"}

// RequireBaresip returns baresip's path, skipping the test (failing it when
// CI=true) when baresip or one of the modules StartBaresip loads is missing.
func RequireBaresip(t testing.TB) string {
	t.Helper()
	bin := RequireTool(t, "baresip")
	for _, m := range baresipModules {
		if _, err := os.Stat("/usr/lib/baresip/modules/" + m + ".so"); err != nil {
			if InCI() {
				t.Fatalf("baresip module %s missing (CI=true): %v", m, err)
			}
			t.Skipf("baresip module %s missing: %v", m, err)
		}
	}
	return bin
}

// StartBaresip writes a config dir, starts `baresip -f DIR -s` (SIP trace on)
// with stdin from /dev/null, inside c.Netns when set (as `ip netns exec NS
// baresip ...`, so the PID is baresip's), and connects to its ctrl_tcp port
// (from inside the namespace). The phone is stopped by PID when the test
// ends; on failure its log is printed.
func StartBaresip(t testing.TB, name string, c BaresipConfig) *Baresip {
	t.Helper()
	bin := RequireBaresip(t)
	if c.Transport == "" {
		c.Transport = "udp"
	}
	if c.AnswerMode == "" {
		c.AnswerMode = "manual"
	}
	if c.Regint == 0 {
		c.Regint = 600
	}
	if c.IP == "" {
		c.IP = "127.0.0.1"
	}
	if c.SIPPort == 0 {
		c.SIPPort = FreePort(t, 2)
	}
	if c.CtrlPort == 0 {
		c.CtrlPort = FreePort(t, 1)
	}
	b := &Baresip{
		Name:     name,
		Dir:      t.TempDir(),
		IP:       c.IP,
		SIPPort:  c.SIPPort,
		CtrlPort: c.CtrlPort,
		AOR:      fmt.Sprintf("sip:%s@%s", c.User, c.Domain),
		Netns:    c.Netns,
		changed:  make(chan struct{}),
		waiting:  map[string]chan BaresipResponse{},
		cfg:      c,
		bin:      bin,
	}
	b.writeConfig(t, c)
	b.start(t, bin, c)
	return b
}

// Restart stops baresip (SIGTERM: it unregisters, if the network lets it)
// and starts it again on the same config dir, ports and account; with
// Outbound, the same +sip.instance. The events received so far are
// forgotten; Log then holds the new process's output only (PrevLog the
// earlier ones').
func (b *Baresip) Restart(t testing.TB) {
	t.Helper()
	if b.conn != nil {
		b.conn.Close()
	}
	b.proc.Stop(syscall.SIGTERM, 5*time.Second)
	b.mu.Lock()
	b.prevLog += b.proc.Out.String()
	b.events = nil
	b.mu.Unlock()
	b.conn = nil
	b.start(t, b.bin, b.cfg)
}

// PrevLog returns what the processes before the last Restart printed.
func (b *Baresip) PrevLog() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.prevLog
}

// writeConfig writes baresip's config, accounts and contacts files.
func (b *Baresip) writeConfig(t testing.TB, c BaresipConfig) {
	t.Helper()
	snd := filepath.Join(b.Dir, "snd")
	if err := os.MkdirAll(snd, 0o755); err != nil {
		t.Fatal(err)
	}
	// Modules: menu provides the dial/hangup/accept/reginfo commands that
	// ctrl_tcp runs; aubridge's "nil" device is a player that does not spin
	// (alsa's null device busy-loops); sndfile records each call's audio as
	// snd/*-enc.wav (sent) and snd/*-dec.wav (received).
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
%smodule_tmp account.so
module_app menu.so
module_app ctrl_tcp.so
ctrl_tcp_listen 127.0.0.1:%d
snd_path %s
`, b.SIPAddr(), c.IP, c.AudioFile, uuidModule(c), b.CtrlPort, snd)
	account := fmt.Sprintf("<sip:%s@%s;transport=%s>;auth_pass=%s;audio_codecs=pcmu;answermode=%s;regint=%d;outbound=\"sip:%s;transport=%s\"",
		c.User, c.Domain, c.Transport, c.Password, c.AnswerMode, c.Regint, c.Proxy, c.Transport)
	if c.Outbound {
		account += ";sipnat=outbound"
	}
	account += "\n"
	if c.CAFile != "" {
		config += "sip_cafile " + c.CAFile + "\n"
	}
	for f, s := range map[string]string{"config": config, "accounts": account, "contacts": ""} {
		if err := os.WriteFile(filepath.Join(b.Dir, f), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// uuidModule is the config line loading the uuid module (before the
// account module: outbound needs the instance id), for Outbound phones.
func uuidModule(c BaresipConfig) string {
	if !c.Outbound {
		return ""
	}
	return "module_tmp uuid.so\n"
}

// start runs baresip and connects to its ctrl_tcp port.
func (b *Baresip) start(t testing.TB, bin string, c BaresipConfig) {
	t.Helper()
	name := b.Name
	cmd := InNetns(c.Netns, bin, "-f", b.Dir, "-s")
	cmd.Dir = b.Dir
	proc, err := StartProcess("baresip "+name, cmd, filepath.Join(b.Dir, "baresip.log"))
	if err != nil {
		t.Fatal(err)
	}
	b.proc = proc
	t.Cleanup(func() { b.stop(t) })

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(b.CtrlPort))
	dial := Dialer(c.Netns)
	var lastErr error
	Poll(10*time.Second, 20*time.Millisecond, func() bool {
		if proc.Exited() {
			return true
		}
		conn, err := dial(addr)
		if err != nil {
			lastErr = err
			return false
		}
		b.conn = conn
		return true
	})
	if b.conn == nil {
		t.Fatalf("baresip %s: no ctrl_tcp on %s in netns %q (exited=%v, last error %v)\n%s",
			name, addr, c.Netns, proc.Exited(), lastErr, Tail(proc.Out.String(), 40))
	}
	go b.read(b.conn)
}

// SIPAddr is the phone's own SIP address, ip:port.
func (b *Baresip) SIPAddr() string { return net.JoinHostPort(b.IP, strconv.Itoa(b.SIPPort)) }

// PID returns baresip's process id.
func (b *Baresip) PID() int { return b.proc.Cmd.Process.Pid }

func (b *Baresip) stop(t testing.TB) {
	if b.conn != nil {
		b.conn.Close()
	}
	b.proc.Stop(syscall.SIGTERM, 5*time.Second)
	if t.Failed() {
		t.Logf("baresip %s log (%s):\n%s", b.Name, filepath.Join(b.Dir, "baresip.log"), Tail(b.proc.Out.String(), 150))
	}
}

// Log returns what baresip printed so far (with -s: every SIP message).
func (b *Baresip) Log() string { return b.proc.Out.String() }

// read decodes netstrings ("LEN:JSON,") from ctrl_tcp until the connection
// closes.
func (b *Baresip) read(conn net.Conn) {
	r := bufio.NewReader(conn)
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
			var ev BaresipEvent
			if json.Unmarshal(msg, &ev) == nil {
				ev.Raw = string(msg)
				b.mu.Lock()
				b.events = append(b.events, ev)
				close(b.changed)
				b.changed = make(chan struct{})
				b.mu.Unlock()
			}
		case probe.Response:
			var resp BaresipResponse
			if json.Unmarshal(msg, &resp) == nil {
				b.mu.Lock()
				ch := b.waiting[resp.Token]
				delete(b.waiting, resp.Token)
				b.mu.Unlock()
				if ch != nil {
					ch <- resp
				}
			}
		}
	}
}

// Command runs a ctrl_tcp command (dial, hangup, accept, reginfo, ...) and
// returns baresip's response.
func (b *Baresip) Command(ctx context.Context, command, params string) (BaresipResponse, error) {
	b.mu.Lock()
	b.token++
	tok := strconv.Itoa(b.token)
	ch := make(chan BaresipResponse, 1)
	b.waiting[tok] = ch
	b.mu.Unlock()
	msg, _ := json.Marshal(map[string]string{"command": command, "params": params, "token": tok})
	frame := append([]byte(strconv.Itoa(len(msg))+":"), msg...)
	frame = append(frame, ',')
	if _, err := b.conn.Write(frame); err != nil {
		return BaresipResponse{}, fmt.Errorf("baresip %s: %s: %w", b.Name, command, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	select {
	case r := <-ch:
		if !r.OK {
			return r, fmt.Errorf("baresip %s: %s %s: %s", b.Name, command, params, strings.TrimSpace(r.Data))
		}
		return r, nil
	case <-b.proc.Done():
		return BaresipResponse{}, fmt.Errorf("baresip %s: %s: baresip exited", b.Name, command)
	case <-ctx.Done():
		return BaresipResponse{}, fmt.Errorf("baresip %s: %s: no response: %w", b.Name, command, ctx.Err())
	}
}

var ansi = regexp.MustCompile("\x1b\\[[0-9;]*m")

// StripANSI removes the terminal colour codes baresip writes into its
// output.
func StripANSI(s string) string { return ansi.ReplaceAllString(s, "") }

// RegState returns the account's registration state as `reginfo` shows it:
// "OK" (registered), "ERR" (failed) or "zzz" (not yet), with the line.
func (b *Baresip) RegState(ctx context.Context) (string, string, error) {
	r, err := b.Command(ctx, "reginfo", "")
	if err != nil {
		return "", "", err
	}
	for _, l := range strings.Split(ansi.ReplaceAllString(r.Data, ""), "\n") {
		f := strings.Fields(l)
		for i, w := range f {
			if strings.HasPrefix(w, b.AOR) && i+1 < len(f) {
				return f[i+1], strings.TrimSpace(l), nil
			}
		}
	}
	return "", strings.TrimSpace(r.Data), fmt.Errorf("baresip %s: %s not in reginfo", b.Name, b.AOR)
}

// WaitRegistered waits until reginfo shows the account registered.
func (b *Baresip) WaitRegistered(t testing.TB, timeout time.Duration) {
	t.Helper()
	var last string
	if !Poll(timeout, 50*time.Millisecond, func() bool {
		st, line, err := b.RegState(context.Background())
		last = line
		if err != nil {
			last = err.Error()
		}
		return st == "OK"
	}) {
		t.Fatalf("baresip %s did not register within %s: %s", b.Name, timeout, last)
	}
}

// Events returns the events received so far.
func (b *Baresip) Events() []BaresipEvent {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]BaresipEvent(nil), b.events...)
}

// WaitEvent waits for an event matching match among all events received
// since the connection opened (earlier ones included) and returns it.
func (b *Baresip) WaitEvent(ctx context.Context, match func(BaresipEvent) bool) (BaresipEvent, error) {
	seen := 0
	for {
		b.mu.Lock()
		if seen > len(b.events) {
			seen = 0 // ClearEvents
		}
		evs := b.events[seen:]
		ch := b.changed
		b.mu.Unlock()
		for _, ev := range evs {
			if match(ev) {
				return ev, nil
			}
		}
		seen += len(evs)
		select {
		case <-ch:
		case <-b.proc.Done():
			return BaresipEvent{}, fmt.Errorf("baresip %s exited", b.Name)
		case <-ctx.Done():
			return BaresipEvent{}, ctx.Err()
		}
	}
}

// ClearEvents forgets the events received so far: later waits see only
// newer ones.
func (b *Baresip) ClearEvents() {
	b.mu.Lock()
	b.events = nil
	b.mu.Unlock()
}

// WaitEventType waits up to timeout for an event of the given type.
func (b *Baresip) WaitEventType(t testing.TB, typ string, timeout time.Duration) BaresipEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ev, err := b.WaitEvent(ctx, func(e BaresipEvent) bool { return e.Type == typ })
	if err != nil {
		var types []string
		for _, e := range b.Events() {
			types = append(types, e.Type+"("+e.Param+")")
		}
		t.Fatalf("baresip %s: no %s event within %s (%v); events so far: %v", b.Name, typ, timeout, err, types)
	}
	return ev
}

// ReceivedBytes is the size of the received-audio recordings so far.
func (b *Baresip) ReceivedBytes() int64 {
	var n int64
	for _, f := range b.ReceivedAudio() {
		if st, err := os.Stat(f); err == nil {
			n += st.Size()
		}
	}
	return n
}

// ReceivedAudio returns the paths of the WAV files of audio baresip received
// (sndfile's *-dec.wav), one per call.
func (b *Baresip) ReceivedAudio() []string {
	m, _ := filepath.Glob(filepath.Join(b.Dir, "snd", "*-dec.wav"))
	return m
}

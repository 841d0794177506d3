package interop

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/test/internal/testbed"
)

// Audio for phones that only speak to a sound card (Twinkle): a
// PulseAudio server of the test's own, with two null sinks — "mic", into
// which pacat plays the phone's tone in real time, and whose monitor is the
// phone's microphone; and "spk", the phone's speaker, whose monitor pacat
// records. Its null sinks keep time as a sound card does, which the phone's
// RTP clock follows (ALSA's own file and null devices have no clock: Twinkle
// stops sending after a second on them). The phone reaches it through
// ALSA's pulse plugin (libasound2-plugins).
type pulse struct {
	server string // PULSE_SERVER value
	dir    string
}

// startPulse starts the server, stopped by PID when the test ends.
func startPulse(t *testing.T, dir string) *pulse {
	t.Helper()
	bin := testbed.RequireTool(t, "pulseaudio")
	testbed.RequireTool(t, "pacat")
	sock := filepath.Join(dir, "native")
	cmd := exec.Command(bin, "-n", "--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no", "--disable-shm=yes",
		"--log-target=stderr", "-L", "module-native-protocol-unix socket="+sock+" auth-anonymous=1",
		"-L", "module-null-sink sink_name=mic rate=8000 channels=1 format=s16le",
		"-L", "module-null-sink sink_name=spk rate=8000 channels=1 format=s16le")
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_RUNTIME_DIR="+dir, "XDG_CONFIG_HOME="+dir)
	proc, err := testbed.StartProcess("pulseaudio", cmd, filepath.Join(dir, "pulseaudio.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		proc.Stop(syscall.SIGTERM, 5*time.Second)
		if t.Failed() {
			t.Logf("pulseaudio log:\n%s", testbed.Tail(proc.Out.String(), 30))
		}
	})
	p := &pulse{server: "unix:" + sock, dir: dir}
	if !testbed.Poll(10*time.Second, 20*time.Millisecond, func() bool {
		_, err := os.Stat(sock)
		return err == nil || proc.Exited()
	}) || proc.Exited() {
		t.Fatalf("pulseaudio did not start:\n%s", proc.Out.String())
	}
	return p
}

// env returns the environment entries that make a program use the server,
// with spk as its speaker and mic's monitor as its microphone.
func (p *pulse) env() []string {
	return []string{"PULSE_SERVER=" + p.server, "PULSE_SINK=spk", "PULSE_SOURCE=mic.monitor"}
}

// pacat runs pacat with args (raw signed 16-bit 8 kHz mono) on the server.
func (p *pulse) pacat(t *testing.T, name string, args ...string) *testbed.Process {
	t.Helper()
	cmd := exec.Command("pacat", append([]string{"--raw", "--format=s16le", "--rate=8000", "--channels=1"}, args...)...)
	cmd.Env = append(os.Environ(), "PULSE_SERVER="+p.server, "XDG_RUNTIME_DIR="+p.dir, "HOME="+p.dir)
	proc, err := testbed.StartProcess(name, cmd, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proc.Stop(syscall.SIGTERM, 5*time.Second) })
	return proc
}

// playTone plays freq Hz into the mic sink for seconds, in real time.
func (p *pulse) playTone(t *testing.T, freq float64, seconds int) {
	t.Helper()
	path := filepath.Join(p.dir, "tone.raw")
	b := make([]byte, 2*8000*seconds)
	for i := 0; i < 8000*seconds; i++ {
		binary.LittleEndian.PutUint16(b[2*i:], uint16(int16(8000*math.Sin(2*math.Pi*freq*float64(i)/8000))))
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	p.pacat(t, "pacat tone", "--playback", "--device=mic", path)
}

// record records the spk sink's monitor into path until the test ends.
func (p *pulse) record(t *testing.T, path string) {
	t.Helper()
	p.pacat(t, "pacat record", "--record", "--device=spk.monitor", path)
}

// readRaw reads a raw signed 16-bit 8 kHz mono file as a WAV.
func readRaw(path string) (testbed.WAV, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return testbed.WAV{}, err
	}
	w := testbed.WAV{Rate: 8000, Channels: 1, Samples: make([]int16, len(b)/2)}
	for i := range w.Samples {
		w.Samples[i] = int16(binary.LittleEndian.Uint16(b[2*i:]))
	}
	return w, nil
}

// cliPhone is a phone driven by commands on its stdin, whose output the
// test reads (Twinkle's and Linphone's console clients).
type cliPhone struct {
	name  string
	home  string
	proc  *testbed.Process
	mu    sync.Mutex
	stdin io.WriteCloser
}

// startCLIPhone starts cmd (its Env and Dir set) with a stdin pipe; at the
// end of the test quit is sent, then it is stopped by PID, and on failure
// its output and the files logs name are printed.
func startCLIPhone(t *testing.T, name string, cmd *exec.Cmd, quit string, logs ...string) *cliPhone {
	t.Helper()
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &cliPhone{name: name, home: cmd.Dir, stdin: in}
	proc, err := testbed.StartProcess(name, cmd, filepath.Join(cmd.Dir, "console.out"))
	if err != nil {
		t.Fatal(err)
	}
	p.proc = proc
	t.Cleanup(func() {
		p.command(quit)
		if !testbed.Poll(5*time.Second, 20*time.Millisecond, proc.Exited) {
			proc.Stop(syscall.SIGTERM, 5*time.Second)
		}
		in.Close()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, testbed.Tail(proc.Out.String(), 60))
			for _, l := range logs {
				t.Logf("%s:\n%s", l, testbed.Tail(testbed.ReadFile(l), 120))
			}
		}
	})
	return p
}

// command writes one command line to the phone's stdin.
func (p *cliPhone) command(c string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, _ = io.WriteString(p.stdin, c+"\n")
}

// wait waits until the phone has printed want, or fails the test.
func (p *cliPhone) wait(t *testing.T, want string, timeout time.Duration) {
	t.Helper()
	if !testbed.Poll(timeout, 50*time.Millisecond, func() bool {
		return strings.Contains(p.proc.Out.String(), want) || p.proc.Exited()
	}) || !strings.Contains(p.proc.Out.String(), want) {
		t.Fatalf("%s did not print %q within %s (exited=%v):\n%s", p.name, want, timeout,
			p.proc.Exited(), testbed.Tail(p.proc.Out.String(), 30))
	}
}

// twinkle is a Twinkle console phone (Debian twinkle-console 1.10). Its
// profile lives in a HOME of its own (~/.twinkle/USER.cfg and twinkle.sys);
// its sound card is a PulseAudio server of its own (see pulse), and what it
// plays is recorded in speaker.
type twinkle struct {
	*cliPhone
	speaker string // raw audio it played: what it received
}

// startTwinkle starts Twinkle registering user at proxy (host:port, UDP)
// for domain, sending a freq Hz tone in calls.
func startTwinkle(t *testing.T, name, user, password, domain, proxy string, freq float64) *twinkle {
	t.Helper()
	bin := testbed.RequireTool(t, "twinkle-console")
	home := t.TempDir()
	conf := filepath.Join(home, ".twinkle")
	if err := os.MkdirAll(conf, 0o700); err != nil {
		t.Fatal(err)
	}
	speaker := filepath.Join(home, "speaker.raw")
	pa := startPulse(t, home)
	pa.playTone(t, freq, 60)
	pa.record(t, speaker)
	sipPort, rtpPort := testbed.FreePort(t, 1), testbed.FreePort(t, 4)
	// The speex preprocessor's voice detection takes a steady tone for
	// noise and stops the RTP after a second: it is off, with the rest of
	// its processing.
	files := map[string]string{
		filepath.Join(conf, user+".cfg"): fmt.Sprintf(`user_name=%s
user_domain=%s
user_display=%s
auth_name=%s
auth_pass=%s
outbound_proxy=%s
all_requests_to_proxy=yes
registrar=%s
register_at_startup=yes
registration_time=3600
codecs=g711u
sip_transport=udp
speex_dsp_vad=no
speex_dsp_nrd=no
speex_dsp_agc=no
speex_dsp_aec=no
`, user, domain, name, user, password, proxy, proxy),
		filepath.Join(conf, "twinkle.sys"): fmt.Sprintf(`dev_ringtone=alsa:default
dev_speaker=alsa:default
dev_mic=alsa:default
validate_audio_dev=no
sip_udp_port=%d
rtp_port=%d
log_show_sip=yes
log_show_debug=no
play_ringtone=no
play_ringback=no
`, sipPort, rtpPort),
		filepath.Join(home, ".asoundrc"): "pcm.!default { type pulse }\nctl.!default { type pulse }\n",
	}
	for p, s := range files {
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, user+".cfg")
	cmd.Dir = home
	cmd.Env = append(append(os.Environ(), "HOME="+home, "XDG_RUNTIME_DIR="+home), pa.env()...)
	return &twinkle{cliPhone: startCLIPhone(t, "twinkle "+name, cmd, "quit", filepath.Join(conf, "twinkle.log")), speaker: speaker}
}

// linphone is Linphone's console client (Debian linphone-cli 5.1,
// linphonec) with its own HOME and linphonerc; its "files" sound card plays
// a WAV file as its microphone and records what it hears into another.
type linphone struct {
	*cliPhone
	tone, heard string // WAV files: what it sends, what it received
}

// startLinphone starts linphonec registering user at proxy (host:port,
// UDP) for domain, sending a freq Hz tone in calls.
func startLinphone(t *testing.T, name, user, password, domain, proxy string, freq int) *linphone {
	t.Helper()
	bin := testbed.RequireTool(t, "linphonec")
	home := t.TempDir()
	// Without this directory linphonec silently opens no SIP port.
	if err := os.MkdirAll(filepath.Join(home, ".local", "share", "linphone"), 0o700); err != nil {
		t.Fatal(err)
	}
	sipPort, rtpPort := testbed.FreePort(t, 1), testbed.FreePort(t, 4)
	rc := filepath.Join(home, "linphonerc")
	err := os.WriteFile(rc, []byte(fmt.Sprintf(`[sip]
sip_port=%d
default_proxy=0
[rtp]
audio_rtp_port=%d
[video]
enabled=0
[proxy_0]
reg_proxy=<sip:%s;transport=udp>
reg_route=<sip:%s;transport=udp;lr>
reg_identity=sip:%s@%s
reg_expires=3600
reg_sendregister=1
[auth_info_0]
username=%s
passwd=%s
realm=%s
domain=%s
`, sipPort, rtpPort, proxy, proxy, user, domain, user, password, domain, domain)), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	lp := &linphone{tone: testbed.MakeTone(t, filepath.Join(home, "tone.wav"), freq, 60), heard: filepath.Join(home, "heard.wav")}
	logFile := filepath.Join(home, "linphone.log")
	cmd := exec.Command(bin, "-c", rc, "-d", "5", "-l", logFile)
	cmd.Dir = home
	// Its "files" sound card needs no sound server: none is looked for
	// (libpulse would otherwise leave a runtime directory in /tmp).
	cmd.Env = append(os.Environ(), "HOME="+home, "XDG_RUNTIME_DIR="+home, "PULSE_SERVER=unix:"+filepath.Join(home, "no-pulse"))
	lp.cliPhone = startCLIPhone(t, "linphone "+name, cmd, "quit", logFile)
	return lp
}

// waitRegistered asks linphonec for its registration state until it says
// it is registered, or fails the test.
func (lp *linphone) waitRegistered(t *testing.T, timeout time.Duration) {
	t.Helper()
	if !testbed.Poll(timeout, 200*time.Millisecond, func() bool {
		lp.command("status register")
		return strings.Contains(lp.proc.Out.String(), "\nregistered, identity=")
	}) {
		t.Fatalf("%s did not register within %s:\n%s", lp.name, timeout, testbed.Tail(lp.proc.Out.String(), 30))
	}
}

// heardTone checks that w holds at least minSeconds of freq Hz (the other
// side's tone), beside silence before the call.
func heardTone(t *testing.T, who string, w testbed.WAV, freq float64, minSeconds float64) {
	t.Helper()
	tone := testbed.MeasureTone(w, freq)
	t.Logf("%s received %.1fs of audio, %.0f%% not silent, %.0f%% of that at %.0f Hz",
		who, tone.Seconds, 100*tone.Active, 100*tone.Share, freq)
	if tone.Active*tone.Seconds < minSeconds || tone.Share < 0.8 {
		t.Errorf("%s did not hear %.1fs of the other side's %.0f Hz tone: %+v", who, minSeconds, freq, tone)
	}
}

// answeredWithMedia waits for the record of the one call from caller to
// callee and checks it was answered, ended, and that the relay took media
// from both legs.
func answeredWithMedia(t *testing.T, srv *testbed.Server, caller, callee string) {
	t.Helper()
	var rows []testbed.CDR
	if !testbed.Poll(10*time.Second, 100*time.Millisecond, func() bool {
		rows = callsBetween(srv.CDRs(t), caller, callee)
		return len(rows) == 1 && rows[0].Answered() && rows[0]["ended"] != "" && rows[0]["ended"] != "-"
	}) {
		t.Fatalf("cdr list: want one answered and ended %s→%s call, got %v", caller, callee, rows)
	}
	for _, leg := range []string{"caller", "callee"} {
		var pkts int
		if _, rest, ok := strings.Cut(rows[0]["media"], "m0 "+leg+": pkts="); ok {
			_, _ = fmt.Sscan(rest, &pkts)
		}
		if pkts < 50 {
			t.Errorf("cdr media: %d packets from the %s's leg, want at least 50: %q", pkts, leg, rows[0]["media"])
		}
	}
}

// TestTwinkleCallsBaresip: Twinkle registers on the shipped digest
// settings (Twinkle 1.10 refuses a challenge set naming SHA-256) and calls
// a baresip that answers by itself; each hears the other's tone through
// the relay, and the record has media on both legs.
func TestTwinkleCallsBaresip(t *testing.T) {
	testbed.RequireBaresip(t)
	srv := testbed.StartServer(t, testbed.Binary(t), testbed.ServerConfig{})
	addUsers(t, srv, []testbed.Cred{{User: "alice", Password: "alice-pw-1"}, {User: "bob", Password: "bob-pw-2"}})
	const aliceHz, bobHz = 1000, 600
	proxy := srv.Addr(t, "udp")
	bob := testbed.StartBaresip(t, "bob", testbed.BaresipConfig{
		User: "bob", Password: "bob-pw-2", Domain: srv.Domain, Proxy: proxy, AnswerMode: "auto",
		AudioFile: testbed.MakeTone(t, filepath.Join(t.TempDir(), "bob.wav"), bobHz, 30),
	})
	bob.WaitRegistered(t, 10*time.Second)
	alice := startTwinkle(t, "alice", "alice", "alice-pw-1", srv.Domain, proxy, aliceHz)
	alice.wait(t, "registration succeeded", 10*time.Second)

	alice.command("call sip:bob@" + srv.Domain)
	bob.WaitEventType(t, "CALL_ESTABLISHED", 15*time.Second)
	alice.wait(t, "far end answered call", 10*time.Second)
	const want = 44 + 3*8000 // 1.5 s of 8 kHz 16-bit audio after the header
	heard := func() float64 {
		w, err := readRaw(alice.speaker)
		if err != nil {
			return 0
		}
		tone := testbed.MeasureTone(w, bobHz)
		return tone.Active * tone.Seconds
	}
	if !testbed.Poll(15*time.Second, 200*time.Millisecond, func() bool { return bob.ReceivedBytes() >= want && heard() >= 1.5 }) {
		t.Errorf("audio: baresip bob received %d bytes, twinkle alice %.1fs of sound", bob.ReceivedBytes(), heard())
	}
	alice.command("bye")
	bob.WaitEventType(t, "CALL_CLOSED", 10*time.Second)
	alice.wait(t, "call ended", 5*time.Second)

	w, err := readRaw(alice.speaker)
	if err != nil {
		t.Fatal(err)
	}
	heardTone(t, "twinkle alice", w, bobHz, 1.5)
	if files := bob.ReceivedAudio(); len(files) == 1 {
		checkTone(t, "baresip bob", files[0], aliceHz)
	} else {
		t.Errorf("bob: %d recordings of received audio, want 1", len(files))
	}
	answeredWithMedia(t, srv, "alice", "bob")
}

// TestLinphoneCallsBaresip: Linphone's console client registers on the
// shipped digest settings and calls a baresip that answers by itself; each
// hears the other's tone through the relay, and the record has media on
// both legs.
func TestLinphoneCallsBaresip(t *testing.T) {
	testbed.RequireBaresip(t)
	srv := testbed.StartServer(t, testbed.Binary(t), testbed.ServerConfig{})
	addUsers(t, srv, []testbed.Cred{{User: "carol", Password: "carol-pw-3"}, {User: "bob", Password: "bob-pw-2"}})
	const carolHz, bobHz = 800, 600
	proxy := srv.Addr(t, "udp")
	bob := testbed.StartBaresip(t, "bob", testbed.BaresipConfig{
		User: "bob", Password: "bob-pw-2", Domain: srv.Domain, Proxy: proxy, AnswerMode: "auto",
		AudioFile: testbed.MakeTone(t, filepath.Join(t.TempDir(), "bob.wav"), bobHz, 30),
	})
	bob.WaitRegistered(t, 10*time.Second)
	carol := startLinphone(t, "carol", "carol", "carol-pw-3", srv.Domain, proxy, carolHz)
	carol.waitRegistered(t, 10*time.Second)

	carol.command("soundcard use files")
	carol.command("call sip:bob@" + srv.Domain)
	bob.WaitEventType(t, "CALL_ESTABLISHED", 15*time.Second)
	carol.wait(t, "connected", 10*time.Second)
	carol.command("play " + carol.tone)
	carol.command("record " + carol.heard)
	const want = 44 + 3*8000
	// Linphone writes the WAV header when the recording ends: until then
	// only the file's size tells how much it has heard.
	heard := func() int64 {
		st, err := os.Stat(carol.heard)
		if err != nil {
			return 0
		}
		return st.Size()
	}
	if !testbed.Poll(15*time.Second, 200*time.Millisecond, func() bool { return bob.ReceivedBytes() >= want && heard() >= want }) {
		t.Errorf("audio: baresip bob received %d bytes, linphone carol %d bytes", bob.ReceivedBytes(), heard())
	}
	carol.command("terminate")
	bob.WaitEventType(t, "CALL_CLOSED", 10*time.Second)

	// The header comes when Linphone closes the recording, which may be a
	// moment after its BYE has reached bob (a loaded machine: CI).
	var w testbed.WAV
	var err error
	testbed.Poll(5*time.Second, 100*time.Millisecond, func() bool {
		w, err = testbed.ReadWAV(carol.heard)
		return err == nil
	})
	if err != nil {
		t.Fatal(err)
	}
	heardTone(t, "linphone carol", w, bobHz, 1.5)
	if files := bob.ReceivedAudio(); len(files) == 1 {
		checkTone(t, "baresip bob", files[0], carolHz)
	} else {
		t.Errorf("bob: %d recordings of received audio, want 1", len(files))
	}
	answeredWithMedia(t, srv, "carol", "bob")
}

// TestLinphoneRegistersWithSHA256: Linphone chooses among several
// challenges, so listed in security.sha256_user_agents it is offered
// [SHA-256, MD5] and answers with SHA-256 (RFC 8760).
func TestLinphoneRegistersWithSHA256(t *testing.T) {
	srv := testbed.StartServer(t, testbed.Binary(t), testbed.ServerConfig{Security: "sha256_user_agents: [Linphone]"})
	addUsers(t, srv, []testbed.Cred{{User: "carol", Password: "carol-pw-3"}})
	carol := startLinphone(t, "carol", "carol", "carol-pw-3", srv.Domain, srv.Addr(t, "udp"), 800)
	carol.waitRegistered(t, 10*time.Second)
	log := testbed.ReadFile(filepath.Join(carol.home, "linphone.log"))
	sha := false
	for _, l := range strings.Split(log, "\n") {
		if strings.HasPrefix(l, "Authorization:") && strings.Contains(l, "algorithm=SHA-256") {
			sha = true
		}
	}
	if !sha {
		t.Errorf("Linphone did not answer with SHA-256:\n%s", testbed.Tail(log, 80))
	}
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// sw is the switch process under test.
type sw struct {
	cmd      *exec.Cmd
	pid      int
	httpAddr string
	sipAddr  string
	cfg      string
	bin      string
	stderr   *bytes.Buffer
}

// freePort returns a port that was free on 127.0.0.1 a moment ago.
func freePort(network string) (int, error) {
	switch network {
	case "udp":
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return 0, err
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port, nil
	default:
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port, nil
	}
}

// startSwitch writes a config into dir, adds the users and starts
// `switchboard serve`, pinned to cpu (when >= 0 and taskset exists).
func startSwitch(bin, dir, relay string, cpu int, users []string, password string) (*sw, error) {
	hp, err := freePort("tcp")
	if err != nil {
		return nil, err
	}
	sp, err := freePort("udp")
	if err != nil {
		return nil, err
	}
	s := &sw{bin: bin, cfg: filepath.Join(dir, "switchboard.yaml"),
		httpAddr: fmt.Sprintf("127.0.0.1:%d", hp), sipAddr: fmt.Sprintf("127.0.0.1:%d", sp)}
	conf := fmt.Sprintf(`database: %s
log: {level: warn}
sip: {listen: ["udp://%s"]}
http: {listen: "%s"}
media: {public_ip: 127.0.0.1, relay: %s}
turn: {enabled: false}
webrtc: {enabled: true}
`, filepath.Join(dir, "switchboard.db"), s.sipAddr, s.httpAddr, relay)
	if err := os.WriteFile(s.cfg, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	for _, u := range users {
		out, err := exec.Command(bin, "user", "add", u, "--password", password, "--config", s.cfg).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("user add %s: %v: %s", u, err, out)
		}
	}
	args := []string{bin, "serve", "--config", s.cfg}
	if cpu >= 0 {
		if ts, err := exec.LookPath("taskset"); err == nil {
			args = append([]string{ts, "-c", strconv.Itoa(cpu)}, args...)
		}
	}
	s.cmd = exec.Command(args[0], args[1:]...)
	s.stderr = &bytes.Buffer{}
	s.cmd.Stdout = s.stderr
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	// taskset execs the switch in place: the pid is the switch's.
	s.pid = s.cmd.Process.Pid
	deadline := time.Now().Add(15 * time.Second)
	for {
		r, err := http.Get("http://" + s.httpAddr + "/healthz")
		if err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("switch not healthy within 15s: %v\n%s", err, s.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s, nil
}

func (s *sw) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { s.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			s.cmd.Process.Kill()
			<-done
		}
	}
}

// procStat is a sample of a process's CPU time (clock ticks) and RSS.
type procStat struct {
	at        time.Time
	ticks     int64 // utime + stime
	rssKB     int64
	mallocs   float64 // go_memstats_mallocs_total, when scraped
	heapInUse float64
}

// clkTck is USER_HZ; 100 on every Linux this runs on.
const clkTck = 100

func readProc(pid int) (procStat, error) {
	st := procStat{at: time.Now()}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return st, err
	}
	// Fields after the command name (which may contain spaces).
	rest := string(b[bytes.LastIndexByte(b, ')')+2:])
	f := strings.Fields(rest)
	// rest starts at field 3 (state); utime is field 14, stime 15.
	ut, _ := strconv.ParseInt(f[14-3], 10, 64)
	stt, _ := strconv.ParseInt(f[15-3], 10, 64)
	st.ticks = ut + stt
	sf, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return st, err
	}
	defer sf.Close()
	sc := bufio.NewScanner(sf)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			st.rssKB, _ = strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		}
	}
	return st, nil
}

// sample reads /proc and the switch's Go memory statistics.
func (s *sw) sample(ctx context.Context) procStat {
	st, _ := readProc(s.pid)
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+s.httpAddr+"/metrics", nil)
	if r, err := http.DefaultClient.Do(req); err == nil {
		sc := bufio.NewScanner(r.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			l := sc.Text()
			if v, ok := strings.CutPrefix(l, "go_memstats_mallocs_total "); ok {
				st.mallocs, _ = strconv.ParseFloat(v, 64)
			}
			if v, ok := strings.CutPrefix(l, "go_memstats_heap_inuse_bytes "); ok {
				st.heapInUse, _ = strconv.ParseFloat(v, 64)
			}
		}
		r.Body.Close()
	}
	return st
}

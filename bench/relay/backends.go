package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// switchboard runs `relay serve` as a child process and talks to its
// control port.
type switchboard struct {
	cmd  *exec.Cmd
	conn net.Conn
	rd   *bufio.Reader
}

func startSwitchboard(bin, cpu string, workers int) (*switchboard, error) {
	args := []string{bin, "serve", "-workers", strconv.Itoa(workers)}
	if cpu != "" {
		if tp, err := exec.LookPath("taskset"); err == nil {
			args = append([]string{tp, "-c", cpu}, args...)
		}
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "CONTROL ") {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("relay serve did not start: %q %v", line, err)
	}
	conn, err := net.Dial("tcp", strings.TrimSpace(strings.TrimPrefix(line, "CONTROL ")))
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, err
	}
	go io.Copy(io.Discard, out)
	return &switchboard{cmd: cmd, conn: conn, rd: bufio.NewReader(conn)}, nil
}

func (s *switchboard) do(req string) ([]string, error) {
	s.conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintln(s.conn, req); err != nil {
		return nil, err
	}
	line, err := s.rd.ReadString('\n')
	if err != nil {
		return nil, err
	}
	f := strings.Fields(line)
	if len(f) == 0 || f[0] != "OK" {
		return nil, fmt.Errorf("%s: %s", req, strings.TrimSpace(line))
	}
	return f[1:], nil
}

func (s *switchboard) newCall(_ int, a, b netip.AddrPort) (netip.AddrPort, netip.AddrPort, error) {
	f, err := s.do(fmt.Sprintf("NEW %s %s", a, b))
	if err != nil {
		return netip.AddrPort{}, netip.AddrPort{}, err
	}
	pa, _ := strconv.Atoi(f[0])
	pb, _ := strconv.Atoi(f[1])
	lo := netip.MustParseAddr("127.0.0.1")
	return netip.AddrPortFrom(lo, uint16(pa)), netip.AddrPortFrom(lo, uint16(pb)), nil
}

func (s *switchboard) pid() int { return s.cmd.Process.Pid }

func (s *switchboard) closeCalls() error {
	_, err := s.do("CLOSE")
	return err
}

func (s *switchboard) stop() {
	s.do("QUIT")
	s.conn.Close()
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		s.cmd.Process.Kill() // our own child, by its PID
		<-done
	}
}

// rtpengine drives an rtpengine daemon over its ng protocol: bencoded
// dictionaries over UDP, each prefixed by a cookie.
type rtpengine struct {
	conn  *net.UDPConn
	p     int
	seq   int
	run   string
	calls []string
}

func dialRtpengine(addr string, pid int) (*rtpengine, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, err
	}
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(ap))
	if err != nil {
		return nil, err
	}
	e := &rtpengine{conn: c, p: pid, run: strconv.FormatInt(time.Now().UnixNano(), 36)}
	if _, err := e.do(map[string]any{"command": "ping"}); err != nil {
		c.Close()
		return nil, fmt.Errorf("rtpengine ng at %s: %w", addr, err)
	}
	return e, nil
}

func (e *rtpengine) do(msg map[string]any) (map[string]any, error) {
	e.seq++
	cookie := fmt.Sprintf("%s_%d", e.run, e.seq)
	var buf bytes.Buffer
	buf.WriteString(cookie + " ")
	bencode(&buf, msg)
	if _, err := e.conn.Write(buf.Bytes()); err != nil {
		return nil, err
	}
	rb := make([]byte, 65536)
	for {
		e.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := e.conn.Read(rb)
		if err != nil {
			return nil, err
		}
		resp := rb[:n]
		sp := bytes.IndexByte(resp, ' ')
		if sp < 0 || string(resp[:sp]) != cookie {
			continue // a late answer to an earlier request
		}
		v, _, err := bdecode(resp[sp+1:])
		if err != nil {
			return nil, err
		}
		d, ok := v.(map[string]any)
		if !ok {
			return nil, errors.New("ng: answer is not a dictionary")
		}
		if r, _ := d["result"].(string); r != "ok" && r != "pong" {
			return nil, fmt.Errorf("ng %v: %v %v", msg["command"], r, d["error-reason"])
		}
		return d, nil
	}
}

func phoneSDP(ap netip.AddrPort) string {
	ip := ap.Addr().String()
	return "v=0\r\no=- 1 1 IN IP4 " + ip + "\r\ns=-\r\nc=IN IP4 " + ip + "\r\nt=0 0\r\n" +
		"m=audio " + strconv.Itoa(int(ap.Port())) + " RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
}

var (
	reMedia = regexp.MustCompile(`(?m)^m=audio (\d+) `)
	reConn  = regexp.MustCompile(`(?m)^c=IN IP4 ([0-9.]+)`)
)

func sdpAddr(sdp string) (netip.AddrPort, error) {
	m, c := reMedia.FindStringSubmatch(sdp), reConn.FindStringSubmatch(sdp)
	if m == nil || c == nil {
		return netip.AddrPort{}, fmt.Errorf("no address in SDP %q", sdp)
	}
	port, _ := strconv.Atoi(m[1])
	ip, err := netip.ParseAddr(c[1])
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(ip, uint16(port)), nil
}

func (e *rtpengine) newCall(i int, a, b netip.AddrPort) (netip.AddrPort, netip.AddrPort, error) {
	id := fmt.Sprintf("bench-%s-%d", e.run, i)
	off, err := e.do(map[string]any{"command": "offer", "call-id": id, "from-tag": "a", "sdp": phoneSDP(a)})
	if err != nil {
		return netip.AddrPort{}, netip.AddrPort{}, err
	}
	e.calls = append(e.calls, id)
	toB, err := sdpAddr(fmt.Sprint(off["sdp"])) // the callee sends here
	if err != nil {
		return netip.AddrPort{}, netip.AddrPort{}, err
	}
	ans, err := e.do(map[string]any{"command": "answer", "call-id": id, "from-tag": "a", "to-tag": "b", "sdp": phoneSDP(b)})
	if err != nil {
		return netip.AddrPort{}, netip.AddrPort{}, err
	}
	toA, err := sdpAddr(fmt.Sprint(ans["sdp"])) // the caller sends here
	return toA, toB, err
}

func (e *rtpengine) pid() int { return e.p }

func (e *rtpengine) closeCalls() error {
	var first error
	for _, id := range e.calls {
		if _, err := e.do(map[string]any{"command": "delete", "call-id": id, "from-tag": "a", "delete-delay": 0}); err != nil && first == nil {
			first = err
		}
	}
	e.calls = nil
	return first
}

func (e *rtpengine) stop() { e.conn.Close() }

// bencode writes strings, integers, lists of strings and dictionaries.
func bencode(w *bytes.Buffer, v any) {
	switch v := v.(type) {
	case string:
		fmt.Fprintf(w, "%d:%s", len(v), v)
	case int:
		fmt.Fprintf(w, "i%de", v)
	case []string:
		w.WriteByte('l')
		for _, s := range v {
			bencode(w, s)
		}
		w.WriteByte('e')
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		w.WriteByte('d')
		for _, k := range keys {
			bencode(w, k)
			bencode(w, v[k])
		}
		w.WriteByte('e')
	}
}

// bdecode reads one bencoded value and returns the rest of b.
func bdecode(b []byte) (any, []byte, error) {
	if len(b) == 0 {
		return nil, nil, errors.New("bencode: short input")
	}
	switch {
	case b[0] == 'i':
		e := bytes.IndexByte(b, 'e')
		if e < 0 {
			return nil, nil, errors.New("bencode: bad integer")
		}
		n, err := strconv.ParseInt(string(b[1:e]), 10, 64)
		return n, b[e+1:], err
	case b[0] == 'l':
		var l []any
		b = b[1:]
		for len(b) > 0 && b[0] != 'e' {
			v, rest, err := bdecode(b)
			if err != nil {
				return nil, nil, err
			}
			l, b = append(l, v), rest
		}
		if len(b) == 0 {
			return nil, nil, errors.New("bencode: unterminated list")
		}
		return l, b[1:], nil
	case b[0] == 'd':
		d := map[string]any{}
		b = b[1:]
		for len(b) > 0 && b[0] != 'e' {
			k, rest, err := bdecode(b)
			if err != nil {
				return nil, nil, err
			}
			v, rest, err := bdecode(rest)
			if err != nil {
				return nil, nil, err
			}
			d[fmt.Sprint(k)], b = v, rest
		}
		if len(b) == 0 {
			return nil, nil, errors.New("bencode: unterminated dictionary")
		}
		return d, b[1:], nil
	case b[0] >= '0' && b[0] <= '9':
		c := bytes.IndexByte(b, ':')
		if c < 0 {
			return nil, nil, errors.New("bencode: bad string")
		}
		n, err := strconv.Atoi(string(b[:c]))
		if err != nil || n < 0 || c+1+n > len(b) {
			return nil, nil, errors.New("bencode: bad string length")
		}
		return string(b[c+1 : c+1+n]), b[c+1+n:], nil
	}
	return nil, nil, fmt.Errorf("bencode: unexpected %q", b[0])
}

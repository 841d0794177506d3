package sip

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/switchboard/switchboard/internal/siptest"
)

// logBuffer is a slog destination tests can read while servers write.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// flowRegistrar is the part of a Registrar the connection tracker uses:
// bound lists the flows that hold a binding.
type flowRegistrar struct {
	Registrar
	mu      sync.Mutex
	bound   map[flowKey]bool
	dropped []flowKey
}

func (r *flowRegistrar) HasFlow(transport string, source netip.AddrPort) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bound[flowKey{transport, source}]
}

func (r *flowRegistrar) DropFlow(transport string, source netip.AddrPort) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dropped = append(r.dropped, flowKey{transport, source})
}

func (r *flowRegistrar) bind(k flowKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bound == nil {
		r.bound = map[flowKey]bool{}
	}
	r.bound[k] = true
}

// scriptedListener returns the errors it is given, in turn, then blocks
// for a connection from conns until it is closed.
type scriptedListener struct {
	errs  chan error
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newScriptedListener(errs ...error) *scriptedListener {
	l := &scriptedListener{errs: make(chan error, len(errs)), conns: make(chan net.Conn, 1), done: make(chan struct{})}
	for _, e := range errs {
		l.errs <- e
	}
	return l
}

func (l *scriptedListener) Accept() (net.Conn, error) {
	select {
	case err := <-l.errs:
		return nil, err
	default:
	}
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: net.ErrClosed}
	}
}

func (l *scriptedListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *scriptedListener) Addr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5060}
}

// pipeConn is one end of a net.Pipe with a TCP remote address.
type pipeConn struct {
	net.Conn
	remote *net.TCPAddr
}

func (c *pipeConn) RemoteAddr() net.Addr { return c.remote }

func newPipeConn(t *testing.T, remote string) *pipeConn {
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return &pipeConn{Conn: a, remote: net.TCPAddrFromAddrPort(netip.MustParseAddrPort(remote))}
}

func acceptErr(errno syscall.Errno) error {
	return &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", errno)}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func testTracker(cfg ConnLimits, reg *flowRegistrar, log *slog.Logger) *connTracker {
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = time.Hour
	}
	if cfg.MaxPerSource == 0 {
		cfg.MaxPerSource = 100
	}
	if cfg.Max == 0 {
		cfg.Max = 1000
	}
	return newConnTracker(cfg, reg, log)
}

func TestAcceptRetriesTemporaryErrors(t *testing.T) {
	for _, tc := range []struct {
		name      string
		err       error
		temporary bool
	}{
		{"EMFILE", acceptErr(syscall.EMFILE), true},
		{"ENFILE", acceptErr(syscall.ENFILE), true},
		{"ENOBUFS", acceptErr(syscall.ENOBUFS), true},
		{"ENOMEM", acceptErr(syscall.ENOMEM), true},
		{"ECONNABORTED", acceptErr(syscall.ECONNABORTED), true},
		{"timeout", timeoutErr{}, true},
		{"unknown error", errors.New("something else"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := temporaryAcceptError(tc.err); got != tc.temporary {
				t.Errorf("temporaryAcceptError(%v) = %v, want %v", tc.err, got, tc.temporary)
			}
			var logs logBuffer
			sl := newScriptedListener(tc.err, tc.err, tc.err)
			sl.conns <- newPipeConn(t, "192.0.2.7:4000")
			fl := newFlowListener(sl, "TCP", testTracker(ConnLimits{}, &flowRegistrar{}, logs.logger()), logs.logger())
			defer fl.Close()
			start := time.Now()
			c, err := fl.Accept()
			if err != nil {
				t.Fatalf("Accept: %v, want the connection after three failures", err)
			}
			defer c.Close()
			if got := addrPortOf(c.RemoteAddr()).String(); got != "192.0.2.7:4000" {
				t.Errorf("accepted a connection from %s", got)
			}
			// Backoff 5 + 10 + 20 ms, as net/http's Serve.
			if d := time.Since(start); d < 35*time.Millisecond {
				t.Errorf("three failed accepts retried within %s, want backoff of at least 35ms", d)
			}
			out := logs.String()
			if n := strings.Count(out, "accept failing"); n != 1 {
				t.Errorf("%d 'accept failing' lines for one run of failures, want 1:\n%s", n, out)
			}
			if !strings.Contains(out, "accept recovered") || !strings.Contains(out, "failures=3") {
				t.Errorf("no 'accept recovered ... failures=3' line:\n%s", out)
			}
		})
	}
}

func TestAcceptBackoffDoublesToOneSecond(t *testing.T) {
	var d time.Duration
	var got []time.Duration
	for range 10 {
		d = acceptBackoff(d)
		got = append(got, d)
	}
	want := []time.Duration{5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("backoff %v, want %v ms", got, want)
		}
	}
}

func TestAcceptReturnsErrClosed(t *testing.T) {
	var logs logBuffer
	sl := newScriptedListener()
	fl := newFlowListener(sl, "TCP", testTracker(ConnLimits{}, &flowRegistrar{}, logs.logger()), logs.logger())
	sl.Close()
	if _, err := fl.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept on a closed listener: %v, want net.ErrClosed", err)
	}

	// Closing the listener ends an Accept that is backing off.
	errs := make([]error, 50)
	for i := range errs {
		errs[i] = acceptErr(syscall.EMFILE)
	}
	sl = newScriptedListener(errs...)
	fl = newFlowListener(sl, "TCP", testTracker(ConnLimits{}, &flowRegistrar{}, logs.logger()), logs.logger())
	done := make(chan error, 1)
	go func() {
		_, err := fl.Accept()
		done <- err
	}()
	eventually(t, 5*time.Second, "accept backing off", func() bool { return strings.Contains(logs.String(), "accept failing") })
	fl.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept still backing off 5s after Close")
	}
}

// streamRig is a flowListener on a real TCP listener of 127.0.0.1 with an
// accept loop that hands over what Accept returns.
type streamRig struct {
	t        *testing.T
	ln       *flowListener
	tracker  *connTracker
	reg      *flowRegistrar
	logs     *logBuffer
	accepted chan net.Conn
}

func newStreamRig(t *testing.T, cfg ConnLimits) *streamRig {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &streamRig{t: t, reg: &flowRegistrar{}, logs: &logBuffer{}, accepted: make(chan net.Conn, 16)}
	r.tracker = testTracker(cfg, r.reg, r.logs.logger())
	r.ln = newFlowListener(ln, "TCP", r.tracker, r.logs.logger())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := r.ln.Accept()
			if err != nil {
				return
			}
			r.accepted <- c
		}
	}()
	t.Cleanup(func() {
		r.ln.Close()
		<-done
		close(r.accepted)
		for c := range r.accepted {
			c.Close()
		}
	})
	return r
}

// dial connects from the loopback address from (127.0.0.x).
func (r *streamRig) dial(from string) net.Conn {
	r.t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", r.ln.Addr().String())
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { c.Close() })
	return c
}

// dialRefused connects from the loopback address from and fails unless the
// switch closes the connection at once. (The reset of a refused connection
// can beat the dialer's own check of the handshake on loopback.)
func (r *streamRig) dialRefused(from, what string) {
	r.t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", r.ln.Addr().String())
	if errors.Is(err, syscall.ECONNRESET) {
		return
	}
	if err != nil {
		r.t.Fatal(err)
	}
	defer c.Close()
	wantClosed(r.t, c, 5*time.Second, what)
}

// accept returns the next connection Accept admitted.
func (r *streamRig) accept() net.Conn {
	r.t.Helper()
	select {
	case c := <-r.accepted:
		return c
	case <-time.After(5 * time.Second):
		r.t.Fatal("no connection accepted within 5s")
		return nil
	}
}

// wantClosed fails unless the switch closes c (the client end) within d.
func wantClosed(t *testing.T, c net.Conn, d time.Duration, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("%s: still open after %s", what, d)
	}
	if err == nil {
		t.Fatalf("%s: read data, want the connection closed", what)
	}
}

// wantOpen fails if c (the client end) has been closed by the switch.
func wantOpen(t *testing.T, c net.Conn, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("%s: want it open, read returned %v", what, err)
	}
	c.SetReadDeadline(time.Time{})
}

func TestConnCapPerSource(t *testing.T) {
	r := newStreamRig(t, ConnLimits{MaxPerSource: 2})
	r.dial("127.0.0.1")
	first := r.accept()
	r.dial("127.0.0.1")
	r.accept()
	r.dialRefused("127.0.0.1", "third connection from 127.0.0.1 (max_per_source 2)")
	// Other sources are not limited by it: the next connection accepted
	// is theirs, not the refused one.
	r.dial("127.0.0.2")
	if got := addrPortOf(r.accept().RemoteAddr()).Addr().String(); got != "127.0.0.2" {
		t.Fatalf("accepted a connection from %s, want 127.0.0.2", got)
	}
	if !strings.Contains(r.logs.String(), "too many connections from this source") {
		t.Errorf("refusal not logged:\n%s", r.logs.String())
	}
	// A connection of 127.0.0.1 that closes makes room for another.
	first.Close()
	eventually(t, 5*time.Second, "closed connection released", func() bool { return r.tracker.open() == 2 })
	r.dial("127.0.0.1")
	if got := addrPortOf(r.accept().RemoteAddr()).Addr().String(); got != "127.0.0.1" {
		t.Fatalf("accepted a connection from %s, want 127.0.0.1", got)
	}
}

func TestConnCapGlobal(t *testing.T) {
	r := newStreamRig(t, ConnLimits{Max: 2})
	r.dial("127.0.0.1")
	first := r.accept()
	r.dial("127.0.0.2")
	r.accept()
	for i, from := range []string{"127.0.0.3", "127.0.0.4", "127.0.0.5"} {
		r.dialRefused(from, "connection beyond max 2")
		if i == 0 && !strings.Contains(r.logs.String(), "connection refused: too many connections") {
			t.Errorf("refusal not logged:\n%s", r.logs.String())
		}
	}
	// Refusals are logged once per 10s, not per connection.
	if n := strings.Count(r.logs.String(), "connection refused"); n != 1 {
		t.Errorf("%d refusal lines for 3 refusals within 10s, want 1:\n%s", n, r.logs.String())
	}
	first.Close()
	eventually(t, 5*time.Second, "closed connection released", func() bool { return r.tracker.open() == 1 })
	r.dial("127.0.0.3")
	if got := addrPortOf(r.accept().RemoteAddr()).Addr().String(); got != "127.0.0.3" {
		t.Fatalf("accepted a connection from %s, want 127.0.0.3", got)
	}
	if n := r.tracker.open(); n != 2 {
		t.Fatalf("%d connections tracked, want 2", n)
	}
}

func TestIdleTimeoutClosesUnboundConnections(t *testing.T) {
	const idle = 200 * time.Millisecond
	r := newStreamRig(t, ConnLimits{IdleTimeout: idle})
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); r.tracker.run(stop) }()
	defer func() { close(stop); <-done }()

	// bound sent a request and holds a binding, then says nothing.
	bound := r.dial("127.0.0.1")
	bk := flowKey{"TCP", addrPortOf(bound.LocalAddr())}
	r.accept()
	r.tracker.seen(bk)
	r.reg.bind(bk)
	// silent never sends a request; trickle sends a byte every 20ms but
	// never a whole request (slowloris); chatty sent a request and then
	// nothing, with no binding.
	start := time.Now()
	silent := r.dial("127.0.0.1")
	r.accept()
	trickle := r.dial("127.0.0.1")
	r.accept()
	chatty := r.dial("127.0.0.1")
	r.accept()
	r.tracker.seen(flowKey{"TCP", addrPortOf(chatty.LocalAddr())})

	stopTrickle := make(chan struct{})
	trickled := make(chan struct{})
	go func() {
		defer close(trickled)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopTrickle:
				return
			case <-tick.C:
				if _, err := trickle.Write([]byte("O")); err != nil {
					return
				}
			}
		}
	}()
	defer func() { close(stopTrickle); <-trickled }()

	wantClosed(t, silent, 5*time.Second, "connection that sent nothing")
	wantClosed(t, trickle, 5*time.Second, "connection trickling bytes without a request")
	wantClosed(t, chatty, 5*time.Second, "connection idle after a request, no binding")
	if d := time.Since(start); d < idle {
		t.Errorf("connections closed within %s of being opened, before the idle timeout %s", d, idle)
	}
	// bound has been as idle as chatty since before it: the sweep that
	// closed chatty kept it.
	wantOpen(t, bound, "connection holding a binding")
	if n := r.tracker.open(); n != 1 {
		t.Errorf("%d connections tracked, want 1 (the bound one)", n)
	}
	if !strings.Contains(r.logs.String(), "idle connections closed") {
		t.Errorf("idle closes not logged:\n%s", r.logs.String())
	}
	r.reg.mu.Lock()
	dropped := len(r.reg.dropped)
	r.reg.mu.Unlock()
	if dropped != 3 {
		t.Errorf("DropFlow called for %d closed connections, want 3", dropped)
	}
}

func TestMaxConnsForFDLimit(t *testing.T) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	want := max(int(rl.Cur)-fdReserve, 64)
	if got := maxConnsForFDLimit(); got != want {
		t.Errorf("maxConnsForFDLimit() = %d with soft limit %d, want %d", got, rl.Cur, want)
	}
	var c ConnLimits
	c.setDefaults()
	if c.IdleTimeout != 60*time.Second || c.MaxPerSource != 100 || c.Max != want {
		t.Errorf("defaults %+v", c)
	}
	if err := (&ConnLimits{IdleTimeout: -1}).validate(); err == nil {
		t.Error("negative idle timeout accepted")
	}
}

// TestIdleConnServer runs the idle timeout in a switch: over TCP and
// WebSocket a connection that never sends a request is closed, and a phone
// that registered over its connection keeps it.
func TestIdleConnServer(t *testing.T) {
	const idle = 300 * time.Millisecond
	sw := startSwitch(t, func(c *Config) { c.Connections.IdleTimeout = idle })
	url := sw.serveWS()
	tcpPhone := sw.phone("bob", "tcp", "")
	tcpPhone.MustRegister()
	wsPhone := siptest.NewPhone(t, siptest.Config{Transport: "ws", Server: url, User: "carol", Password: passwords["carol"], Trace: sw.tr})
	wantStatus(t, wsPhone.DoRegister(3600), 200)

	silentTCP, err := net.Dial("tcp", sw.srv.Addrs()["tcp"])
	if err != nil {
		t.Fatal(err)
	}
	defer silentTCP.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	silentWS, _, _, err := ws.Dialer{Protocols: []string{"sip"}}.Dial(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer silentWS.Close()

	wantClosed(t, silentTCP, 5*time.Second, "TCP connection that sent no request")
	wantClosed(t, silentWS, 5*time.Second, "WebSocket that sent no request")
	// Both phones have been idle since before the silent connections were
	// opened, and are still there: OPTIONS over their connections works.
	for _, p := range []*siptest.Phone{tcpPhone, wsPhone} {
		m := p.Request("OPTIONS", "sip:"+testDomain)
		p.Send(m)
		wantStatus(t, p.WaitFinal(m), 200)
	}
	if n := len(sw.reg.Location().Lookup("bob")) + len(sw.reg.Location().Lookup("carol")); n != 2 {
		t.Errorf("%d bindings left, want bob's and carol's", n)
	}
}

// TestConnCapWebSocket checks that the per-source cap covers WebSocket
// connections handed over by the HTTP server.
func TestConnCapWebSocket(t *testing.T) {
	sw := startSwitch(t, func(c *Config) { c.Connections.MaxPerSource = 1 })
	url := sw.serveWS()
	p := siptest.NewPhone(t, siptest.Config{Transport: "ws", Server: url, User: "carol", Password: passwords["carol"], Trace: sw.tr})
	wantStatus(t, p.DoRegister(3600), 200)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// The connection is closed before sipgo upgrades it: no 101.
	if c, _, _, err := (ws.Dialer{Protocols: []string{"sip"}}).Dial(ctx, url); err == nil {
		c.Close()
		t.Fatal("second WebSocket from one source upgraded, want it closed (max_per_source 1)")
	}
	if !strings.Contains(sw.tr.String(), "too many connections from this source") {
		t.Errorf("WebSocket refusal not logged")
	}
	m := p.Request("OPTIONS", "sip:"+testDomain)
	p.Send(m)
	wantStatus(t, p.WaitFinal(m), 200)
}

// TestIdleConnServerKeepsActive checks that a connection carrying requests
// (with no binding) is not closed while it stays busy: the requests the
// switch handles mark it as having sent whole messages, and its traffic
// keeps it from being idle.
func TestIdleConnServerKeepsActive(t *testing.T) {
	const idle = 200 * time.Millisecond
	sw := startSwitch(t, func(c *Config) { c.Connections.IdleTimeout = idle })
	p := sw.phone("dave", "tcp", "")
	start := time.Now()
	tick := time.NewTicker(idle / 4)
	defer tick.Stop()
	for n := 0; time.Since(start) < 3*idle && n < 100; n++ {
		m := p.Request("OPTIONS", "sip:"+testDomain)
		p.Send(m)
		wantStatus(t, p.WaitFinal(m), 200)
		<-tick.C
	}
	if n := sw.srv.conns.open(); n != 1 {
		t.Fatalf("%d connections open, want the busy one", n)
	}
}

// selfSigned returns a TLS config with a certificate for 127.0.0.1.
func selfSigned(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// TestIdleConnServerTLS checks that TLS connections (the TLS listener wraps
// the same flowListener) answer, and that one that completed its handshake
// but sent no request is closed after the idle timeout.
func TestIdleConnServerTLS(t *testing.T) {
	const idle = 300 * time.Millisecond
	sw := startSwitch(t, func(c *Config) {
		c.Connections.IdleTimeout = idle
		c.TLS = selfSigned(t)
		c.Listen = append(c.Listen, Listen{Transport: "tls", Addr: "127.0.0.1:0"})
	})
	dial := func() *tls.Conn {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", sw.srv.Addrs()["tls"], &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	asked := dial()
	asked.SetDeadline(time.Now().Add(5 * time.Second))
	opts := "OPTIONS sip:" + testDomain + " SIP/2.0\r\nVia: SIP/2.0/TLS " + asked.LocalAddr().String() + ";branch=" + siptest.NewBranch() +
		"\r\nMax-Forwards: 70\r\nFrom: <sip:probe@" + testDomain + ">;tag=1\r\nTo: <sip:" + testDomain + ">\r\nCall-ID: " + siptest.Rand(10) +
		"\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
	if _, err := asked.Write([]byte(opts)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	if n, err := asked.Read(buf); err != nil || !strings.HasPrefix(string(buf[:n]), "SIP/2.0 200") {
		t.Fatalf("OPTIONS over TLS: %q, %v", buf[:n], err)
	}
	silent := dial()
	wantClosed(t, silent, 5*time.Second, "TLS connection that sent no request")
}

// TestConnDualStackListener checks flows on a listener bound to 0.0.0.0,
// which Go opens dual-stack: IPv4 peers come as IPv4-mapped IPv6 addresses
// there, and must still match the bindings made from their requests. A
// registered phone keeps its connection through idle sweeps, and its
// binding goes when the connection closes.
func TestConnDualStackListener(t *testing.T) {
	const idle = 200 * time.Millisecond
	sw := startSwitch(t, func(c *Config) {
		c.Connections.IdleTimeout = idle
		c.Listen = []Listen{{Transport: "udp", Addr: "127.0.0.1:0"}, {Transport: "tcp", Addr: "0.0.0.0:0"}}
	})
	_, port, _ := net.SplitHostPort(sw.srv.Addrs()["tcp"])
	bob := siptest.NewPhone(t, siptest.Config{Transport: "tcp", Server: "127.0.0.1:" + port, User: "bob", Password: passwords["bob"], Trace: sw.tr})
	bob.MustRegister()
	silent, err := net.Dial("tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	wantClosed(t, silent, 5*time.Second, "connection that sent no request")
	m := bob.Request("OPTIONS", "sip:"+testDomain)
	bob.Send(m)
	wantStatus(t, bob.WaitFinal(m), 200)
	bob.Close()
	eventually(t, 5*time.Second, "binding of the closed connection removed", func() bool { return len(sw.reg.Location().Lookup("bob")) == 0 })
}

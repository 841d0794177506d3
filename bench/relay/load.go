package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

const (
	packetSize = 172 // 12-byte RTP header + 160 bytes of G.711 at 20 ms
	period     = 20 * time.Millisecond
	slots      = 20 // the period is cut into 1 ms slots; call i sends in slot i%20
	magic      = 0x5b0a
)

// backend is the relay under test.
type backend interface {
	// newCall sets up call i between caller address a and callee address
	// b, and returns where the caller sends (toFromA) and where the callee
	// sends (toFromB).
	newCall(i int, a, b netip.AddrPort) (toFromA, toFromB netip.AddrPort, err error)
	// pid is the relay process, 0 if none.
	pid() int
	// closeCalls tears down all calls.
	closeCalls() error
	// stop ends the backend (and the process it started).
	stop()
}

type loadConfig struct {
	duration, warmup time.Duration
	sockets          int
	poll             bool
	quantiles        bool
	webrtc           bool // side A is a WebRTC browser (webrtc.go)
	rtc              rtcConfig
}

type result struct {
	backend    string
	streams    int
	pps        float64
	cpuPerPkt  float64 // µs of relay CPU per relayed packet
	cpuPer100  float64 // % of one core per 100 calls
	p50, p99   time.Duration
	added      time.Duration // p99 minus the direct path's p99 at the same load (WebRTC table)
	setupCPU   float64       // ms of relay CPU per call set up (signalling, ICE, DTLS)
	loss       float64
	memPerCall float64 // bytes of RSS per call
	genCPU     float64 // % of one core used by the generator
}

func load(args []string) error {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	kinds := fs.String("backend", "switchboard", "switchboard | rtpengine | direct (phones send straight to each other); a comma-separated list runs each at every -n")
	streams := fs.String("n", "100,300,600", "comma-separated numbers of concurrent calls, one run each")
	duration := fs.Duration("duration", 20*time.Second, "sending time per run")
	warmup := fs.Duration("warmup", 3*time.Second, "time before the measured window")
	sockets := fs.Int("sockets", 4, "generator sockets per side (calls share them)")
	poll := fs.Bool("poll", true, "poll the sockets from one busy thread (false: a blocked reader goroutine per socket)")
	serverCPU := fs.String("server-cpu", "0", "CPU to pin the switchboard relay to with taskset (empty: no pinning)")
	workers := fs.Int("workers", 0, "switchboard packet loops (0: GOMAXPROCS of the pinned process)")
	relayBin := fs.String("relay-bin", "", "binary to run `serve` from (default: this one)")
	ngAddr := fs.String("ng", "127.0.0.1:2223", "rtpengine ng control address")
	ngPID := fs.Int("rtpengine-pid", 0, "rtpengine process id, for its CPU time and memory")
	header := fs.Bool("header", true, "print the table header")
	quantiles := fs.Bool("quantiles", false, "print more latency quantiles (and the WebRTC packet counts) on stderr")
	webrtc := fs.Bool("webrtc", false, "side A is a WebRTC browser (ICE, DTLS-SRTP) and the relay converts to plain RTP; "+
		"direct runs plain RTP as the baseline of the added latency")
	profile := fs.String("srtp", "aes128-cm-sha1-80", "SRTP protection profile the browser offers: aes128-cm-sha1-80 | aead-aes128-gcm")
	parallel := fs.Int("setup-parallel", 16, "WebRTC calls set up (ICE and DTLS) at once")
	consent := fs.Duration("consent", 5*time.Second, "interval of each browser's ICE consent checks (0: none)")
	iceTimeout := fs.Duration("ice-timeout", 20*time.Second, "time a call has for ICE and the DTLS handshake")
	fs.Parse(args)

	if *duration <= *warmup+time.Second {
		return errors.New("duration must exceed warmup by more than a second")
	}
	var ns []int
	for _, f := range strings.Split(*streams, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("bad -n %q", f)
		}
		ns = append(ns, n)
	}
	cfg := loadConfig{duration: *duration, warmup: *warmup, sockets: *sockets, poll: *poll, quantiles: *quantiles}
	if *webrtc {
		p, ok := srtpProfiles[*profile]
		if !ok {
			return fmt.Errorf("unknown -srtp %q", *profile)
		}
		if !*poll {
			return errors.New("-webrtc needs -poll")
		}
		cfg.rtc = rtcConfig{profile: p, parallel: *parallel, consent: *consent, timeout: *iceTimeout}
	}
	if *header {
		if *webrtc {
			printHeaderRTC()
		} else {
			printHeader()
		}
	}
	for _, n := range ns {
		var direct time.Duration // the direct path's p99 at this n
		for _, kind := range strings.Split(*kinds, ",") {
			var be backend
			var err error
			switch kind {
			case "switchboard":
				bin := *relayBin
				if bin == "" {
					bin, _ = os.Executable()
				}
				be, err = startSwitchboard(bin, *serverCPU, *workers)
			case "rtpengine":
				be, err = dialRtpengine(*ngAddr, *ngPID)
			case "direct":
				be = directBackend{}
			default:
				return fmt.Errorf("unknown backend %q", kind)
			}
			if err != nil {
				return err
			}
			c := cfg
			c.webrtc = *webrtc && kind != "direct"
			res, err := run(be, kind, n, c)
			be.stop()
			if err != nil {
				return fmt.Errorf("%s with %d calls: %w", kind, n, err)
			}
			if !*webrtc {
				printRow(res)
				continue
			}
			if kind == "direct" {
				direct = res.p99
			} else if direct != 0 {
				res.added = res.p99 - direct
			}
			printRowRTC(res)
		}
	}
	return nil
}

func printHeaderRTC() {
	fmt.Println("| relay | calls | pps relayed | CPU µs/packet | loss | latency p50 | latency p99 | p99 added | setup CPU per call | memory per call | generator CPU |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
}

func printRowRTC(r result) {
	name, cpu, added, setup, mem := r.backend+" WebRTC⇄RTP", "–", "–", "–", "–"
	if r.backend == "direct" {
		name = "direct (plain RTP)"
	}
	if r.cpuPerPkt != 0 {
		cpu = fmt.Sprintf("%.2f", r.cpuPerPkt)
		setup = fmt.Sprintf("%.2f ms", r.setupCPU)
	}
	if r.added != 0 {
		added = fmtDur(r.added)
	}
	if r.memPerCall != 0 {
		mem = fmt.Sprintf("%.1f KiB", r.memPerCall/1024)
	}
	fmt.Printf("| %s | %d | %.0f | %s | %.3f%% | %s | %s | %s | %s | %s | %.0f%% |\n",
		name, r.streams, r.pps, cpu, 100*r.loss, fmtDur(r.p50), fmtDur(r.p99), added, setup, mem, r.genCPU)
}

func printHeader() {
	fmt.Println("| relay | streams | pps relayed | CPU µs/packet | CPU per 100 calls | latency p50 | latency p99 | loss | memory per call | generator CPU |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
}

func printRow(r result) {
	cpu := func(v float64, f string) string {
		if r.cpuPerPkt == 0 {
			return "–"
		}
		return fmt.Sprintf(f, v)
	}
	mem := "–"
	if r.memPerCall != 0 {
		mem = fmt.Sprintf("%.1f KiB", r.memPerCall/1024)
	}
	fmt.Printf("| %s | %d | %.0f | %s | %s | %s | %s | %.3f%% | %s | %.0f%% |\n",
		r.backend, r.streams, r.pps, cpu(r.cpuPerPkt, "%.2f"), cpu(r.cpuPer100, "%.1f%% of a core"),
		fmtDur(r.p50), fmtDur(r.p99), 100*r.loss, mem, r.genCPU)
}

func fmtDur(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/1e6) }

// callState is one call's two phones as the generator sees them.
type callState struct {
	sockA, sockB int
	dstA, dstB   *net.UDPAddr // where A's and B's packets go
	pktA, pktB   []byte
	bufA, bufB   [][]byte // {pktA}, {pktB}: built once, not per packet
}

// receiver is one generator socket's reader, with its own counters.
type receiver struct {
	conn     *net.UDPConn
	hist     histogram
	inWindow uint64 // packets sent in the window and received
	total    uint64
	bad      uint64
}

func run(be backend, name string, n int, cfg loadConfig) (result, error) {
	res := result{backend: name, streams: n}
	rssBefore := rss(be.pid())

	open := func(ip string) ([]*net.UDPConn, error) {
		var cs []*net.UDPConn
		for i := 0; i < cfg.sockets; i++ {
			c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
			if err != nil {
				return nil, err
			}
			c.SetReadBuffer(16 << 20)
			c.SetWriteBuffer(16 << 20)
			cs = append(cs, c)
		}
		return cs, nil
	}
	as, err := open("127.0.0.2")
	if err != nil {
		return res, err
	}
	bs, err := open("127.0.0.3")
	if err != nil {
		return res, err
	}
	all := append(append([]*net.UDPConn{}, as...), bs...)
	defer func() {
		for _, c := range all {
			c.Close()
		}
	}()

	calls := make([]callState, n)
	for i := range calls {
		c := &calls[i]
		c.sockA, c.sockB = i%cfg.sockets, i%cfg.sockets
	}
	var rtc []*rtcCall
	if cfg.webrtc {
		rb, ok := be.(rtcBackend)
		if !ok {
			return res, fmt.Errorf("backend %s has no WebRTC mode", name)
		}
		cpu := cpuSeconds(be.pid())
		rtc, err = setupRTC(rb, calls, as, bs, cfg)
		if err != nil {
			be.closeCalls()
			return res, err
		}
		res.setupCPU = (cpuSeconds(be.pid()) - cpu) / float64(n) * 1e3
		defer closeRTC(rtc) // after closeCalls below
	} else {
		for i := range calls {
			c := &calls[i]
			a := as[c.sockA].LocalAddr().(*net.UDPAddr).AddrPort()
			b := bs[c.sockB].LocalAddr().(*net.UDPAddr).AddrPort()
			toA, toB, err := be.newCall(i, a, b)
			if err != nil {
				return res, fmt.Errorf("call %d: %w", i, err)
			}
			c.dstA, c.dstB = net.UDPAddrFromAddrPort(toA), net.UDPAddrFromAddrPort(toB)
			c.pktA, c.pktB = newPacket(i, 0), newPacket(i, 1)
			c.bufA, c.bufB = [][]byte{c.pktA}, [][]byte{c.pktB}
		}
	}
	defer be.closeCalls()

	t := &traffic{
		be: be, cfg: cfg, calls: calls, conns: all, rtc: rtc,
		winStart: int64(cfg.warmup), winEnd: int64(cfg.duration),
	}
	var err2 error
	if cfg.poll {
		err2 = t.runPoll()
	} else {
		err2 = t.runBlocking()
	}
	if err2 != nil {
		return res, err2
	}
	recvs, sentWindow, memAfter := t.recvs, t.sentWindow, t.memAfter
	cpu0, cpu1, gen0, gen1 := t.cpu0, t.cpu1, t.gen0, t.gen1

	var h histogram
	var got uint64
	for _, rc := range recvs {
		h.merge(&rc.hist)
		got += rc.inWindow
	}
	window := (cfg.duration - cfg.warmup).Seconds()
	res.pps = float64(got) / window
	if be.pid() != 0 && got > 0 {
		cpu := cpu1 - cpu0
		res.cpuPerPkt = cpu / float64(got) * 1e6
		res.cpuPer100 = cpu / window * 100 * 100 / float64(n)
	}
	res.genCPU = (gen1 - gen0).Seconds() / window * 100
	res.p50, res.p99 = h.quantile(0.50), h.quantile(0.99)
	if cfg.quantiles {
		fmt.Fprintf(os.Stderr, "quantiles p90 %v p95 %v p98 %v p99 %v p99.9 %v\n",
			h.quantile(0.90), h.quantile(0.95), h.quantile(0.98), h.quantile(0.99), h.quantile(0.999))
		var bad uint64
		for _, rc := range recvs {
			bad += rc.bad
		}
		if cfg.webrtc {
			fmt.Fprintf(os.Stderr, "%s %d calls: bad %d, at the browsers: STUN %d, SRTCP %d, other %d, undecryptable SRTP %d\n",
				name, n, bad, t.rtcRx.stun, t.rtcRx.rtcp, t.rtcRx.other, t.rtcRx.failed)
		}
	}
	if sentWindow > 0 {
		res.loss = 1 - float64(got)/float64(sentWindow)
		if res.loss < 0 {
			res.loss = 0
		}
	}
	if be.pid() != 0 && rssBefore > 0 && memAfter > 0 {
		res.memPerCall = float64(memAfter-rssBefore) / float64(n)
	}
	return res, nil
}

// Payload layout after the RTP header: magic (2), direction (1), pad (1),
// call index (4), send time in ns since the run started (8).
func newPacket(call, dir int) []byte {
	b := make([]byte, packetSize)
	b[0] = 0x80
	b[1] = 0 // PCMU
	binary.BigEndian.PutUint32(b[8:], uint32(call*2+dir))
	binary.BigEndian.PutUint16(b[12:], magic)
	b[14] = byte(dir)
	binary.BigEndian.PutUint32(b[16:], uint32(call))
	return b
}

func stamp(b []byte, seq uint16, now int64) {
	binary.BigEndian.PutUint16(b[2:], seq)
	binary.BigEndian.PutUint32(b[4:], uint32(seq)*160)
	binary.BigEndian.PutUint64(b[20:], uint64(now))
}

func (rc *receiver) run(start time.Time, winStart, winEnd int64, stopping *atomic.Bool) {
	pc := ipv4.NewPacketConn(rc.conn)
	msgs := make([]ipv4.Message, 64)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, 2048)}
	}
	for {
		k, err := pc.ReadBatch(msgs, 0)
		if err != nil {
			if stopping.Load() {
				return
			}
			continue
		}
		now := int64(time.Since(start))
		for _, m := range msgs[:k] {
			rc.account(m.Buffers[0][:m.N], now, winStart, winEnd)
		}
	}
}

// account counts one received packet.
func (rc *receiver) account(b []byte, now, winStart, winEnd int64) {
	if len(b) != packetSize || binary.BigEndian.Uint16(b[12:]) != magic {
		rc.bad++
		return
	}
	sent := int64(binary.BigEndian.Uint64(b[20:]))
	rc.total++
	if sent >= winStart && sent < winEnd {
		rc.inWindow++
		rc.hist.add(time.Duration(now - sent))
	}
}

// histogram counts latencies in 5 µs buckets up to 200 ms.
type histogram struct {
	buckets [40001]uint64
	n       uint64
}

const bucketWidth = 5 * time.Microsecond

func (h *histogram) add(d time.Duration) {
	i := int(d / bucketWidth)
	if i < 0 {
		i = 0
	}
	if i >= len(h.buckets) {
		i = len(h.buckets) - 1
	}
	h.buckets[i]++
	h.n++
}

func (h *histogram) merge(o *histogram) {
	for i, v := range o.buckets {
		h.buckets[i] += v
	}
	h.n += o.n
}

func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	want := uint64(q * float64(h.n))
	var sum uint64
	for i, v := range h.buckets {
		sum += v
		if sum > want {
			return time.Duration(i)*bucketWidth + bucketWidth/2
		}
	}
	return time.Duration(len(h.buckets)) * bucketWidth
}

// cpuSeconds returns the user+system CPU time of a process, from
// /proc/PID/stat (fields 14 and 15, in clock ticks of 1/100 s).
func cpuSeconds(pid int) float64 {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	// The command name (field 2) may hold spaces: count from after it.
	s = s[strings.LastIndexByte(s, ')')+2:]
	f := strings.Fields(s)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100
}

// rss returns the resident set of a process in bytes, from /proc/PID/status.
func rss(pid int) int64 {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// directBackend has the phones send straight to each other: the baseline
// latency of the generator and loopback without a relay.
type directBackend struct{}

func (directBackend) newCall(_ int, a, b netip.AddrPort) (netip.AddrPort, netip.AddrPort, error) {
	return b, a, nil
}
func (directBackend) pid() int          { return 0 }
func (directBackend) closeCalls() error { return nil }
func (directBackend) stop()             {}

// traffic sends and receives the calls' packets.
type traffic struct {
	be       backend
	cfg      loadConfig
	calls    []callState
	conns    []*net.UDPConn // caller sockets, then callee sockets
	rtc      []*rtcCall     // WebRTC mode: the browsers (side A) of the calls
	winStart int64
	winEnd   int64
	rtcRx    rtcReceive

	start      time.Time
	recvs      []*receiver
	batches    [][]ipv4.Message
	batchCalls [][]int32 // WebRTC mode: the calls of the browsers' batches
	pcs        []*ipv4.PacketConn
	seq        uint16
	sentWindow uint64
	cpu0, cpu1 float64
	gen0, gen1 time.Duration
	memAfter   int64
}

func (t *traffic) init() {
	t.start = time.Now()
	t.recvs = make([]*receiver, len(t.conns))
	t.batches = make([][]ipv4.Message, len(t.conns))
	t.batchCalls = make([][]int32, len(t.conns))
	t.pcs = make([]*ipv4.PacketConn, len(t.conns))
	for i, c := range t.conns {
		t.recvs[i] = &receiver{conn: c}
		t.pcs[i] = ipv4.NewPacketConn(c)
	}
	if t.rtc != nil {
		t.initRTC()
	}
}

// tick sends the packets of millisecond slot `tick`, batched per socket.
// It reports false once the sending time is over.
func (t *traffic) tick(tick int) (bool, error) {
	at := time.Duration(tick) * time.Millisecond
	if at >= t.cfg.duration {
		t.cpu1, t.gen1 = cpuSeconds(t.be.pid()), selfCPU()
		return false, nil
	}
	if at == t.cfg.warmup {
		t.cpu0, t.gen0 = cpuSeconds(t.be.pid()), selfCPU()
	}
	slot := tick % slots
	if slot == 0 {
		t.seq++
	}
	for i := range t.batches {
		t.batches[i] = t.batches[i][:0]
		t.batchCalls[i] = t.batchCalls[i][:0]
	}
	k := t.cfg.sockets
	for i := slot; i < len(t.calls); i += slots {
		c := &t.calls[i]
		if t.rtc != nil {
			c.bufA[0] = t.rtc[i].packet(int(t.seq) - 1) // sequence number t.seq
			t.batchCalls[c.sockA] = append(t.batchCalls[c.sockA], int32(i))
		}
		t.batches[c.sockA] = append(t.batches[c.sockA], ipv4.Message{Buffers: c.bufA, Addr: c.dstA})
		t.batches[k+c.sockB] = append(t.batches[k+c.sockB], ipv4.Message{Buffers: c.bufB, Addr: c.dstB})
	}
	if t.rtc != nil {
		t.consent(tick)
	}
	for si, msgs := range t.batches {
		if len(msgs) == 0 {
			continue
		}
		now := int64(time.Since(t.start))
		if t.rtc != nil && si < k {
			// Pre-encrypted: the send time goes in the table, not the payload.
			for _, ci := range t.batchCalls[si] {
				t.rtc[ci].sent[t.seq&sentMask] = now
			}
		} else {
			for _, m := range msgs {
				stamp(m.Buffers[0], t.seq, now)
			}
		}
		for len(msgs) > 0 {
			n, err := t.pcs[si].WriteBatch(msgs, 0)
			if err != nil {
				return false, fmt.Errorf("send: %w", err)
			}
			msgs = msgs[n:]
		}
		if now >= t.winStart && now < t.winEnd {
			t.sentWindow += uint64(len(t.batches[si]))
		}
	}
	return true, nil
}

// runBlocking has a goroutine per socket block in ReadBatch, and a sender
// that sleeps between slots. Each arriving packet may wake a reader: on a
// VM that wake-up (an inter-processor interrupt) is paid by the relay's send.
func (t *traffic) runBlocking() error {
	t.init()
	var stopping atomic.Bool
	var wg sync.WaitGroup
	for _, rc := range t.recvs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rc.run(t.start, t.winStart, t.winEnd, &stopping)
		}()
	}
	var err error
	for tick := 0; ; tick++ {
		if d := time.Duration(tick)*time.Millisecond - time.Since(t.start); d > 0 {
			time.Sleep(d)
		}
		var more bool
		if more, err = t.tick(tick); !more {
			break
		}
	}
	// Let the last packets arrive, then stop the readers.
	time.Sleep(500 * time.Millisecond)
	t.memAfter = rss(t.be.pid())
	stopping.Store(true)
	for _, c := range t.conns {
		c.SetReadDeadline(time.Now())
	}
	wg.Wait()
	return err
}

// runPoll sends and receives from one goroutine on a locked thread that
// never sleeps: it polls every socket with non-blocking recvmmsg between
// slots. Nothing waits on the sockets, so the relay's sends wake no thread
// (as when it sends out of a NIC), and a packet's latency is measured within
// one polling round. It keeps the generator's core busy for the run.
func (t *traffic) runPoll() error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	t.init()
	fds := make([]int, len(t.conns))
	for i, c := range t.conns {
		rc, err := c.SyscallConn()
		if err != nil {
			return err
		}
		rc.Control(func(fd uintptr) { fds[i] = int(fd) })
	}
	var rx rxBatch
	rx.init()
	tick := 0
	sending := true
	var drainUntil time.Duration
	for {
		el := time.Since(t.start)
		if sending && el >= time.Duration(tick)*time.Millisecond {
			more, err := t.tick(tick)
			if err != nil {
				return err
			}
			tick++
			if !more {
				sending = false
				drainUntil = el + 500*time.Millisecond
			}
		}
		if !sending && el >= drainUntil {
			break
		}
		for i, fd := range fds {
			n := rx.recv(fd)
			if n == 0 {
				continue
			}
			now := int64(time.Since(t.start))
			rc := t.recvs[i]
			switch {
			case t.rtc == nil:
				for j := 0; j < n; j++ {
					rc.account(rx.packet(j), now, t.winStart, t.winEnd)
				}
			case i < t.cfg.sockets: // a browser socket
				for j := 0; j < n; j++ {
					t.accountBrowser(rc, i, rx.packet(j), rx.from(j), now)
				}
			default: // a phone socket
				for j := 0; j < n; j++ {
					t.accountPhone(rc, rx.packet(j), now)
				}
			}
		}
	}
	t.memAfter = rss(t.be.pid())
	return nil
}

// rxBatch is a reusable recvmmsg batch.
type rxBatch struct {
	hdrs  [64]mmsghdr
	iovs  [64]unix.Iovec
	bufs  [64][2048]byte
	names [64]unix.RawSockaddrInet4
}

type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

func (b *rxBatch) init() {
	for i := range b.hdrs {
		b.iovs[i].Base = &b.bufs[i][0]
		b.iovs[i].SetLen(len(b.bufs[i]))
		b.hdrs[i].hdr.Iov = &b.iovs[i]
		b.hdrs[i].hdr.SetIovlen(1)
		b.hdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		b.hdrs[i].hdr.Namelen = unix.SizeofSockaddrInet4
	}
}

func (b *rxBatch) recv(fd int) int {
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.hdrs[0])),
		uintptr(len(b.hdrs)), unix.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return 0
	}
	for i := range int(n) {
		b.hdrs[i].hdr.Namelen = unix.SizeofSockaddrInet4 // the kernel wrote the length it used
	}
	return int(n)
}

func (b *rxBatch) packet(i int) []byte { return b.bufs[i][:b.hdrs[i].len] }

// from is the source of packet i.
func (b *rxBatch) from(i int) netip.AddrPort {
	sa := &b.names[i]
	port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
	return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), port)
}

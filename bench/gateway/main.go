// Command gateway benchmarks switchboard's WebRTC gateway on 127.0.0.1:
// pion peer connections stand in for browsers (they sign in over /ws and
// each calls one SIP user), a Go UAS on the SIP side answers every call and
// sends PCMU; both sides send one 172-byte RTP packet (160 bytes of
// payload) every 20 ms. For each number of concurrent calls it reports the
// call set-up time (call message to the answered state), the packet rates
// on both sides, and the switch process's CPU, RSS and Go allocations per
// relayed packet. See run.sh and RESULTS.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	password = "benchpw"
	callee   = "echo"
	domain   = "switchboard.local"
)

func main() {
	bin := flag.String("bin", "", "switchboard binary (required)")
	nsFlag := flag.String("n", "10,25,50", "concurrent calls per step, comma-separated")
	warm := flag.Duration("warm", 2*time.Second, "wait after the last call is up before measuring")
	dur := flag.Duration("dur", 10*time.Second, "measurement window per step")
	cpu := flag.Int("switch-cpu", 0, "CPU to pin the switch to with taskset (-1: no pinning)")
	relay := flag.String("relay", "never", "media.relay of the switch: never (gateway RTP goes straight to the UAS) or always (through the switch's media relay too)")
	par := flag.Int("par", 10, "calls set up at once")
	flag.Parse()
	if *bin == "" {
		log.Fatal("-bin is required")
	}
	var ns []int
	for _, s := range strings.Split(*nsFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			log.Fatalf("-n: bad %q", s)
		}
		ns = append(ns, n)
	}
	maxN := slices.Max(ns)
	dir, err := os.MkdirTemp("", "gwbench")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	users := []string{callee}
	for i := range maxN {
		users = append(users, fmt.Sprintf("web%03d", i))
	}
	// Users are added once; each step starts a fresh switch on the same DB.
	s, err := startSwitch(*bin, dir, *relay, -1, users, password)
	if err != nil {
		log.Fatal(err)
	}
	s.stop()

	var rows []result
	for _, n := range ns {
		r, err := step(*bin, dir, *relay, *cpu, n, *par, *warm, *dur)
		if err != nil {
			log.Printf("N=%d: %v", n, err)
		}
		rows = append(rows, r)
		printRow(os.Stderr, r) // progress
	}
	fmt.Printf("\nrelay=%s, window %s per step, switch pinned to CPU %d\n\n", *relay, *dur, *cpu)
	printTable(rows)
}

type result struct {
	n, up, failed      int
	setup              []time.Duration // per answered call
	media              []time.Duration // call message to first packet at the browser
	browserPPS, sipPPS float64         // per call, received
	browserTx, sipTx   float64         // per call, sent
	cpuPct             float64         // switch CPU, % of one core
	genPct             float64         // generator CPU, % of one core
	rssIdleKB          int64           // before sign-in
	rssTabsKB          int64           // N tabs signed in, no call
	rssCallsKB         int64           // N calls up
	heapCallsB         float64
	allocsPerPkt       float64
}

func step(bin, dir, relay string, cpu, n, par int, warm, dur time.Duration) (result, error) {
	r := result{n: n}
	s, err := startSwitch(bin, dir, relay, cpu, nil, "")
	if err != nil {
		return r, err
	}
	defer s.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	u, err := newUAS(s.sipAddr, callee, password, domain)
	if err != nil {
		return r, err
	}
	defer u.close()
	if err := u.register(); err != nil {
		return r, err
	}
	time.Sleep(300 * time.Millisecond)
	r.rssIdleKB = s.sample(ctx).rssKB

	var brx, btx atomic.Int64
	bs := make([]*browser, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, par)
	wsURL := "ws://" + s.httpAddr + "/ws"
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			b, err := dialBrowser(ctx, wsURL, fmt.Sprintf("web%03d", i), &brx, &btx)
			if err == nil {
				err = b.login(ctx, password)
			}
			bs[i], errs[i] = b, err
		}()
	}
	wg.Wait()
	time.Sleep(300 * time.Millisecond)
	r.rssTabsKB = s.sample(ctx).rssKB

	// Offers are built before the clock starts: they are the browser's work.
	offers := make([]string, n)
	for i, b := range bs {
		if errs[i] != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			offers[i], errs[i] = b.offer()
		}()
	}
	wg.Wait()

	setup := make([]time.Duration, n)
	starts := make([]time.Time, n)
	for i, b := range bs {
		if errs[i] != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			starts[i] = time.Now()
			setup[i], errs[i] = b.call(ctx, callee, offers[i])
			if errs[i] == nil {
				b.startSending()
			}
		}()
	}
	wg.Wait()
	var firstErr error
	for i := range n {
		if errs[i] != nil {
			r.failed++
			if firstErr == nil {
				firstErr = errs[i]
			}
			continue
		}
		r.up++
		r.setup = append(r.setup, setup[i])
	}
	defer func() {
		for i, b := range bs {
			if b == nil {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if errs[i] == nil {
					b.hangup()
				} else {
					if b.pc != nil {
						b.pc.Close()
					}
					b.ws.CloseNow()
				}
			}()
		}
		wg.Wait()
	}()
	if r.up == 0 {
		return r, fmt.Errorf("no call up: %v", firstErr)
	}

	time.Sleep(warm)
	for i, b := range bs {
		if errs[i] == nil {
			if t := b.firstRx.Load(); t != 0 {
				r.media = append(r.media, time.Unix(0, t).Sub(starts[i]))
			}
		}
	}
	g0, _ := readProc(os.Getpid())
	// Two scrapes back to back: the second's malloc count minus the
	// first's is what one scrape of /metrics allocates (plus a few ms of
	// traffic), subtracted from the window's count below.
	sa := s.sample(ctx)
	s0 := s.sample(ctx)
	scrape := max(0, s0.mallocs-sa.mallocs)
	b0, bt0, u0, ut0 := brx.Load(), btx.Load(), u.rx.Load(), u.tx.Load()
	time.Sleep(dur)
	b1, bt1, u1, ut1 := brx.Load(), btx.Load(), u.rx.Load(), u.tx.Load()
	s1 := s.sample(ctx)
	g1, _ := readProc(os.Getpid())

	secs := s1.at.Sub(s0.at).Seconds()
	up := float64(r.up)
	r.browserPPS = float64(b1-b0) / secs / up
	r.sipPPS = float64(u1-u0) / secs / up
	r.browserTx = float64(bt1-bt0) / secs / up
	r.sipTx = float64(ut1-ut0) / secs / up
	r.cpuPct = 100 * float64(s1.ticks-s0.ticks) / clkTck / secs
	r.genPct = 100 * float64(g1.ticks-g0.ticks) / clkTck / g1.at.Sub(g0.at).Seconds()
	r.rssCallsKB = s1.rssKB
	r.heapCallsB = s1.heapInUse
	if pk := float64((b1 - b0) + (u1 - u0)); pk > 0 {
		r.allocsPerPkt = max(0, s1.mallocs-s0.mallocs-scrape) / pk
	}
	if r.failed > 0 {
		return r, fmt.Errorf("%d of %d calls failed, first: %v", r.failed, n, firstErr)
	}
	return r, nil
}

func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p*float64(len(s))+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d.Microseconds())/1000) }

func (r result) callsPerCore() float64 {
	if r.cpuPct <= 0 {
		return 0
	}
	return float64(r.up) / (r.cpuPct / 100)
}

var header = []string{"calls up/N", "set-up p50 ms", "set-up p99 ms", "1st pkt p50 ms", "rx pps/call browser", "rx pps/call SIP", "switch CPU %core", "CPU ms/s per call", "calls/core (extrap.)", "RSS idle MiB", "RSS/tab KiB", "RSS/call KiB", "allocs/pkt", "gen CPU %"}

func (r result) cells() []string {
	f := func(format string, v ...any) string { return fmt.Sprintf(format, v...) }
	perCall := func(kb int64) string {
		if r.up == 0 {
			return "-"
		}
		return f("%d", kb/int64(r.up))
	}
	cpuPerCall := 0.0
	if r.up > 0 {
		cpuPerCall = 10 * r.cpuPct / float64(r.up) // % of a core = 10 ms/s
	}
	return []string{
		f("%d/%d", r.up, r.n), ms(pct(r.setup, .5)), ms(pct(r.setup, .99)), ms(pct(r.media, .5)),
		f("%.1f", r.browserPPS), f("%.1f", r.sipPPS),
		f("%.1f", r.cpuPct), f("%.2f", cpuPerCall), f("%.0f", r.callsPerCore()),
		f("%.1f", float64(r.rssIdleKB)/1024), perCall(r.rssTabsKB - r.rssIdleKB), perCall(r.rssCallsKB - r.rssTabsKB),
		f("%.2f", r.allocsPerPkt), f("%.0f", r.genPct),
	}
}

func printRow(w *os.File, r result) {
	fmt.Fprintf(w, "N=%d: %s (sent/call: browser %.1f pps, SIP %.1f pps)\n", r.n, strings.Join(r.cells(), " | "), r.browserTx, r.sipTx)
}

func printTable(rows []result) {
	fmt.Println("| " + strings.Join(header, " | ") + " |")
	fmt.Println(strings.Repeat("| --- ", len(header)) + "|")
	for _, r := range rows {
		fmt.Println("| " + strings.Join(r.cells(), " | ") + " |")
	}
}

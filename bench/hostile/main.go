// Command hostile attacks a running switchboard on loopback and prints one
// Markdown table row of what the attack cost it, next to the targets of
// issue 8 ("floods cost nothing"):
//
//	hostile -scenario garbage -n 100000 -rate 3000 -sources 1   [common flags]
//	hostile -scenario garbage -n 100000 -rate 3000 -sources 254 [common flags]
//	hostile -scenario flood   -n 40000  -rate 2000 -sources 50  [common flags]
//
// garbage sends mutated and junk datagrams (test/hostile's Mutator); flood
// sends INVITEs from a stranger (sip:x@198.51.100.9) to the registered local
// user bob, whose phone this program plays (it answers 486 and counts what
// reaches it). Attackers send from 127.0.0.2 up (one address per source);
// the legitimate client, alice on 127.0.0.1, registers with digest
// authentication every 100 ms during the attack and for -settle after it,
// retransmitting like a phone (RFC 3261 Timer E), and each registration that
// ends in 200 within 4 s counts as a success.
//
// Measured: the server's peak RSS (VmHWM of /proc/PID/status), its RSS
// -settle after the attack and when it first fell under 50 MB, go_goroutines
// from /metrics before and after, the call records written for the
// attackers (`switchboard cdr list`), and the legitimate success rate.
//
// run.sh in this directory starts the server for each scenario and runs this
// program; every loop here is bounded in count and time.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sort"
	"strings"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "hostile:", err)
		os.Exit(1)
	}
}

// config is what the flags say.
type config struct {
	scenario       string
	server         string // SIP UDP listener, host:port
	pid            int    // the server's process id
	httpAddr       string // the server's HTTP listener, for /metrics
	bin, cfgFile   string // switchboard binary and config, for `cdr list`
	domain         string
	n, rate        int
	sources        int
	settle         time.Duration
	legitEvery     time.Duration
	alice, bob     cred
	label          string
	header         bool
	seed           uint64
	firstSourceIP4 int // last octet of the first attacker address
}

type cred struct{ user, password string }

func parseCred(s string) (cred, error) {
	u, p, ok := strings.Cut(s, ":")
	if !ok || u == "" || p == "" {
		return cred{}, fmt.Errorf("want USER:PASSWORD, got %q", s)
	}
	return cred{u, p}, nil
}

func run() error {
	var c config
	var alice, bob string
	flag.StringVar(&c.scenario, "scenario", "garbage", "garbage | flood")
	flag.StringVar(&c.server, "server", "", "the switch's SIP UDP listener, host:port")
	flag.IntVar(&c.pid, "pid", 0, "the switch's process id (for VmHWM and VmRSS)")
	flag.StringVar(&c.httpAddr, "http", "", "the switch's HTTP listener, host:port (for /metrics)")
	flag.StringVar(&c.bin, "bin", "", "the switchboard binary (for `cdr list`)")
	flag.StringVar(&c.cfgFile, "config", "", "the switch's config file (for `cdr list`)")
	flag.StringVar(&c.domain, "domain", "switchboard.local", "SIP domain")
	flag.IntVar(&c.n, "n", 100000, "datagrams or INVITEs to send")
	flag.IntVar(&c.rate, "rate", 3000, "per second")
	flag.IntVar(&c.sources, "sources", 1, "attacker source addresses, 127.0.0.2 upwards (at most 254)")
	flag.DurationVar(&c.settle, "settle", 60*time.Second, "time after the attack before the last measurements")
	flag.DurationVar(&c.legitEvery, "legit-every", 100*time.Millisecond, "interval of the legitimate REGISTERs")
	flag.StringVar(&alice, "alice", "alice:alice-secret", "legitimate user USER:PASSWORD")
	flag.StringVar(&bob, "bob", "bob:bob-secret", "the flood's callee USER:PASSWORD (registered by this program)")
	flag.StringVar(&c.label, "label", "", "the row's label (default: scenario and sources)")
	flag.BoolVar(&c.header, "header", false, "print the table header first")
	flag.Uint64Var(&c.seed, "seed", uint64(time.Now().UnixNano()), "mutator seed")
	flag.Parse()
	c.firstSourceIP4 = 2
	var err error
	if c.alice, err = parseCred(alice); err != nil {
		return fmt.Errorf("-alice: %w", err)
	}
	if c.bob, err = parseCred(bob); err != nil {
		return fmt.Errorf("-bob: %w", err)
	}
	switch {
	case c.server == "" || c.pid == 0 || c.httpAddr == "" || c.bin == "" || c.cfgFile == "":
		return errors.New("-server, -pid, -http, -bin and -config are required")
	case c.sources < 1 || c.sources > 254:
		return errors.New("-sources must be 1-254")
	case c.n < 1 || c.rate < 1:
		return errors.New("-n and -rate must be positive")
	case c.scenario != "garbage" && c.scenario != "flood":
		return fmt.Errorf("unknown -scenario %q", c.scenario)
	}
	if c.label == "" {
		c.label = fmt.Sprintf("%s, %d source(s)", c.scenario, c.sources)
	}
	res, err := attack(c)
	if err != nil {
		return err
	}
	if c.header {
		printHeader()
	}
	printRow(c, res)
	return nil
}

// result is what one scenario measured.
type result struct {
	sent          int
	sendTime      time.Duration
	answers       map[int]int // first final status per Call-ID (flood) or per datagram answered (garbage)
	peakRSS       int64
	rssAfter      int64
	under50       time.Duration // when RSS first fell under 50 MB after the attack (-1: not within settle)
	goroutines    [2]float64    // before, after
	records       int           // call records of the attackers
	legitOK       int
	legitAll      int
	legitDuring   [2]int // ok, all
	bobRung       int    // requests from strangers that reached bob
	serverExited  bool
	legitFailures []string
}

func attack(c config) (result, error) {
	var res result
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(c.n/c.rate+1)*3*time.Second+c.settle+2*time.Minute)
	defer cancel()

	bob, err := newPhone(c.server, c.domain, c.bob)
	if err != nil {
		return res, err
	}
	defer bob.close()
	if code := bob.register(); code != 200 {
		return res, fmt.Errorf("registering %s: got %d", c.bob.user, code)
	}
	alice, err := newPhone(c.server, c.domain, c.alice)
	if err != nil {
		return res, err
	}
	defer alice.close()
	if code := alice.register(); code != 200 {
		return res, fmt.Errorf("registering %s before the attack: got %d", c.alice.user, code)
	}

	if g, err := metric(c.httpAddr, "go_goroutines"); err == nil {
		res.goroutines[0] = g
	}

	// The legitimate client, every legitEvery until told to stop.
	legit := newLegit(alice, c.legitEvery)
	go legit.run(ctx)

	srcs, err := openSources(c.firstSourceIP4, c.sources)
	if err != nil {
		legit.stop()
		return res, err
	}
	peak := make(chan int64, 1)
	sampling, stopSampling := context.WithCancel(ctx)
	go func() { peak <- samplePeak(sampling, c.pid) }()

	start := time.Now()
	res.sent = blast(ctx, c, srcs)
	res.sendTime = time.Since(start)
	legit.mark() // what follows is "after"

	// Settle, watching for the RSS to fall under 50 MB.
	res.under50 = -1
	end := time.Now().Add(c.settle)
	for time.Now().Before(end) && ctx.Err() == nil {
		if rss, err := procStatus(c.pid, "VmRSS"); err == nil && rss < 50e6 && res.under50 < 0 {
			res.under50 = time.Since(start) - res.sendTime
		}
		if !alive(c.pid) {
			res.serverExited = true
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	stopSampling()
	res.peakRSS = <-peak
	if rss, err := procStatus(c.pid, "VmRSS"); err == nil {
		res.rssAfter = rss
	}
	if g, err := metric(c.httpAddr, "go_goroutines"); err == nil {
		res.goroutines[1] = g
	}
	legit.stop()
	res.legitOK, res.legitAll, res.legitDuring, res.legitFailures = legit.counts()
	res.answers = answers(srcs)
	closeSources(srcs)
	res.bobRung = bob.strangers()
	res.records, err = strangerRecords(c)
	if err != nil {
		return res, err
	}
	return res, nil
}

// alive reports whether pid still runs.
func alive(pid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return err == nil
}

// strangerRecords counts the call records whose caller is the stranger or
// whose Call-ID is one of the flood's.
func strangerRecords(c config) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, c.bin, "cdr", "list", "--limit", "10000000", "--config", c.cfgFile).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("cdr list: %w: %s", err, out)
	}
	n := 0
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "198.51.100.9") || strings.Contains(l, "flood-") || strings.Contains(l, "mut-") {
			n++
		}
	}
	return n, nil
}

func printHeader() {
	fmt.Println("| attack | sent | peak RSS (target < 100 MB) | RSS 60 s after (target < 50 MB) | goroutines before → after | call records (target 0) | legitimate REGISTERs ok (target ≥ 99.9 %) | answers to the attacker |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
}

func mark(ok bool) string {
	if ok {
		return "✓"
	}
	return "✗"
}

func printRow(c config, r result) {
	mb := func(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/1e6) }
	under := "not under 50 MB within " + c.settle.String()
	if r.under50 >= 0 {
		under = fmt.Sprintf("under 50 MB after %s", r.under50.Round(time.Second))
	}
	pct := 0.0
	if r.legitAll > 0 {
		pct = 100 * float64(r.legitOK) / float64(r.legitAll)
	}
	var codes []string
	keys := make([]int, 0, len(r.answers))
	for k := range r.answers {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	for _, k := range keys {
		codes = append(codes, fmt.Sprintf("%d ×%d", k, r.answers[k]))
	}
	if len(codes) == 0 {
		codes = []string{"none"}
	}
	if r.bobRung > 0 {
		codes = append(codes, fmt.Sprintf("**bob rung %d times**", r.bobRung))
	}
	if r.serverExited {
		codes = append(codes, "**server exited**")
	}
	fmt.Printf("| %s | %d in %s (%d/s) | %s %s | %s %s (%s) | %.0f → %.0f | %d %s | %.2f %% %s (%d/%d; during the attack %d/%d) | %s |\n",
		c.label, r.sent, r.sendTime.Round(100*time.Millisecond), c.rate,
		mb(r.peakRSS), mark(r.peakRSS < 100e6),
		mb(r.rssAfter), mark(r.rssAfter < 50e6), under,
		r.goroutines[0], r.goroutines[1],
		r.records, mark(r.records == 0),
		pct, mark(pct >= 99.9), r.legitOK, r.legitAll, r.legitDuring[0], r.legitDuring[1],
		strings.Join(codes, ", "))
	for i, f := range r.legitFailures {
		if i == 5 {
			fmt.Fprintf(os.Stderr, "  ... %d more\n", len(r.legitFailures)-5)
			break
		}
		fmt.Fprintln(os.Stderr, "  legitimate REGISTER failed:", f)
	}
}

// localIP4 is 127.0.0.N.
func localIP4(n int) net.IP { return net.IPv4(127, 0, 0, byte(n)) }

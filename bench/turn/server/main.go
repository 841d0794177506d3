// Command server runs switchboard's media/turn.Server standalone with static
// users, for bench/turn/run.sh and for manual tests with coturn's turnutils.
//
//	go run ./bench/turn/server -listen udp://127.0.0.1:3478,tcp://127.0.0.1:3478 -user alice=alicepw
//
// It prints one line "ready <transport> <addr> ..." once every listener is
// bound, and stops on SIGINT or SIGTERM.
package main

import (
	"context"
	"crypto/md5" //nolint:gosec // the long-term key is MD5 by definition (RFC 8489 §9.2.2)
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/switchboard/switchboard/media/turn"
)

// users is a static Credentials: username → HA1.
type users map[string][]byte

func (u users) LongTermKey(username string) ([]byte, bool) {
	k, ok := u[username]

	return k, ok
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		listen     = flag.String("listen", "udp://127.0.0.1:3478,tcp://127.0.0.1:3478", "comma-separated listen URLs")
		realm      = flag.String("realm", "switchboard.test", "realm (SIP domain)")
		userList   = flag.String("user", "", "comma-separated user=password pairs")
		secret     = flag.String("secret", "", "TURN REST shared secret")
		publicIP   = flag.String("public-ip", "127.0.0.1", "relay address advertised")
		bindIP     = flag.String("bind-ip", "127.0.0.1", "relay sockets bound on")
		allowPeers = flag.String("allow-peers", "127.0.0.0/8", "comma-separated CIDRs clients may relay to")
		readLoops  = flag.Int("read-loops", 0, "sockets/read loops per UDP listener (0: NumCPU)")
		sockBuf    = flag.Int("socket-buffer", 0, "SO_RCVBUF/SO_SNDBUF of UDP listeners (0: 4 MiB, -1: kernel default)")
		rate       = flag.Int("allocate-rate", -1, "Allocate requests/s per source IP (-1: unlimited)")
		quota      = flag.Int("quota", -1, "allocations per user (-1: unlimited)")
		logLevel   = flag.String("log-level", "warn", "debug, info, warn or error")
		cpuProfile = flag.String("cpuprofile", "", "write a CPU profile to this file until exit")
	)
	flag.Parse()

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("log level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	cfg := turn.Config{
		Realm:                 *realm,
		Listen:                strings.Split(*listen, ","),
		Secret:                []byte(*secret),
		ReadLoops:             *readLoops,
		SocketBuffer:          *sockBuf,
		AllocateRate:          *rate,
		MaxAllocationsPerUser: *quota,
	}
	var err error
	if cfg.PublicIP, err = netip.ParseAddr(*publicIP); err != nil {
		return fmt.Errorf("public ip: %w", err)
	}
	if cfg.BindIP, err = netip.ParseAddr(*bindIP); err != nil {
		return fmt.Errorf("bind ip: %w", err)
	}
	for _, p := range strings.Split(*allowPeers, ",") {
		if p == "" {
			continue
		}
		pfx, err := netip.ParsePrefix(p)
		if err != nil {
			return fmt.Errorf("allow peers: %w", err)
		}
		cfg.AllowPeers = append(cfg.AllowPeers, pfx)
	}
	creds := users{}
	for _, kv := range strings.Split(*userList, ",") {
		name, pass, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		h := md5.Sum([]byte(name + ":" + *realm + ":" + pass)) //nolint:gosec // HA1
		creds[name] = h[:]
	}

	cfg.Credentials, cfg.Logger = creds, log
	srv, err := turn.New(cfg)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	line := "ready"
	for _, e := range srv.Endpoints() {
		line += fmt.Sprintf(" %s %s", e.Transport, e.Addr)
	}
	fmt.Println(line)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()

	if err := srv.Close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}

	return nil
}

// Command switchboard is a SIP registrar, stateful proxy, media relay, TURN
// server and WebRTC gateway in one binary.
//
//	switchboard [serve] [--config FILE]
//	switchboard user add NAME --password PW [--config FILE]
//	switchboard user passwd NAME --password PW [--config FILE]
//	switchboard user del NAME [--config FILE]
//	switchboard user list [--config FILE]
//	switchboard cdr list [--limit N] [--config FILE]
//	switchboard version
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/switchboard/switchboard/internal/sqldb"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

//nolint:dupword // "user list  list users": a command, then what it does
const usage = `switchboard — SIP registrar/proxy, media relay, TURN server and WebRTC gateway

Usage:
  switchboard [serve] [--config FILE]           run the switch (embedded defaults without --config)
  switchboard user add NAME --password PW       add a SIP user
  switchboard user passwd NAME --password PW    change a user's password
  switchboard user del NAME                     delete a user
  switchboard user list                         list users
  switchboard cdr list [--limit N]              list call records, newest first
  switchboard version                           print the version

Every command takes --config FILE (default: the embedded configs/switchboard.yaml).
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "serve":
		err = cmdServe(args, stderr)
	case "user":
		err = cmdUser(args, stdout)
	case "cdr":
		err = cmdCDR(args, stdout)
	case "version":
		fmt.Fprintln(stdout, "switchboard", version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "switchboard: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "switchboard:", err)
		return 1
	}
	return 0
}

// parseFlags parses fs from args allowing flags before and after positional
// arguments, and returns the positional ones.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// openDB loads the config and opens its database.
func openDB(ctx context.Context, configPath string) (*fileConfig, *sql.DB, error) {
	cfg, err := loadConfig(configPath)
	if err != nil {
		return nil, nil, err
	}
	db, err := openDBFrom(ctx, cfg)
	return cfg, db, err
}

func openDBFrom(ctx context.Context, cfg *fileConfig) (*sql.DB, error) {
	return sqldb.Open(ctx, cfg.Database)
}

func newLogger(w io.Writer, level, format string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level)) // checked by fileConfig.check
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

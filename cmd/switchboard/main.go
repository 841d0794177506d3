// Command switchboard is a SIP registrar, stateful proxy, media relay, TURN
// server and WebRTC gateway in one binary.
//
//	switchboard [serve] [--config FILE]
//	switchboard user add NAME --password PW [--calls CLASS] [--config FILE]
//	switchboard user passwd NAME --password PW [--config FILE]
//	switchboard user del NAME [--config FILE]
//	switchboard user set NAME --calls internal|national|international [--config FILE]
//	switchboard user list [--config FILE]
//	switchboard trunk list [--config FILE]
//	switchboard cdr list [--user U] [--status S] [--since T] [--until T] [--limit N] [--cursor C] [--json] [--config FILE]
//	switchboard admin add|passwd|del|list|token ...
//	switchboard reg list | calls list | calls hangup ID | trace CALL-ID [--server URL] [--token T] [--json]
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
  switchboard user add NAME --password PW       add a SIP user [--calls CLASS, default national]
  switchboard user passwd NAME --password PW    change a user's password
  switchboard user del NAME                     delete a user
  switchboard user set NAME --calls CLASS       set what a user may call: internal, national, international
  switchboard user list                         list users
  switchboard trunk list                        list trunks with their registration state, expiry, last error
  switchboard cdr list [--limit N]              list call records, newest first; filters: --user U,
                                                --status answered|failed|active|CODE, --since T, --until T,
                                                --cursor C (from the previous page); --server URL: ask the API
  switchboard admin add NAME --password PW      add an operations console admin (not a SIP user)
  switchboard admin passwd NAME --password PW   change an admin's password
  switchboard admin del NAME                    delete an admin and its API tokens
  switchboard admin list                        list admins
  switchboard admin token NAME [--ttl D]        print a new API token of an admin (stored hashed)
  switchboard reg list                          list registrations (the database when the switch is down)
  switchboard calls list                        list calls in progress, with their media health
  switchboard calls hangup CALL-ID              hang a call up (BYE to both parties)
  switchboard trace CALL-ID [--messages]        the SIP ladder of a call (the last console.trace_calls calls)
  switchboard version                           print the version

Every command takes --config FILE (default: the embedded configs/switchboard.yaml).
reg, calls, trace and cdr take --json, and --server URL (default: http.listen) and --token T
(default: $SWITCHBOARD_TOKEN, else a one-minute token made in the database) for the admin API.
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
		err = cmdCDR(args, stdout, stderr)
	case "trunk":
		err = cmdTrunk(args, stdout)
	case "admin":
		err = cmdAdmin(args, stdout)
	case "reg":
		err = cmdReg(args, stdout)
	case "calls":
		err = cmdCalls(args, stdout)
	case "trace":
		err = cmdTrace(args, stdout)
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

package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"text/tabwriter"

	"github.com/switchboard/switchboard/cdr"
	"github.com/switchboard/switchboard/registrar"
)

// openDBCommand parses the flags of a command that works on the database
// (adding --config to fs) and opens the database the configuration names.
// It returns the positional arguments, the configuration and the database,
// which the caller closes.
func openDBCommand(ctx context.Context, fs *flag.FlagSet, args []string) ([]string, *fileConfig, *sql.DB, error) {
	config := fs.String("config", "", "configuration file")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return nil, nil, nil, err
	}
	cfg, db, err := openDB(ctx, *config)
	return pos, cfg, db, err
}

func cmdUser(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("user: want add, passwd, del or list")
	}
	sub := args[0]
	fs := flag.NewFlagSet("user "+sub, flag.ContinueOnError)
	password := fs.String("password", "", "password")
	ctx := context.Background()
	pos, cfg, db, err := openDBCommand(ctx, fs, args[1:])
	if err != nil {
		return err
	}
	defer db.Close()
	users, err := registrar.NewUsers(ctx, db, cfg.Domain, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return err
	}
	needName := func() (string, error) {
		if len(pos) != 1 {
			return "", fmt.Errorf("user %s: want exactly one user name", sub)
		}
		return pos[0], nil
	}
	switch sub {
	case "add", "passwd":
		name, err := needName()
		if err != nil {
			return err
		}
		if *password == "" {
			return fmt.Errorf("user %s: --password is required", sub)
		}
		if sub == "add" {
			if err := users.Add(ctx, name, *password); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "user %s added (sip:%s@%s)\n", name, name, cfg.Domain)
			return nil
		}
		if err := users.SetPassword(ctx, name, *password); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "password of %s changed\n", name)
	case "del":
		name, err := needName()
		if err != nil {
			return err
		}
		if err := users.Delete(ctx, name); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "user %s deleted\n", name)
	case "list":
		list, err := users.List(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tAOR\tCREATED")
		for _, u := range list {
			fmt.Fprintf(tw, "%s\tsip:%s@%s\t%s\n", u.Name, u.Name, cfg.Domain, u.Created.Format("2006-01-02 15:04:05"))
		}
		return tw.Flush()
	default:
		return fmt.Errorf("user: unknown subcommand %q (want add, passwd, del or list)", sub)
	}
	return nil
}

func cmdCDR(args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "list" {
		return errors.New("cdr: want list")
	}
	fs := flag.NewFlagSet("cdr list", flag.ContinueOnError)
	limit := fs.Int("limit", 100, "records to show")
	ctx := context.Background()
	_, _, db, err := openDBCommand(ctx, fs, args[1:])
	if err != nil {
		return err
	}
	defer db.Close()
	if err := cdr.Migrate(ctx, db); err != nil {
		return err
	}
	recs, err := cdr.List(ctx, db, *limit)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STARTED\tCALLER\tCALLEE\tCALL-ID\tSTATUS\tANSWERED\tENDED\tDURATION\tHANGUP-BY\tREASON\tMEDIA")
	ts := func(t interface{ IsZero() bool }, s string) string {
		if t.IsZero() {
			return "-"
		}
		return s
	}
	for _, r := range recs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n",
			r.Started.Format("2006-01-02 15:04:05"), r.Caller, r.Callee, r.CallID, r.Status,
			ts(r.Answered, r.Answered.Format("15:04:05")), ts(r.Ended, r.Ended.Format("15:04:05")),
			r.Duration().Round(1e6), dash(r.HangupBy), dash(r.Reason), dash(r.Media))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

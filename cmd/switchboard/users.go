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
		return errors.New("user: want add, passwd, set, del or list")
	}
	sub := args[0]
	fs := flag.NewFlagSet("user "+sub, flag.ContinueOnError)
	password := fs.String("password", "", "password")
	calls := fs.String("calls", "", "calling class: internal, national (the default for add) or international")
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
			class := *calls
			if class == "" {
				class = registrar.DefaultClass
			}
			if !registrar.ValidClass(class) {
				return fmt.Errorf("user add: --calls %q: %w", class, registrar.ErrInvalidClass)
			}
			if err := users.Add(ctx, name, *password); err != nil {
				return err
			}
			if class != registrar.DefaultClass {
				if err := users.SetCallingClass(ctx, name, class); err != nil {
					return err
				}
			}
			fmt.Fprintf(stdout, "user %s added (sip:%s@%s, calls %s)\n", name, name, cfg.Domain, class)
			return nil
		}
		if err := users.SetPassword(ctx, name, *password); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "password of %s changed\n", name)
	case "set":
		name, err := needName()
		if err != nil {
			return err
		}
		if *calls == "" {
			return errors.New("user set: --calls is required (internal, national or international)")
		}
		if err := users.SetCallingClass(ctx, name, *calls); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "calling class of %s set to %s\n", name, *calls)
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
		fmt.Fprintln(tw, "NAME\tAOR\tCALLS\tCREATED")
		for _, u := range list {
			fmt.Fprintf(tw, "%s\tsip:%s@%s\t%s\t%s\n", u.Name, u.Name, cfg.Domain, u.Calls, u.Created.Format("2006-01-02 15:04:05"))
		}
		return tw.Flush()
	default:
		return fmt.Errorf("user: unknown subcommand %q (want add, passwd, set, del or list)", sub)
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

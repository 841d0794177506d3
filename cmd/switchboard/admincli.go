package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/switchboard/switchboard/admin"
)

// cmdAdmin is `switchboard admin add|passwd|del|list|token`: the
// operations console's accounts (not SIP users) and their API tokens, in
// the database.
func cmdAdmin(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("admin: want add, passwd, del, list or token")
	}
	sub := args[0]
	fs := flag.NewFlagSet("admin "+sub, flag.ContinueOnError)
	password := fs.String("password", "", "password")
	ttl := fs.Duration("ttl", 0, "token lifetime (admin token; 0: until the account is deleted)")
	ctx := context.Background()
	pos, _, db, err := openDBCommand(ctx, fs, args[1:])
	if err != nil {
		return err
	}
	defer db.Close()
	accounts, err := admin.OpenAccounts(ctx, db)
	if err != nil {
		return err
	}
	name := ""
	if sub != "list" {
		if len(pos) != 1 {
			return fmt.Errorf("admin %s: want exactly one admin name", sub)
		}
		name = pos[0]
	}
	switch sub {
	case "add", "passwd":
		if *password == "" {
			return fmt.Errorf("admin %s: --password is required", sub)
		}
		if sub == "add" {
			if err := accounts.Add(ctx, name, *password); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "admin %s added\n", name)
			return nil
		}
		if err := accounts.SetPassword(ctx, name, *password); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "password of admin %s changed\n", name)
	case "del":
		if err := accounts.Delete(ctx, name); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "admin %s deleted (and its tokens)\n", name)
	case "token":
		if *ttl < 0 {
			return errors.New("admin token: --ttl must not be negative")
		}
		tok, err := accounts.NewToken(ctx, name, *ttl)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, tok)
	case "list":
		list, err := accounts.List(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tCREATED\tTOKENS")
		for _, a := range list {
			fmt.Fprintf(tw, "%s\t%s\t%d\n", a.Name, a.Created.Format(time.DateTime), a.Tokens)
		}
		return tw.Flush()
	default:
		return fmt.Errorf("admin: unknown subcommand %q (want add, passwd, del, list or token)", sub)
	}
	return nil
}

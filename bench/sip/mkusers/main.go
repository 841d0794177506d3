// Command mkusers creates many SIP users in a switchboard database at once,
// for benchmarks: `switchboard user add` opens the database once per user,
// which is too slow for tens of thousands of them.
//
// It writes through the registrar's user store, so the rows are exactly the
// ones `switchboard user add` would write, and prints a SIPp injection file
// (-inf) for the same users on stdout:
//
//	mkusers -db switchboard.db -realm switchboard.local -n 20000 -prefix u > users.csv
//
// User i (from 1) is PREFIX followed by i zero-padded to 6 digits, with
// password "pw-" + that name.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/switchboard/switchboard/internal/sqldb"
	"github.com/switchboard/switchboard/registrar"
)

func main() {
	dbPath := flag.String("db", "", "switchboard database file (created if missing)")
	realm := flag.String("realm", "switchboard.local", "SIP domain (digest realm) of the switch")
	n := flag.Int("n", 1000, "number of users")
	prefix := flag.String("prefix", "u", "user name prefix")
	flag.Parse()
	if err := run(*dbPath, *realm, *prefix, *n); err != nil {
		fmt.Fprintln(os.Stderr, "mkusers:", err)
		os.Exit(1)
	}
}

func run(dbPath, realm, prefix string, n int) error {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, dbPath)
	if err != nil {
		return err
	}
	defer db.Close()
	users, err := registrar.NewUsers(ctx, db, realm, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		return err
	}
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	fmt.Fprintln(out, "SEQUENTIAL")
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("%s%06d", prefix, i)
		pw := "pw-" + name
		if err := users.Add(ctx, name, pw); err != nil && !errors.Is(err, registrar.ErrUserExists) {
			return err
		}
		fmt.Fprintf(out, "%s;%s;[authentication username=%s password=%s]\n", name, pw, name, pw)
	}
	return nil
}

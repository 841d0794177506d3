package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/switchboard/switchboard/admin"
	"github.com/switchboard/switchboard/cdr"
	"github.com/switchboard/switchboard/registrar"
	"github.com/switchboard/switchboard/trace"
)

// The CLI on the admin API: `reg list`, `calls list`, `calls hangup ID`,
// `trace CALL-ID`, `cdr list`. They ask the running switch at --server
// (default: this configuration's http.listen) with --token (default:
// $SWITCHBOARD_TOKEN, else a token of a minute made in the database, which
// whoever runs the CLI here can read anyway). `reg list` reads the
// database when the switch is not running, and `cdr list` reads it unless
// --server is given.

// apiFlags are the flags every API command takes.
type apiFlags struct {
	config, server, token *string
	json                  *bool
}

func newAPIFlags(fs *flag.FlagSet) apiFlags {
	return apiFlags{
		config: fs.String("config", "", "configuration file"),
		server: fs.String("server", "", "the switch's HTTP(S) address (default: from http.listen)"),
		token:  fs.String("token", "", "API token (default: $SWITCHBOARD_TOKEN, else a short-lived one from the database)"),
		json:   fs.Bool("json", false, "print JSON"),
	}
}

// apiClient calls the admin API.
type apiClient struct {
	base     string
	token    string
	db       *sql.DB
	http     *http.Client
	minted   bool
	explicit bool // --server was given
}

// open loads the configuration and database and makes the client.
func (f apiFlags) open(ctx context.Context) (*apiClient, *fileConfig, error) {
	cfg, err := loadConfig(*f.config)
	if err != nil {
		return nil, nil, err
	}
	db, err := openDBFrom(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	c := &apiClient{db: db, token: *f.token, http: &http.Client{Timeout: 30 * time.Second}, explicit: *f.server != ""}
	if c.token == "" {
		c.token = os.Getenv("SWITCHBOARD_TOKEN")
	}
	c.base = strings.TrimRight(*f.server, "/")
	if c.base == "" {
		c.base = localURL(cfg.HTTP.Listen)
		if accounts, err := admin.OpenAccounts(ctx, db); err == nil {
			if u, ok := accounts.ServerURL(ctx); ok {
				c.base = u // what the running switch bound
			}
		}
	} else if !strings.Contains(c.base, "://") {
		c.base = "http://" + c.base
	}
	return c, cfg, nil
}

// localURL is an HTTP listener's address as a client on this host
// reaches it.
func localURL(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "http://127.0.0.1:8080"
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

func (c *apiClient) close() { c.db.Close() }

// errNotRunning means no switch answered at the server address.
var errNotRunning = errors.New("the switch is not running")

// do sends a request and decodes a JSON answer into out (when not nil).
func (c *apiClient) do(ctx context.Context, method, path string, out any) error {
	if c.token == "" {
		accounts, err := admin.OpenAccounts(ctx, c.db)
		if err != nil {
			return err
		}
		if c.token, err = accounts.LocalToken(ctx, time.Minute); err != nil {
			return err
		}
		c.minted = true
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	res, err := c.http.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("%w at %s (%v)", errNotRunning, c.base, err)
		}
		return fmt.Errorf("%s %s: %w", method, c.base+path, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return err
	}
	if res.StatusCode >= 300 {
		var e struct{ Error, Code string }
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s: %s (%s)", res.Status, e.Error, e.Code)
		}
		return fmt.Errorf("%s %s: %s", method, path, res.Status)
	}
	if out == nil || len(body) == 0 {
		return nil
	}
	if raw, ok := out.(*json.RawMessage); ok {
		*raw = body
		return nil
	}
	return json.Unmarshal(body, out)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// cmdReg is `switchboard reg list`.
func cmdReg(args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "list" {
		return errors.New("reg: want list")
	}
	fs := flag.NewFlagSet("reg list", flag.ContinueOnError)
	f := newAPIFlags(fs)
	if _, err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	ctx := context.Background()
	c, _, err := f.open(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	var regs []admin.Registration
	err = c.do(ctx, http.MethodGet, "/api/v1/registrations", &regs)
	if errors.Is(err, errNotRunning) && !c.explicit {
		bs, dbErr := registrar.StoredBindings(ctx, c.db)
		if dbErr != nil {
			return dbErr
		}
		regs, err = admin.Registrations(bs), nil
	}
	if err != nil {
		return err
	}
	if *f.json {
		return printJSON(stdout, regs)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tCONTACT\tTRANSPORT\tSOURCE\tNAT\tUSER-AGENT\tEXPIRES")
	for _, r := range regs {
		nat := "no"
		if r.NAT {
			nat = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.User, r.Contact, r.Transport, dash(r.Source), nat,
			dash(r.UserAgent), time.Until(r.Expires).Round(time.Second))
	}
	return tw.Flush()
}

// cmdCalls is `switchboard calls list` and `switchboard calls hangup ID`.
func cmdCalls(args []string, stdout io.Writer) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "hangup") {
		return errors.New("calls: want list or hangup CALL-ID")
	}
	sub := args[0]
	fs := flag.NewFlagSet("calls "+sub, flag.ContinueOnError)
	f := newAPIFlags(fs)
	pos, err := parseFlags(fs, args[1:])
	if err != nil {
		return err
	}
	ctx := context.Background()
	c, _, err := f.open(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	if sub == "hangup" {
		if len(pos) != 1 {
			return errors.New("calls hangup: want exactly one Call-ID")
		}
		if err := c.do(ctx, http.MethodDelete, "/api/v1/calls/"+url.PathEscape(pos[0]), nil); err != nil {
			return err
		}
		if *f.json {
			return printJSON(stdout, map[string]string{"hung_up": pos[0]})
		}
		fmt.Fprintf(stdout, "call %s hung up\n", pos[0])
		return nil
	}
	var calls []admin.Call
	if err := c.do(ctx, http.MethodGet, "/api/v1/calls", &calls); err != nil {
		return err
	}
	if *f.json {
		return printJSON(stdout, calls)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CALL-ID\tCALLER\tCALLEE\tSTATE\tDURATION\tMEDIA")
	for _, cl := range calls {
		var legs []string
		for _, l := range cl.Legs {
			legs = append(legs, fmt.Sprintf("%s %s pkts=%d loss=%.1f%% jitter=%.1fms mos=%.2f",
				l.Party, dash(l.Codec), l.Packets, l.LossPct, l.JitterMS, l.MOS))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", cl.ID, cl.Caller, cl.Callee, cl.State,
			time.Duration(cl.Duration*float64(time.Second)), dash(strings.Join(legs, "; ")))
	}
	return tw.Flush()
}

// cmdTrace is `switchboard trace CALL-ID`: the call's SIP ladder as text.
func cmdTrace(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("trace", flag.ContinueOnError)
	f := newAPIFlags(fs)
	full := fs.Bool("messages", false, "print every message in full after the ladder")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("trace: want exactly one Call-ID")
	}
	ctx := context.Background()
	c, _, err := f.open(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	var raw json.RawMessage
	if err := c.do(ctx, http.MethodGet, "/api/v1/calls/"+url.PathEscape(pos[0])+"/trace", &raw); err != nil {
		return err
	}
	if *f.json {
		_, err := stdout.Write(raw)
		return err
	}
	var t admin.Trace
	if err := json.Unmarshal(raw, &t); err != nil {
		return err
	}
	fmt.Fprint(stdout, trace.Ladder(t.Call))
	if *full {
		for _, m := range t.Messages {
			fmt.Fprintf(stdout, "\n%s %s %s -> %s (%s)\n%s", m.Time.Format("15:04:05.000000"), m.Direction, m.From, m.To,
				m.Transport, m.Raw)
		}
	}
	return nil
}

// cmdCDR is `switchboard cdr list`: call records, newest first, from the
// database (or the API with --server), with the API's filters.
func cmdCDR(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "list" {
		return errors.New("cdr: want list")
	}
	fs := flag.NewFlagSet("cdr list", flag.ContinueOnError)
	f := newAPIFlags(fs)
	limit := fs.Int("limit", 100, "records to show (at most 1000)")
	user := fs.String("user", "", "only calls from or to this user")
	status := fs.String("status", "", "answered, failed, active, or a SIP status code")
	since := fs.String("since", "", "only calls started at or after (RFC 3339, YYYY-MM-DD or Unix seconds)")
	until := fs.String("until", "", "only calls started before")
	cursor := fs.String("cursor", "", "the next page, as a previous list printed it")
	if _, err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	ctx := context.Background()
	var page admin.RecordPage
	if *f.server != "" {
		c, _, err := f.open(ctx)
		if err != nil {
			return err
		}
		defer c.close()
		q := url.Values{}
		for k, v := range map[string]string{"user": *user, "status": *status, "since": *since, "until": *until, "cursor": *cursor} {
			if v != "" {
				q.Set(k, v)
			}
		}
		q.Set("limit", fmt.Sprint(*limit))
		if err := c.do(ctx, http.MethodGet, "/api/v1/cdr?"+q.Encode(), &page); err != nil {
			return err
		}
	} else {
		cfg, err := loadConfig(*f.config)
		if err != nil {
			return err
		}
		db, err := openDBFrom(ctx, cfg)
		if err != nil {
			return err
		}
		defer db.Close()
		if err := cdr.Migrate(ctx, db); err != nil {
			return err
		}
		flt := cdr.Filter{User: *user, Status: *status, Limit: *limit, Cursor: *cursor}
		if flt.Since, err = admin.ParseTime(*since); err != nil {
			return fmt.Errorf("cdr list: --since: %w", err)
		}
		if flt.Until, err = admin.ParseTime(*until); err != nil {
			return fmt.Errorf("cdr list: --until: %w", err)
		}
		recs, next, err := cdr.Query(ctx, db, flt)
		if err != nil {
			return err
		}
		page = admin.RecordPage{Records: admin.Records(recs), Next: next}
	}
	if *f.json {
		return printJSON(stdout, page)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STARTED\tCALLER\tCALLEE\tCALL-ID\tSTATUS\tANSWERED\tENDED\tDURATION\tHANGUP-BY\tREASON\tTRUNK\tDIALLED\tNUMBER\tROUTE\tMEDIA")
	clock := func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		return t.Local().Format("15:04:05")
	}
	for _, r := range page.Records {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			r.Started.Local().Format("2006-01-02 15:04:05"), r.Caller, r.Callee, r.CallID, r.Status,
			clock(r.Answered), clock(r.Ended), time.Duration(r.Duration*float64(time.Second)).Round(time.Millisecond),
			dash(r.HangupBy), dash(r.Reason), dash(r.Trunk), dash(r.Dialled), dash(r.Number), dash(r.Route), dash(r.Media))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if page.Next != "" {
		fmt.Fprintf(stderr, "more records: --cursor %s\n", page.Next)
	}
	return nil
}

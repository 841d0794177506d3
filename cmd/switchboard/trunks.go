package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	gosip "github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard/switchboard/internal/fielderr"
	"github.com/switchboard/switchboard/registrar"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/trunk"
)

// The trunks, numbers, dialplan and limits sections (names fixed by
// issue 13).
type (
	trunkFileConfig struct {
		Name        string        `yaml:"name"`
		Address     string        `yaml:"address"`
		Username    string        `yaml:"username"`
		Password    string        `yaml:"password"`
		Register    bool          `yaml:"register"`
		InboundFrom []string      `yaml:"inbound_from"`
		CallerID    string        `yaml:"caller_id"`
		MaxCalls    int           `yaml:"max_calls"`
		Timeout     time.Duration `yaml:"timeout"`
	}
	dialplanFileConfig struct {
		CountryCode         string            `yaml:"country_code"`
		InternationalPrefix string            `yaml:"international_prefix"`
		NationalPrefix      string            `yaml:"national_prefix"`
		Routes              []routeFileConfig `yaml:"routes"`
	}
	routeFileConfig struct {
		Match  string   `yaml:"match"`
		Trunks []string `yaml:"trunks"`
	}
	limitsFileConfig struct {
		CallsPerUser         int      `yaml:"calls_per_user"`
		ExternalCallsPerHour int      `yaml:"external_calls_per_hour"`
		Blocked              []string `yaml:"blocked"`
	}
)

// trunkConfig builds the trunk package's Config from the file (its
// collaborators are the caller's to set).
func (c *fileConfig) trunkConfig() trunk.Config {
	tc := trunk.Config{
		Numbers: c.Numbers,
		Dialplan: trunk.Dialplan{
			CountryCode:         c.Dialplan.CountryCode,
			InternationalPrefix: c.Dialplan.InternationalPrefix,
			NationalPrefix:      c.Dialplan.NationalPrefix,
		},
		Limits: trunk.Limits{
			CallsPerUser:         c.Limits.CallsPerUser,
			ExternalCallsPerHour: c.Limits.ExternalCallsPerHour,
			Blocked:              c.Limits.Blocked,
		},
		Domain: c.Domain,
	}
	for _, t := range c.Trunks {
		tc.Trunks = append(tc.Trunks, trunk.Trunk{
			Name: t.Name, Address: t.Address, Username: t.Username, Password: t.Password, Register: t.Register,
			InboundFrom: t.InboundFrom, CallerID: t.CallerID, MaxCalls: t.MaxCalls, Timeout: t.Timeout,
		})
	}
	for _, r := range c.Dialplan.Routes {
		tc.Dialplan.Routes = append(tc.Dialplan.Routes, trunk.Route{Match: r.Match, Trunks: r.Trunks})
	}
	return tc
}

// checkTrunks validates the trunk sections with the package's own rules,
// naming the key at fault.
func (c *fileConfig) checkTrunks() error {
	err := c.trunkConfig().Validate()
	if err == nil {
		return nil
	}
	var fe *fielderr.Error
	if errors.As(err, &fe) {
		return fmt.Errorf("%s: %w", trunkKey(fe.Field), fe.Err)
	}
	return fmt.Errorf("trunks: %w", err)
}

// trunkKey turns a trunk.Config field path into its configuration key:
// "Trunks[1].InboundFrom[0]" → "trunks[1].inbound_from[0]",
// "Dialplan.Routes[0].Trunks[2]" → "dialplan.routes[0].trunks[2]",
// "Numbers[030 123]" → `numbers["030 123"]`. The package's Config follows
// the file's shape, so the mapping is by name.
func trunkKey(field string) string {
	if rest, ok := strings.CutPrefix(field, "Numbers["); ok {
		return fmt.Sprintf("numbers[%q]", strings.TrimSuffix(rest, "]"))
	}
	parts := strings.Split(field, ".")
	for i, p := range parts {
		name, index, _ := strings.Cut(p, "[")
		if index != "" {
			index = "[" + index
		}
		parts[i] = snake(name) + index
	}
	return strings.Join(parts, ".")
}

// snake writes a Go field name as a configuration key: CallerID →
// caller_id, ExternalCallsPerHour → external_calls_per_hour.
func snake(s string) string {
	var b strings.Builder
	rs := []rune(s)
	for i, r := range rs {
		if unicode.IsUpper(r) && i > 0 && unicode.IsLower(rs[i-1]) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}

// sipLink hands the trunks' registration client the SIP edge, which is
// built after them (the edge takes the trunks as its Router); it is set
// before anything is served.
type sipLink struct{ srv *sip.Server }

// Originate sends through the SIP edge (see trunk.Transport).
func (l *sipLink) Originate(ctx context.Context, req *gosip.Request, transport, dest string) (gosip.ClientTransaction, error) {
	if l.srv == nil {
		return nil, errors.New("sip edge not built")
	}
	return l.srv.Originate(ctx, req, transport, dest)
}

// ContactURI is the edge's address for a transport (see trunk.Transport).
func (l *sipLink) ContactURI(transport, dest string) (gosip.Uri, bool) {
	if l.srv == nil {
		return gosip.Uri{}, false
	}
	return l.srv.ContactURI(transport, dest)
}

// buildTrunks makes the trunk component, the SIP edge's Router; the
// returned link is to be given the edge once it is built.
func (sw *switchboard) buildTrunks(ctx context.Context, cfg *fileConfig, reg *registrar.Registrar, metrics prometheus.Registerer) (*trunk.Trunks, *sipLink, error) {
	tc := cfg.trunkConfig()
	link := &sipLink{}
	tc.Classes, tc.Transport, tc.DB, tc.Logger, tc.Metrics = reg.Users(), link, sw.db, sw.log, metrics
	t, err := trunk.New(ctx, tc)
	if err != nil {
		return nil, nil, err
	}
	return t, link, nil
}

// cmdTrunk is `switchboard trunk list`: each configured trunk with its
// registration state as the running switch last wrote it to the database
// (so it works whether or not the switch runs, without the admin API).
func cmdTrunk(args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "list" {
		return errors.New("trunk: want list")
	}
	fs := flag.NewFlagSet("trunk list", flag.ContinueOnError)
	ctx := context.Background()
	_, cfg, db, err := openDBCommand(ctx, fs, args[1:])
	if err != nil {
		return err
	}
	defer db.Close()
	if err := trunk.Migrate(ctx, db); err != nil {
		return err
	}
	states, err := trunk.States(ctx, db)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tADDRESS\tREGISTER\tSTATE\tEXPIRES\tUPDATED\tLAST-ERROR")
	for _, t := range cfg.Trunks {
		st := states[t.Name]
		state, expires, updated := "-", "-", "-"
		if t.Register {
			state = dash(st.State)
			if !st.Expires.IsZero() {
				expires = st.Expires.Local().Format("2006-01-02 15:04:05")
			}
			if !st.Updated.IsZero() {
				updated = st.Updated.Local().Format("2006-01-02 15:04:05")
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%t\t%s\t%s\t%s\t%s\n", t.Name, t.Address, t.Register, state, expires, updated, dash(st.LastError))
	}
	return tw.Flush()
}

package trunk

import (
	"errors"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/internal/fielderr"
)

// validConfig is the example configuration.
func validConfig() Config {
	return Config{
		Trunks: []Trunk{
			{Name: "carrier1", Address: "sip:sip.carrier.example:5060;transport=udp", Username: "u1", Password: "p1",
				Register: true, InboundFrom: []string{"198.51.100.0/24"}, CallerID: "+4930999", MaxCalls: 10},
			{Name: "carrier2", Address: "sip:192.0.2.7", InboundFrom: []string{"192.0.2.7"}},
		},
		Numbers: map[string][]string{"+4930123456": {"alice"}, "030 123457": {"bob", "carol"}},
		Dialplan: Dialplan{CountryCode: "49", InternationalPrefix: "00", Routes: []Route{
			{Match: `^\+49`, Trunks: []string{"carrier1", "carrier2"}},
			{Match: `^\+`, Trunks: []string{"carrier2"}},
		}},
		Limits: Limits{CallsPerUser: 2, ExternalCallsPerHour: 60, Blocked: []string{`^\+4990`, `^\+882`}},
	}
}

func TestValidate(t *testing.T) {
	if err := validConfig().Validate(); err != nil {
		t.Fatalf("the issue's example: %v", err)
	}
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("zero Config: %v", err)
	}
	for _, c := range []struct {
		name  string
		edit  func(*Config)
		field string
		msg   string
	}{
		{"unknown trunk in a route", func(c *Config) { c.Dialplan.Routes[0].Trunks[1] = "carrier9" },
			"Dialplan.Routes[0].Trunks[1]", `no trunk is named "carrier9"`},
		{"route without trunks", func(c *Config) { c.Dialplan.Routes[1].Trunks = nil }, "Dialplan.Routes[1].Trunks", "at least one"},
		{"bad route regex", func(c *Config) { c.Dialplan.Routes[1].Match = `^\+(` }, "Dialplan.Routes[1].Match", "regular expression"},
		{"bad blocked regex", func(c *Config) { c.Limits.Blocked = append(c.Limits.Blocked, "[") }, "Limits.Blocked[2]", "regular expression"},
		{"overlapping numbers", func(c *Config) { c.Numbers["030123456"] = []string{"dave"} }, "Numbers[030123456]", `same number as "+4930123456"`},
		{"number that is none", func(c *Config) { c.Numbers["alice"] = []string{"alice"} }, "Numbers[alice]", "not a telephone number"},
		{"number ringing nobody", func(c *Config) { c.Numbers["+4930555"] = nil }, "Numbers[+4930555]", "at least one user"},
		{"bad user", func(c *Config) { c.Numbers["+4930555"] = []string{"a b"} }, "Numbers[+4930555]", "not a user name"},
		{"duplicate trunk", func(c *Config) { c.Trunks[1].Name = "carrier1" }, "Trunks[1].Name", "defined twice"},
		{"bad trunk name", func(c *Config) { c.Trunks[1].Name = "car rier" }, "Trunks[1].Name", "letters"},
		{"bad address", func(c *Config) { c.Trunks[0].Address = "carrier.example" }, "Trunks[0].Address", "SIP URI"},
		{"bad transport", func(c *Config) { c.Trunks[0].Address = "sip:carrier.example;transport=sctp" }, "Trunks[0].Address", "transport"},
		{"bad CIDR", func(c *Config) { c.Trunks[1].InboundFrom = []string{"192.0.2.0/24", "nowhere"} }, "Trunks[1].InboundFrom[1]", "CIDR"},
		{"bad caller_id", func(c *Config) { c.Trunks[0].CallerID = "reception" }, "Trunks[0].CallerID", "not a telephone number"},
		{"register without username", func(c *Config) { c.Trunks[0].Username = ""; c.Trunks[0].Password = "" }, "Trunks[0].Username", "needs a username"},
		{"negative max_calls", func(c *Config) { c.Trunks[0].MaxCalls = -1 }, "Trunks[0].MaxCalls", "negative"},
		{"negative limit", func(c *Config) { c.Limits.CallsPerUser = -1 }, "Limits.CallsPerUser", "negative"},
		{"bad country code", func(c *Config) { c.Dialplan.CountryCode = "+49" }, "Dialplan.CountryCode", "digits"},
		{"prefix clash", func(c *Config) { c.Dialplan.NationalPrefix = "00" }, "Dialplan.NationalPrefix", "international prefix"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := validConfig()
			c.edit(&cfg)
			err := cfg.Validate()
			var fe *fielderr.Error
			if !errors.As(err, &fe) {
				t.Fatalf("Validate = %v, want a field error on %s", err, c.field)
			}
			if fe.Field != c.field || !strings.Contains(fe.Err.Error(), c.msg) {
				t.Errorf("Validate = %s: %v; want %s: …%s…", fe.Field, fe.Err, c.field, c.msg)
			}
		})
	}
}

func TestCompiledTrunk(t *testing.T) {
	cfg := validConfig()
	cfg.Trunks = append(cfg.Trunks,
		Trunk{Name: "tls", Address: "sips:carrier.example"},
		Trunk{Name: "tcp", Address: "sip:[2001:db8::1]:5070;transport=tcp"})
	cfg.setDefaults()
	p, err := cfg.compile()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"carrier1": "UDP sip.carrier.example:5060", "carrier2": "UDP 192.0.2.7:5060",
		"tls": "TLS carrier.example:5061", "tcp": "TCP [2001:db8::1]:5070",
	} {
		ti := p.byName[name]
		if got := ti.transport + " " + ti.dest; got != want {
			t.Errorf("%s: %s, want %s", name, got, want)
		}
		if ti.cfg.Timeout != DefaultTimeout {
			t.Errorf("%s: timeout %s", name, ti.cfg.Timeout)
		}
	}
	if got := p.dids["carol"]; len(got) != 1 || got[0] != "+4930123457" {
		t.Errorf("carol's numbers %v", got)
	}
}

package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// issueTrunks is the configuration of issue 13, as written there.
const issueTrunks = `
trunks:
  - name: carrier1
    address: sip:sip.carrier.example:5060;transport=udp
    username: ""
    password: ""
    register: false
    inbound_from: []
    caller_id: ""
    max_calls: 0
  - {name: carrier2, address: "sip:198.51.100.7", inbound_from: [198.51.100.0/24], timeout: 2s}
numbers:
  "+4930123456": [alice]
dialplan:
  country_code: "49"
  international_prefix: "00"
  routes:
    - {match: "^\\+49", trunks: [carrier1, carrier2]}
    - {match: "^\\+", trunks: [carrier2]}
limits:
  calls_per_user: 2
  external_calls_per_hour: 60
  blocked: ["^\\+4990", "^\\+882"]
`

func TestTrunkConfig(t *testing.T) {
	c, err := loadConfig(writeConfig(t, issueTrunks))
	if err != nil {
		t.Fatalf("the issue's configuration: %v", err)
	}
	tc := c.trunkConfig()
	if len(tc.Trunks) != 2 || tc.Trunks[1].Timeout != 2*time.Second || tc.Trunks[1].InboundFrom[0] != "198.51.100.0/24" {
		t.Errorf("trunks %+v", tc.Trunks)
	}
	if len(tc.Dialplan.Routes) != 2 || tc.Dialplan.Routes[0].Match != `^\+49` || tc.Dialplan.Routes[1].Trunks[0] != "carrier2" {
		t.Errorf("routes %+v", tc.Dialplan.Routes)
	}
	if tc.Dialplan.CountryCode != "49" || tc.Dialplan.InternationalPrefix != "00" || tc.Dialplan.NationalPrefix != "0" {
		t.Errorf("dial plan %+v", tc.Dialplan)
	}
	if tc.Limits.CallsPerUser != 2 || tc.Limits.ExternalCallsPerHour != 60 || len(tc.Limits.Blocked) != 2 || tc.Domain != c.Domain {
		t.Errorf("limits %+v", tc.Limits)
	}
	// The shipped defaults: no trunks, the issue's dial plan and limits.
	d, err := loadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Trunks) != 0 || len(d.Numbers) != 0 || len(d.Dialplan.Routes) != 0 || d.Limits.CallsPerUser != 2 ||
		d.Limits.ExternalCallsPerHour != 60 || len(d.Limits.Blocked) != 2 || d.Dialplan.CountryCode != "49" {
		t.Errorf("defaults %+v %+v %+v", d.Trunks, d.Dialplan, d.Limits)
	}
	// Unquoted digits are the digits written.
	u, err := loadConfig(writeConfig(t, "dialplan: {country_code: 49, international_prefix: 00, national_prefix: 0}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if dp := u.trunkConfig().Dialplan; dp.CountryCode != "49" || dp.InternationalPrefix != "00" || dp.NationalPrefix != "0" {
		t.Errorf("unquoted prefixes: %+v", dp)
	}
}

// TestTrunkConfigErrors: bad trunk configuration stops start-up with the
// key at fault.
func TestTrunkConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, edit, replace, want string
	}{
		{"unknown trunk in a route", "trunks: [carrier1, carrier2]}", "trunks: [carrier1, carrier9]}", `dialplan.routes[0].trunks[1]: no trunk is named "carrier9"`},
		{"bad route regex", `match: "^\\+"`, `match: "^\\+("`, "dialplan.routes[1].match:"},
		{"bad blocked regex", `"^\\+882"]`, `"^\\+882", "(("]`, "limits.blocked[2]:"},
		{"overlapping numbers", `"+4930123456": [alice]`, `"+4930123456": [alice]` + "\n  \"030 123456\": [bob]", `numbers["030 123456"]: "030 123456" is the same number as "+4930123456"`},
		{"bad CIDR", "inbound_from: [198.51.100.0/24]", "inbound_from: [198.51.100.0/33]", "trunks[1].inbound_from[0]:"},
		{"bad address", "address: sip:sip.carrier.example:5060;transport=udp", "address: sip.carrier.example", "trunks[0].address:"},
		{"register without username", "register: false", "register: true", "trunks[0].username:"},
		{"bad caller_id", `caller_id: ""`, `caller_id: "reception"`, "trunks[0].caller_id:"},
		{"negative limit", "calls_per_user: 2", "calls_per_user: -2", "limits.calls_per_user:"},
		{"bad country code", `country_code: "49"`, `country_code: "+49"`, "dialplan.country_code:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(issueTrunks, tc.edit) {
				t.Fatalf("test config has no %q", tc.edit)
			}
			_, err := loadConfig(writeConfig(t, strings.Replace(issueTrunks, tc.edit, tc.replace, 1)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	// yaml.v3 refuses a key written twice: the same number twice is caught
	// there, with its line.
	_, err := loadConfig(writeConfig(t, strings.Replace(issueTrunks, `"+4930123456": [alice]`, `"+4930123456": [alice]`+"\n  \"+4930123456\": [bob]", 1)))
	if err == nil || !strings.Contains(err.Error(), "+4930123456") {
		t.Errorf("a number written twice: %v", err)
	}
}

func TestTrunkKey(t *testing.T) {
	for field, key := range map[string]string{
		"Trunks[1].InboundFrom[0]":     "trunks[1].inbound_from[0]",
		"Trunks[0].CallerID":           "trunks[0].caller_id",
		"Dialplan.Routes[0].Trunks[2]": "dialplan.routes[0].trunks[2]",
		"Dialplan.InternationalPrefix": "dialplan.international_prefix",
		"Limits.ExternalCallsPerHour":  "limits.external_calls_per_hour",
		"Numbers[030 123.45]":          `numbers["030 123.45"]`,
		"Trunks[3].MaxCalls":           "trunks[3].max_calls",
	} {
		if got := trunkKey(field); got != key {
			t.Errorf("trunkKey(%q) = %q, want %q", field, got, key)
		}
	}
}

// TestUserCallingClass: user add --calls, user set, user list.
func TestUserCallingClass(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, "database: "+filepath.Join(dir, "sb.db")+"\n")
	cli := func(args ...string) (string, int) {
		var out, errOut bytes.Buffer
		code := run(append(args, "--config", cfg), &out, &errOut)
		return out.String() + errOut.String(), code
	}
	if out, code := cli("user", "add", "alice", "--password", "pw"); code != 0 {
		t.Fatalf("user add: %s", out)
	}
	if out, code := cli("user", "add", "ingrid", "--password", "pw", "--calls", "internal"); code != 0 {
		t.Fatalf("user add --calls internal: %s", out)
	}
	if out, code := cli("user", "add", "ivan", "--password", "pw", "--calls", "galactic"); code == 0 || !strings.Contains(out, "internal, national or international") {
		t.Errorf("user add with a bad class: %d %s", code, out)
	}
	if out, code := cli("user", "set", "alice", "--calls", "international"); code != 0 {
		t.Fatalf("user set: %s", out)
	}
	if out, code := cli("user", "set", "nobody", "--calls", "national"); code == 0 {
		t.Errorf("user set of an unknown user: %s", out)
	}
	out, _ := cli("user", "list")
	for _, want := range []string{"CALLS", "alice  ", "international", "ingrid", "internal"} {
		if !strings.Contains(out, want) {
			t.Errorf("user list lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "ivan") {
		t.Errorf("a user with a bad class was added:\n%s", out)
	}
	// trunk list with no trunks: the header only.
	if out, code := cli("trunk", "list"); code != 0 || !strings.Contains(out, "LAST-ERROR") {
		t.Errorf("trunk list: %d %s", code, out)
	}
}

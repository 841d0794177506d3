package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/sqldb"
	"github.com/switchboard/switchboard/registrar"
)

// writeConfig writes text as a config file in a temp dir and returns its path.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "switchboard.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaultConfig(t *testing.T) {
	c, err := loadConfig("")
	if err != nil {
		t.Fatalf("embedded defaults: %v", err)
	}
	if c.Domain != "switchboard.local" || c.Database != "switchboard.db" {
		t.Errorf("domain %q database %q", c.Domain, c.Database)
	}
	if c.SIP.TimerC != 180*time.Second || c.SIP.MaxMessageSize != 65535 {
		t.Errorf("sip: timer_c %s max_message_size %d", c.SIP.TimerC, c.SIP.MaxMessageSize)
	}
	if cc := c.SIP.Connections; cc.IdleTimeout != 60*time.Second || cc.MaxPerSource != 100 || cc.Max != 0 {
		t.Errorf("sip.connections %+v", cc)
	}
	if c.Registrar.MinExpires != 60 || c.Registrar.DefaultExpires != 3600 || c.Registrar.MaxExpires != 86400 || c.Registrar.MaxContacts != 10 {
		t.Errorf("registrar %+v", c.Registrar)
	}
	if strings.Join(c.Security.Algorithms, ",") != "MD5" {
		t.Errorf("digest algorithms %q", c.Security.Algorithms)
	}
	rc := c.registrarConfig()
	if rc.Realm != c.Domain || rc.MinExpires != time.Minute || rc.AuthFailures != 10 || rc.NonceTTL != 5*time.Minute {
		t.Errorf("registrarConfig %+v", rc)
	}
	sc, err := c.sipConfig()
	if err != nil {
		t.Fatal(err)
	}
	if len(sc.Listen) != len(c.SIP.Listen) || sc.Domain != c.Domain || sc.TimerC != c.SIP.TimerC {
		t.Errorf("sipConfig %+v", sc)
	}
	if n := sc.NAT; n.KeepaliveInterval != 25*time.Second || n.KeepaliveMethod != "options" || n.KeepaliveFailures != 3 ||
		n.Detect.String() != "[private_contact, via_mismatch, invalid_host, flow]" || rc.FlowTimer != 25*time.Second {
		t.Errorf("nat: sip %+v, registrar Flow-Timer %s", n, rc.FlowTimer)
	}
	// 0 in the file turns keep-alives off (the packages take 0 as the default).
	c.NAT.KeepaliveInterval = 0
	if sc, _ := c.sipConfig(); sc.NAT.KeepaliveInterval >= 0 || c.registrarConfig().FlowTimer != 0 {
		t.Errorf("keepalive_interval 0: sip %s, Flow-Timer %s", sc.NAT.KeepaliveInterval, c.registrarConfig().FlowTimer)
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"": 0, "0": 0, "512MiB": 512 << 20, "2GiB": 2 << 30, "1 GB": 1e9,
		"64KiB": 64 << 10, "1048576": 1 << 20, "100B": 100} {
		if got, err := parseBytes(in); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"-1", "1TiB", "MiB", "1.5GiB", "9999999999GiB"} {
		if _, err := parseBytes(in); err == nil {
			t.Errorf("parseBytes(%q) accepted", in)
		}
	}
}

func TestConfigFileOverridesDefaults(t *testing.T) {
	p := writeConfig(t, "domain: example.org\nregistrar:\n  min_expires: 30\nsecurity:\n  auth_failures: 0\n")
	c, err := loadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Domain != "example.org" || c.Registrar.MinExpires != 30 {
		t.Errorf("file values not applied: domain %q min_expires %d", c.Domain, c.Registrar.MinExpires)
	}
	if c.Registrar.MaxExpires != 86400 || c.SIP.TimerC != 180*time.Second || len(c.SIP.Listen) == 0 {
		t.Errorf("defaults lost under a partial file: %+v", c)
	}
	if rc := c.registrarConfig(); rc.AuthFailures >= 0 {
		t.Errorf("auth_failures: 0 in the file must disable banning, got AuthFailures %d", rc.AuthFailures)
	}
	// An empty file changes nothing.
	if _, err := loadConfig(writeConfig(t, "")); err != nil {
		t.Errorf("empty file: %v", err)
	}
	if _, err := loadConfig(writeConfig(t, "# only a comment\n")); err != nil {
		t.Errorf("comment-only file: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // substrings of the error
	}{
		{"unknown key", "domian: example.org\n", []string{"domian"}},
		{"unknown nested key", "registrar:\n  min_expire: 30\n", []string{"min_expire"}},
		{"unknown section", "sipp:\n  listen: []\n", []string{"sipp"}},
		{"not a number", "registrar: {min_expires: \"abc\"}\n", []string{"abc"}},
		{"not a duration", "sip:\n  timer_c: soon\n", []string{"soon"}},
		{"list expected", "sip:\n  listen: udp://127.0.0.1:5060\n", []string{"line 2"}},
		{"not YAML", "domain: [unclosed\n", []string{"config"}},
		{"empty domain", "domain: \"\"\n", []string{"domain"}},
		{"domain with a port", "domain: example.org:5060\n", []string{"domain"}},
		{"bad log level", "log: {level: loud}\n", []string{"log.level", "loud"}},
		{"bad listener", "sip:\n  listen: [\"udp://example.org:5060\"]\n", []string{"sip.listen[0]"}},
		{"websocket listener", "sip:\n  listen: [\"ws://127.0.0.1:80\"]\n", []string{"sip.listen[0]"}},
		{"tls certificate without key", "sip:\n  tls: {cert: /nonexistent.pem}\n", []string{"sip.tls"}},
		{"https certificate without key", "http:\n  https: {cert: /nonexistent.pem}\n", []string{"http.https"}},
		{"https listen not host:port", "http:\n  https: {listen: \"8443\"}\n", []string{"http.https.listen"}},
		{"acme domain with a port", "http:\n  https: {acme: {domains: [\"a.example:443\"]}}\n", []string{"http.https.acme.domains[0]"}},
		{"timer C too short", "sip:\n  timer_c: 100ms\n", []string{"sip.timer_c"}},
		{"no idle timeout", "sip:\n  connections: {idle_timeout: 0s}\n", []string{"sip.connections"}},
		{"negative connection cap", "sip:\n  connections: {max: -1}\n", []string{"sip.connections"}},
		{"min above max", "registrar: {min_expires: 600, max_expires: 60}\n", []string{"min_expires"}},
		{"default outside range", "registrar: {default_expires: 10}\n", []string{"default_expires"}},
		{"no contacts", "registrar: {max_contacts: 0}\n", []string{"max_contacts"}},
		{"bad algorithm", "security: {digest_algorithms: [SHA-1]}\n", []string{"digest_algorithms", "SHA-1"}},
		{"no algorithm", "security: {digest_algorithms: []}\n", []string{"digest_algorithms"}},
		{"negative window", "security: {auth_window: -1s}\n", []string{"auth_window"}},
		{"no listener at all", "sip: {listen: []}\nhttp: {listen: \"\"}\n", []string{"sip.listen"}},
		{"unknown NAT test", "nat: {detect: [via_mismatch, contact_port]}\n", []string{"nat.detect[1]", "contact_port"}},
		{"bad keep-alive method", "nat: {keepalive_method: ping}\n", []string{"nat.keepalive_method", "ping"}},
		{"keep-alive interval too short", "nat: {keepalive_interval: 500ms}\n", []string{"nat.keepalive_interval"}},
		{"no keep-alive failures", "nat: {keepalive_failures: 0}\n", []string{"nat.keepalive_failures"}},
		{"gc percent too low", "runtime: {gc_percent: 0}\n", []string{"runtime.gc_percent"}},
		{"memory limit not a size", "runtime: {memory_limit: lots}\n", []string{"runtime.memory_limit", "lots"}},
		{"memory limit in bits", "runtime: {memory_limit: 1Gb}\n", []string{"runtime.memory_limit"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := writeConfig(t, tc.yaml)
			_, err := loadConfig(p)
			if err == nil {
				t.Fatalf("config %q loaded without error", tc.yaml)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestBadValueErrorNamesTheKey: configs/switchboard.yaml promises that "an
// unknown key or a bad value stops start-up with a message naming the key".
func TestBadValueErrorNamesTheKey(t *testing.T) {
	for _, tc := range []struct{ yaml, key string }{
		{"registrar: {min_expires: \"abc\"}\n", "min_expires"},
		{"sip:\n  timer_c: soon\n", "timer_c"},
		{"sip:\n  listen: udp://127.0.0.1:5060\n", "listen"},
	} {
		_, err := loadConfig(writeConfig(t, tc.yaml))
		if err == nil {
			t.Fatalf("config %q loaded", tc.yaml)
		}
		if !strings.Contains(err.Error(), tc.key) {
			t.Errorf("error for a bad %s value does not name the key: %v", tc.key, err)
		}
	}
}

func TestMissingConfigFile(t *testing.T) {
	_, err := loadConfig(filepath.Join(t.TempDir(), "nope.yaml"))
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing config file: %v", err)
	}
}

// TestCorruptDatabase: a database file that is not a healthy SQLite
// database stops the CLI and the server with an error saying so, and is
// left exactly as it was (no repair, no truncation, no WAL replay).
func TestCorruptDatabase(t *testing.T) {
	ctx := context.Background()
	garbage := make([]byte, 8192)
	rand.Read(garbage)
	tests := []struct {
		name string
		make func(t *testing.T, path string) []byte
	}{
		{"garbage", func(t *testing.T, path string) []byte { return garbage }},
		{"text", func(t *testing.T, path string) []byte {
			return []byte(strings.Repeat("this is not a database\n", 50))
		}},
		{"damaged pages", func(t *testing.T, path string) []byte {
			db, err := sqldb.Open(ctx, path)
			if err != nil {
				t.Fatal(err)
			}
			users, err := registrar.NewUsers(ctx, db, "switchboard.local", nil)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 200; i++ {
				if err := users.Add(ctx, "user"+strings.Repeat("x", i%50)+string(rune('a'+i%26))+string(rune('a'+i/26)), "pw"); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := db.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
				t.Fatal(err)
			}
			db.Close()
			os.Remove(path + "-wal")
			os.Remove(path + "-shm")
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if len(data) < 3*4096 {
				t.Fatalf("database only %d bytes", len(data))
			}
			for i := 4096; i < len(data); i++ {
				data[i] = garbage[i%len(garbage)]
			}
			return data
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "switchboard.db")
			data := tc.make(t, path)
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			cfg := writeConfig(t, "database: "+path+"\nsip: {listen: [\"udp://127.0.0.1:0\"]}\nhttp: {listen: \"127.0.0.1:0\"}\nturn: {enabled: false}\n")

			db, err := sqldb.Open(ctx, path)
			if err == nil {
				db.Close()
				t.Fatal("sqldb.Open accepted a corrupt database")
			}
			if !errors.Is(err, sqldb.ErrCorrupt) || !strings.Contains(err.Error(), "corrupt") || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q: want ErrCorrupt naming the file", err)
			}

			// The CLI refuses it the same way, with exit status 1.
			var stdout, stderr bytes.Buffer
			if code := run([]string{"user", "list", "--config", cfg}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "corrupt") {
				t.Errorf("user list on a corrupt database: exit %d, stderr %q", code, stderr.String())
			}
			// And so does the server, before binding anything.
			c, err := loadConfig(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if sw, err := start(ctx, c, newLogger(&stderr, "error", "text")); err == nil {
				sw.shutdown(ctx)
				t.Errorf("server started on a corrupt database")
			} else if !errors.Is(err, sqldb.ErrCorrupt) {
				t.Errorf("server start: %v, want ErrCorrupt", err)
			}

			after, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(after, data) {
				t.Errorf("the corrupt file was modified (%d bytes before, %d after)", len(data), len(after))
			}
			for _, side := range []string{"-wal", "-journal"} {
				if st, err := os.Stat(path + side); err == nil && st.Size() > 0 {
					t.Errorf("opening left a non-empty %s file", side)
				}
			}
		})
	}
}

func TestDatabaseNotWritable(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		path func(t *testing.T) string
		want []string
	}{
		{"directory missing", func(t *testing.T) string { return filepath.Join(t.TempDir(), "missing", "switchboard.db") }, []string{"does not exist", "missing"}},
		{"path is a directory", func(t *testing.T) string { return t.TempDir() }, []string{"database"}},
		{"read-only directory", func(t *testing.T) string {
			if os.Geteuid() == 0 {
				// Permissions do not stop root: /proc takes no new files.
				return "/proc/switchboard-test.db"
			}
			dir := t.TempDir()
			if err := os.Chmod(dir, 0o555); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Chmod(dir, 0o755) })
			return filepath.Join(dir, "switchboard.db")
		}, []string{"switchboard"}},
		{"read-only file", func(t *testing.T) string {
			if os.Geteuid() == 0 {
				t.Skip("permissions do not stop root")
			}
			dir := t.TempDir()
			p := filepath.Join(dir, "switchboard.db")
			db, err := sqldb.Open(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			db.Close()
			os.Chmod(p, 0o444)
			os.Chmod(dir, 0o555)
			t.Cleanup(func() { os.Chmod(dir, 0o755) })
			return p
		}, []string{"writable"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.path(t)
			db, err := sqldb.Open(ctx, p)
			if err == nil {
				db.Close()
				t.Fatalf("sqldb.Open(%q) succeeded", p)
			}
			if !strings.Contains(err.Error(), p) && !strings.Contains(err.Error(), filepath.Dir(p)) {
				t.Errorf("error %q does not name the path", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

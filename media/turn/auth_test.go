package turn

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // TURN REST
	"encoding/base64"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/turn/v5"
)

func TestRESTCredentials(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	user, pass := RESTCredentials([]byte("s3cret"), "alice", time.Hour, now)
	if user != "1700003600:alice" {
		t.Fatalf("username = %q", user)
	}
	mac := hmac.New(sha1.New, []byte("s3cret"))
	mac.Write([]byte(user))
	if want := base64.StdEncoding.EncodeToString(mac.Sum(nil)); pass != want {
		t.Fatalf("password = %q, want %q", pass, want)
	}
	// pion/turn's own REST verifier agrees (it is what coturn implements too).
	user, pass = RESTCredentials([]byte("s3cret"), "alice", time.Hour, time.Now())
	_, key, ok := turn.LongTermTURNRESTAuthHandler("s3cret", nil)(
		&turn.RequestAttributes{Username: user, Realm: testRealm, SrcAddr: &net.UDPAddr{}})
	if !ok || string(key) != string(longTermKey(user, testRealm, pass)) {
		t.Fatalf("pion's REST handler disagrees: ok=%v", ok)
	}
}

func TestParseRESTUsername(t *testing.T) {
	tests := []struct {
		in     string
		expiry int64
		user   string
		ok     bool
	}{
		{"1700000000:alice", 1700000000, "alice", true},
		{"0:a", 0, "a", true},
		{"1700000000:alice:x", 1700000000, "alice:x", true},
		{"alice", 0, "", false},
		{"alice:1700000000", 0, "", false},
		{":alice", 0, "", false},
		{"1700000000:", 0, "", false},
		{"-1:alice", 0, "", false},
		{"+1:alice", 0, "", false},
		{"12a:alice", 0, "", false},
		{"99999999999999999999:alice", 0, "", false},
		{"9223372036854775808:alice", 0, "", false},
		{"", 0, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			e, u, ok := parseRESTUsername(tt.in)
			if ok != tt.ok || e != tt.expiry || u != tt.user {
				t.Errorf("parseRESTUsername(%q) = %d, %q, %v; want %d, %q, %v", tt.in, e, u, ok, tt.expiry, tt.user, tt.ok)
			}
		})
	}
}

func FuzzParseRESTUsername(f *testing.F) {
	for _, s := range []string{"1700000000:alice", "alice", ":", "0:", "1:2:3", "99999999999999999999:x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, u, ok := parseRESTUsername(s)
		if !ok {
			if e != 0 || u != "" {
				t.Fatalf("not ok but returned %d %q", e, u)
			}

			return
		}
		if e < 0 || u == "" || !strings.HasSuffix(s, ":"+u) {
			t.Fatalf("parseRESTUsername(%q) = %d, %q", s, e, u)
		}
		ts := strings.TrimSuffix(s, ":"+u)
		if n, err := strconv.ParseInt(ts, 10, 64); err != nil || n != e {
			t.Fatalf("expiry %d does not match %q", e, ts)
		}
		if quotaUser(s) != u {
			t.Fatalf("quotaUser(%q) = %q", s, quotaUser(s))
		}
	})
}

func TestAuthKey(t *testing.T) {
	s := startServer(t, nil)
	src := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	now := time.Now()
	restUser, restPass := RESTCredentials(testSecret, "carol", time.Minute, now)
	expiredUser, _ := RESTCredentials(testSecret, "carol", -time.Second, now)
	tests := []struct {
		name     string
		username string
		realm    string
		wantKey  []byte
	}{
		{"static", "alice", testRealm, ha1("alice", "alicepw")},
		{"unknown", "mallory", testRealm, nil},
		{"wrong realm", "alice", "other.test", nil},
		{"rest", restUser, testRealm, longTermKey(restUser, testRealm, restPass)},
		{"rest expired", expiredUser, testRealm, nil},
		{"rest forged", strconv.FormatInt(now.Add(time.Hour).Unix(), 10) + ":alice", testRealm,
			longTermKey(strconv.FormatInt(now.Add(time.Hour).Unix(), 10)+":alice", testRealm,
				restPassword(testSecret, strconv.FormatInt(now.Add(time.Hour).Unix(), 10)+":alice"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, ok := s.authKey(tt.username, tt.realm, src)
			if ok != (tt.wantKey != nil) || string(key) != string(tt.wantKey) {
				t.Errorf("authKey(%q, %q) = %x, %v; want %x", tt.username, tt.realm, key, ok, tt.wantKey)
			}
		})
	}
	if got := s.metric(t, "switchboard_turn_auth_failures_total"); got != 3 {
		t.Errorf("auth failures = %v, want 3", got)
	}
}

func TestAuthKeyWithoutSecret(t *testing.T) {
	s := startServer(t, func(c *Config) { c.Secret = nil })
	user, _ := RESTCredentials([]byte("x"), "alice", time.Hour, time.Now())
	if _, ok := s.authKey(user, testRealm, &net.UDPAddr{}); ok {
		t.Fatal("REST credentials accepted without a secret")
	}
	if _, ok := s.authKey("alice", testRealm, &net.UDPAddr{}); !ok {
		t.Fatal("static credentials refused")
	}
}

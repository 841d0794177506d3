package registrar

import (
	"strings"
	"testing"

	"github.com/icholy/digest"

	"github.com/switchboard/switchboard/internal/siptest"
)

// parseCredentials reads what icholy/digest writes, and responseMatches
// accepts exactly the response it computes.
func TestParseCredentialsMatchesLibrary(t *testing.T) {
	for _, alg := range []string{"MD5", "SHA-256"} {
		for _, qop := range []bool{true, false} {
			chal := &digest.Challenge{Realm: testRealm, Nonce: "n0nce", Algorithm: alg}
			if qop {
				chal.QOP = []string{"auth"}
			}
			cred, err := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:" + testRealm,
				Username: "alice", Password: "pw", Count: 7, Cnonce: "c\"n"})
			if err != nil {
				t.Fatal(err)
			}
			c, ok := parseCredentials(cred.String())
			if !ok {
				t.Fatalf("%s: not parsed: %s", alg, cred)
			}
			if c.username != "alice" || c.realm != testRealm || c.nonce != "n0nce" || c.uri != "sip:"+testRealm ||
				!strings.EqualFold(c.algorithm, alg) {
				t.Errorf("%s: parsed %+v from %s", alg, c, cred)
			}
			if qop && (c.qop != "auth" || c.cnonce != `c"n` || c.nc != "00000007") {
				t.Errorf("%s: qop params %+v from %s", alg, c, cred)
			}
			user := User{Name: "alice", HA1MD5: ha1Of("MD5", "alice", "pw"), HA1SHA256: ha1Of("SHA-256", "alice", "pw")}
			ha1, _ := user.HA1(alg)
			if !responseMatches(&c, alg, ha1, "REGISTER") {
				t.Errorf("%s qop=%v: library's response refused", alg, qop)
			}
			if responseMatches(&c, alg, ha1, "INVITE") {
				t.Errorf("%s qop=%v: response accepted for another method", alg, qop)
			}
			c.response = c.response[:len(c.response)-1] + "0"
			if responseMatches(&c, alg, ha1, "REGISTER") && cred.Response[len(cred.Response)-1] != '0' {
				t.Errorf("%s qop=%v: altered response accepted", alg, qop)
			}
		}
	}
}

func ha1Of(alg, user, pass string) string {
	var out [64]byte
	return string(digestHex(out[:], alg, user, testRealm, pass))
}

func TestParseCredentials(t *testing.T) {
	c, ok := parseCredentials(`digest  USERNAME="bob", Realm = "r", nonce="a\\b\"c",uri="sip:r",response=ABCDEF, nc=0000000a, qop=auth, cnonce="x", opaque=""`)
	if !ok || c.username != "bob" || c.realm != "r" || c.nonce != `a\b"c` || c.response != "ABCDEF" || c.nc != "0000000a" || c.qop != "auth" || c.cnonce != "x" {
		t.Errorf("parsed %+v, %v", c, ok)
	}
	for _, bad := range []string{"", "Basic abc", "Digest", `Digest username="unterminated`, `Digest =x`, `Digestusername="a"`} {
		if _, ok := parseCredentials(bad); ok && bad != "Digest" {
			t.Errorf("%q parsed", bad)
		}
	}
	for s, want := range map[string]uint32{"00000001": 1, "0000000A": 10, "ffffffff": 1<<32 - 1} {
		if n, ok := parseNC(s); !ok || n != want {
			t.Errorf("nc %q = %d, %v", s, n, ok)
		}
	}
	for _, s := range []string{"", "123456789", "0x1", "g"} {
		if _, ok := parseNC(s); ok {
			t.Errorf("nc %q accepted", s)
		}
	}
}

// The challenge to a request and to its retransmission carry the same
// nonce; another request gets another.
func TestChallengeSameForRetransmission(t *testing.T) {
	h := newHarness(t, Config{})
	alice := h.phone("alice")
	m := alice.Register(3600)
	first := siptest.Challenge(h.do(alice, m), "MD5")
	again := siptest.Challenge(h.do(alice, m), "MD5")
	if first == "" || first != again {
		t.Errorf("challenges to one request differ:\n%s\n%s", first, again)
	}
	other := siptest.Challenge(h.do(alice, alice.Register(3600)), "MD5")
	if other == first {
		t.Errorf("two requests got the same challenge %s", other)
	}
	chal, err := digest.ParseChallenge(first)
	if err != nil {
		t.Fatal(err)
	}
	if ours, fresh := h.r.auth.checkNonce(chal.Nonce); !ours || !fresh {
		t.Fatalf("nonce refused: ours %v fresh %v", ours, fresh)
	}
	alt := []byte(chal.Nonce)
	alt[30] = map[bool]byte{true: 'B', false: 'A'}[alt[30] == 'A'] // a MAC character
	if ours, _ := h.r.auth.checkNonce(string(alt)); ours {
		t.Error("altered nonce taken for ours")
	}
}

package registrar

import (
	"testing"

	"github.com/icholy/digest"
)

// A REGISTER received again as it was (its 200 lost: the phone retransmits)
// gets the 200 again without changing anything; the same credentials on
// anything else are a replay (401 stale), also once the binding changed.
func TestRegisterRetransmission(t *testing.T) {
	h := newHarness(t, Config{})
	alice := h.phone("alice")
	res, m := h.register(alice, alice.Register(3600), "MD5")
	wantStatus(t, res, 200)
	before := h.r.Location().Lookup("alice")

	again := h.do(alice, m)
	wantStatus(t, again, 200)
	if got, want := contacts(again), contacts(res); len(got) != 1 || len(want) != 1 || got[0] != want[0] {
		t.Errorf("retransmission listed %v, want %v", got, want)
	}
	after := h.r.Location().Lookup("alice")
	if len(after) != 1 || after[0].Updated != before[0].Updated || after[0].Expires != before[0].Expires {
		t.Errorf("retransmission changed the binding: %+v -> %+v", before, after)
	}

	// The same request with fresh credentials (a client that recomputes
	// them when it sends again): the same answer, nothing changed.
	cred, err := digest.ParseCredentials(m.Get("Authorization"))
	if err != nil {
		t.Fatal(err)
	}
	c2, err := digest.Digest(&digest.Challenge{Realm: cred.Realm, Nonce: cred.Nonce, Algorithm: cred.Algorithm, QOP: []string{"auth"}},
		digest.Options{Method: "REGISTER", URI: cred.URI, Username: "alice", Password: testUsers["alice"], Count: cred.Nc + 1})
	if err != nil {
		t.Fatal(err)
	}
	fresh := m.Clone()
	fresh.Set("Authorization", c2.String())
	wantStatus(t, h.do(alice, fresh), 200)
	if after := h.r.Location().Lookup("alice"); len(after) != 1 || after[0].Updated != before[0].Updated {
		t.Errorf("re-sent REGISTER changed the binding: %+v -> %+v", before, after)
	}

	// Another contact with the same credentials, Call-ID and CSeq: a replay.
	forged := m.Clone()
	forged.Set("Contact", "<sip:alice@192.0.2.66:5060>")
	wantStatus(t, h.do(alice, forged), 401)
	if got := h.r.Location().Lookup("alice"); len(got) != 1 || got[0].Contact != before[0].Contact {
		t.Errorf("forged replay changed the bindings: %+v", got)
	}

	// Once the phone has unregistered, the old REGISTER restores nothing.
	un := alice.Retry(m)
	un.Set("Expires", "0")
	un.Del("Authorization")
	res, _ = h.register(alice, un, "MD5")
	wantStatus(t, res, 200)
	if got := h.r.Location().Lookup("alice"); len(got) != 0 {
		t.Fatalf("unregister left %+v", got)
	}
	wantStatus(t, h.do(alice, m), 401)
	if got := h.r.Location().Lookup("alice"); len(got) != 0 {
		t.Errorf("replayed REGISTER restored %+v", got)
	}
}

package registrar

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	gosip "github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/switchboard/switchboard/internal/siptest"
)

func TestRegisterWithoutCredentialsIsChallenged(t *testing.T) {
	h := newHarness(t, Config{})
	alice := h.phone("alice")

	res := h.do(alice, alice.Register(3600))
	wantStatus(t, res, 401)
	chals := headerValues(res, "WWW-Authenticate")
	if len(chals) != 2 {
		t.Fatalf("got %d WWW-Authenticate headers, want 2 (MD5 and SHA-256):\n%s", len(chals), res)
	}
	var nonces []string
	for i, wantAlg := range []string{"MD5", "SHA-256"} {
		c, err := digest.ParseChallenge(chals[i])
		if err != nil {
			t.Fatalf("challenge %q: %v", chals[i], err)
		}
		if c.Algorithm != wantAlg {
			t.Errorf("challenge %d: algorithm %q, want %q (MD5 first, RFC 8760 order)", i, c.Algorithm, wantAlg)
		}
		if c.Realm != testRealm {
			t.Errorf("challenge %d: realm %q, want %q", i, c.Realm, testRealm)
		}
		if len(c.QOP) != 1 || c.QOP[0] != "auth" {
			t.Errorf("challenge %d: qop %q, want auth", i, c.QOP)
		}
		if c.Stale {
			t.Errorf("challenge %d: stale=true on a first challenge", i)
		}
		if c.Nonce == "" {
			t.Errorf("challenge %d: no nonce", i)
		}
		nonces = append(nonces, c.Nonce)
	}
	if nonces[0] != nonces[1] {
		t.Errorf("challenges carry different nonces %q and %q", nonces[0], nonces[1])
	}
	if n := len(h.r.Location().Lookup("alice")); n != 0 {
		t.Errorf("%d bindings after a refused REGISTER", n)
	}
	if res.GetHeader("Proxy-Authenticate") != nil {
		t.Errorf("a registrar challenge carries Proxy-Authenticate")
	}
}

func TestRegisterDigest(t *testing.T) {
	for _, alg := range []string{"MD5", "SHA-256"} {
		t.Run(alg, func(t *testing.T) {
			h := newHarness(t, Config{})
			alice := h.phone("alice")
			res, _ := h.register(alice, alice.Register(3600), alg)
			wantStatus(t, res, 200)
			want := "<" + alice.Contact() + ">;expires=3600"
			if got := contacts(res); len(got) != 1 || got[0] != want {
				t.Fatalf("200 lists contacts %q, want [%q]", got, want)
			}
			if res.GetHeader("Date") == nil {
				t.Errorf("200 has no Date header")
			}
			bs := h.r.Location().Lookup("alice")
			if len(bs) != 1 {
				t.Fatalf("Lookup: %d bindings, want 1", len(bs))
			}
			b := bs[0]
			if b.Contact != alice.Contact() || b.Transport != "UDP" || b.Source != alice.Addr() || b.NAT {
				t.Errorf("binding %+v: want contact %s over UDP from %s, not NAT", b, alice.Contact(), alice.Addr())
			}
			if d := time.Until(b.Expires); d < 3590*time.Second || d > 3600*time.Second {
				t.Errorf("binding expires in %s, want ~1h", d)
			}
		})
	}
}

func TestRegisterRefused(t *testing.T) {
	tests := []struct {
		name string
		// edit changes the REGISTER that carries credentials.
		creds siptest.Credentials
		edit  func(h *harness, m *siptest.Msg)
		want  int
	}{
		{name: "wrong password", creds: siptest.Credentials{User: "alice", Password: "guess"}, want: 401},
		{name: "unknown user", creds: siptest.Credentials{User: "mallory", Password: "x"}, want: 401},
		{name: "other user's credentials", creds: siptest.Credentials{User: "bob", Password: testUsers["bob"]}, want: 403},
		{name: "credentials for another method", creds: siptest.Credentials{User: "alice", Password: testUsers["alice"]},
			edit: func(h *harness, m *siptest.Msg) {
				// A digest computed for INVITE does not verify for REGISTER.
				v := m.Get("Authorization")
				c, _ := digest.ParseCredentials(v)
				c2, _ := digest.Digest(&digest.Challenge{Realm: c.Realm, Nonce: c.Nonce, Algorithm: c.Algorithm, QOP: []string{"auth"}},
					digest.Options{Method: "INVITE", URI: c.URI, Username: "alice", Password: testUsers["alice"], Cnonce: c.Cnonce, Count: c.Nc})
				m.Set("Authorization", c2.String())
			}, want: 401},
		{name: "nonce not ours", creds: siptest.Credentials{User: "alice", Password: testUsers["alice"]},
			edit: func(h *harness, m *siptest.Msg) {
				c, _ := digest.ParseCredentials(m.Get("Authorization"))
				c2, _ := digest.Digest(&digest.Challenge{Realm: c.Realm, Nonce: "bm90LW91ci1ub25jZQ", Algorithm: c.Algorithm, QOP: []string{"auth"}},
					digest.Options{Method: "REGISTER", URI: c.URI, Username: "alice", Password: testUsers["alice"], Count: 1})
				m.Set("Authorization", c2.String())
			}, want: 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			alice := h.phone("alice")
			m := alice.Register(3600)
			res := h.do(alice, m)
			wantStatus(t, res, 401)
			m = alice.Retry(m)
			if err := siptest.Authorize(m, res, "MD5", tc.creds); err != nil {
				t.Fatal(err)
			}
			if tc.edit != nil {
				tc.edit(h, m)
			}
			res = h.do(alice, m)
			wantStatus(t, res, tc.want)
			if tc.want == 401 && len(headerValues(res, "WWW-Authenticate")) != 2 {
				t.Errorf("401 without a fresh challenge:\n%s", res)
			}
			if n := len(h.r.Location().Lookup("alice")); n != 0 {
				t.Errorf("%d bindings after a refused REGISTER", n)
			}
		})
	}
}

// wrongPassword sends a REGISTER with a wrong password from p and returns
// the answer.
func wrongPassword(h *harness, p *siptest.Phone) int {
	h.t.Helper()
	m := p.Register(3600)
	res := h.do(p, m)
	if res.StatusCode != 401 {
		return res.StatusCode
	}
	m = p.Retry(m)
	if err := siptest.Authorize(m, res, "MD5", siptest.Credentials{User: p.User(), Password: "wrong"}); err != nil {
		h.t.Fatal(err)
	}
	return h.do(p, m).StatusCode
}

func TestRegisterBanAfterRepeatedFailures(t *testing.T) {
	const failures = 3
	h := newHarness(t, Config{AuthFailures: failures, AuthWindow: time.Minute, Ban: time.Hour})
	alice := h.phone("alice")
	for i := 1; i < failures; i++ {
		if got := wrongPassword(h, alice); got != 401 {
			t.Fatalf("wrong password %d of %d: got %d, want 401", i, failures, got)
		}
	}
	// The last failure allowed is still answered with a challenge; from then
	// on the source is refused, even with the right password.
	if got := wrongPassword(h, alice); got != 401 && got != 403 {
		t.Fatalf("wrong password %d: got %d, want 401 or 403", failures, got)
	}
	for i := 0; i < 2; i++ {
		if got := wrongPassword(h, alice); got != 403 {
			t.Fatalf("after %d failures: got %d, want 403", failures, got)
		}
	}
	m := alice.Register(3600)
	res := h.do(alice, m)
	wantStatus(t, res, 403)
	// Credentials for a challenge fetched earlier are refused too.
	res = h.do(alice, alice.Register(3600))
	wantStatus(t, res, 403)
	if n := len(h.r.Location().Lookup("alice")); n != 0 {
		t.Errorf("banned source registered %d bindings", n)
	}

	// Another source is not affected.
	bob := h.phone("bob")
	other := "127.0.0.2:5060"
	m = bob.Register(3600)
	res = h.doFrom(other, "UDP", m)
	wantStatus(t, res, 401)
	m = bob.Authenticate(m, res, "MD5")
	wantStatus(t, h.doFrom(other, "UDP", m), 200)
}

func TestRegisterStaleNonce(t *testing.T) {
	h := newHarness(t, Config{NonceTTL: time.Minute})
	now := time.Now()
	h.r.auth.now = func() time.Time { return now }
	alice := h.phone("alice")

	m := alice.Register(3600)
	res := h.do(alice, m)
	wantStatus(t, res, 401)
	m = alice.Authenticate(m, res, "MD5")

	// The nonce outlives its TTL before the credentials arrive.
	now = now.Add(time.Minute + time.Second)
	res = h.do(alice, m)
	wantStatus(t, res, 401)
	for _, v := range headerValues(res, "WWW-Authenticate") {
		c, err := digest.ParseChallenge(v)
		if err != nil || !c.Stale {
			t.Errorf("challenge after an expired nonce is not stale=true: %q", v)
		}
	}
	// With the new nonce it works, and the stale answer did not count as
	// a failure of the source.
	m = alice.Authenticate(m, res, "SHA-256")
	wantStatus(t, h.do(alice, m), 200)
}

func TestRegisterNonceCountReplay(t *testing.T) {
	h := newHarness(t, Config{})
	alice := h.phone("alice")
	res, m := h.register(alice, alice.Register(3600), "MD5")
	wantStatus(t, res, 200)
	cred, err := digest.ParseCredentials(m.Get("Authorization"))
	if err != nil {
		t.Fatal(err)
	}

	// The same credentials (same nonce and nc) on a new REGISTER: a replay.
	replay := alice.Retry(m)
	res = h.do(alice, replay)
	if res.StatusCode == 200 {
		t.Fatalf("replayed nonce count accepted:\n%s", res)
	}
	wantStatus(t, res, 401)

	// A higher nc with the same nonce is a legitimate reuse.
	next := alice.Retry(replay)
	c2, err := digest.Digest(&digest.Challenge{Realm: cred.Realm, Nonce: cred.Nonce, Algorithm: cred.Algorithm, QOP: []string{"auth"}},
		digest.Options{Method: "REGISTER", URI: cred.URI, Username: "alice", Password: testUsers["alice"], Count: cred.Nc + 1})
	if err != nil {
		t.Fatal(err)
	}
	next.Set("Authorization", c2.String())
	wantStatus(t, h.do(alice, next), 200)

	// And a lower one after that is a replay again.
	old := alice.Retry(next)
	old.Set("Authorization", m.Get("Authorization"))
	if res := h.do(alice, old); res.StatusCode == 200 {
		t.Fatalf("lower nonce count accepted")
	}
}

func TestRegisterExpiry(t *testing.T) {
	tests := []struct {
		name string
		// expires is the Expires header (-1: none); param the Contact's
		// expires parameter ("" none).
		expires int
		param   string
		want    int
		wantExp int // expires listed in the 200
	}{
		{name: "default", expires: -1, want: 200, wantExp: 3600},
		{name: "header", expires: 600, want: 200, wantExp: 600},
		{name: "minimum", expires: 60, want: 200, wantExp: 60},
		{name: "below minimum", expires: 59, want: 423},
		{name: "param below minimum", expires: 3600, param: "1", want: 423},
		{name: "param overrides header", expires: 30, param: "120", want: 200, wantExp: 120},
		{name: "above maximum is clamped", expires: 999999, want: 200, wantExp: 86400},
		{name: "param above maximum is clamped", expires: -1, param: "4294967295", want: 200, wantExp: 86400},
		{name: "not a number", expires: -1, param: "soon", want: 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{MinExpires: time.Minute, MaxExpires: 24 * time.Hour, DefaultExpires: time.Hour})
			alice := h.phone("alice")
			m := alice.Register(tc.expires)
			if tc.param != "" {
				m.Set("Contact", "<"+alice.Contact()+">;expires="+tc.param)
			}
			res, _ := h.register(alice, m, "MD5")
			wantStatus(t, res, tc.want)
			switch tc.want {
			case 423:
				if got := res.GetHeader("Min-Expires"); got == nil || got.Value() != "60" {
					t.Errorf("423 Min-Expires = %v, want 60", got)
				}
				if n := len(h.r.Location().Lookup("alice")); n != 0 {
					t.Errorf("%d bindings after 423", n)
				}
			case 200:
				want := "<" + alice.Contact() + ">;expires=" + strconv.Itoa(tc.wantExp)
				if got := contacts(res); len(got) != 1 || got[0] != want {
					t.Errorf("contacts %q, want [%q]", got, want)
				}
			}
		})
	}
}

func TestRegisterSeveralContacts(t *testing.T) {
	h := newHarness(t, Config{})
	alice := h.phone("alice")
	m := alice.Register(3600)
	m.Del("Contact")
	m.Add("Contact", "<sip:alice@192.0.2.10:5060>;q=0.5")
	m.Add("Contact", "<sip:alice@192.0.2.11:5060>;q=1.0, <sip:alice@192.0.2.12:5062;transport=tcp>;q=0.1;expires=120")
	res := h.mustRegister(alice, m)

	got := strings.Join(contacts(res), "\n")
	for _, want := range []string{
		"<sip:alice@192.0.2.10:5060>;expires=3600;q=0.5",
		"<sip:alice@192.0.2.11:5060>;expires=3600",
		"<sip:alice@192.0.2.12:5062;transport=tcp>;expires=120;q=0.1",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("200 does not list %q; it lists:\n%s", want, got)
		}
	}
	bs := h.r.Location().Lookup("alice")
	var order []string
	for _, b := range bs {
		order = append(order, b.Contact+" q="+strconv.FormatFloat(b.Q, 'f', -1, 64))
		// Public Contacts registered by a UA whose Via is its source: a
		// third-party registration, trusted (natdetect: no evidence of NAT).
		if b.NAT {
			t.Errorf("binding %s registered from %s is marked NAT", b.Contact, b.Source)
		}
	}
	want := []string{"sip:alice@192.0.2.11:5060 q=1", "sip:alice@192.0.2.10:5060 q=0.5", "sip:alice@192.0.2.12:5062;transport=tcp q=0.1"}
	if strings.Join(order, ",") != strings.Join(want, ",") {
		t.Errorf("Lookup order %q, want %q (highest q first)", order, want)
	}

	// A refresh of one contact keeps the others.
	m = alice.Retry(m)
	m.Del("Authorization")
	m.Del("Contact")
	m.Add("Contact", "<sip:alice@192.0.2.10:5060>;q=0.7")
	res = h.mustRegister(alice, m)
	if n := len(contacts(res)); n != 3 {
		t.Errorf("after refreshing one contact the 200 lists %d, want 3:\n%s", n, res)
	}
	if !strings.Contains(strings.Join(contacts(res), "\n"), "<sip:alice@192.0.2.10:5060>;expires=3600;q=0.7") {
		t.Errorf("refreshed q not listed:\n%s", res)
	}

	// An empty REGISTER (no Contact) just lists the bindings.
	q := alice.Register(-1)
	q.Del("Contact")
	res = h.mustRegister(alice, q)
	if n := len(contacts(res)); n != 3 {
		t.Errorf("query REGISTER lists %d contacts, want 3", n)
	}
}

func TestRegisterMaxContacts(t *testing.T) {
	h := newHarness(t, Config{MaxContacts: 2})
	now := time.Now()
	h.r.now = func() time.Time { return now }
	alice := h.phone("alice")
	for i := 1; i <= 3; i++ {
		now = now.Add(time.Second)
		m := alice.Register(3600)
		m.Set("Contact", "<sip:alice@192.0.2.1:"+strconv.Itoa(5060+i)+">")
		h.mustRegister(alice, m)
	}
	bs := h.r.Location().Lookup("alice")
	if len(bs) != 2 {
		t.Fatalf("%d bindings, want MaxContacts=2", len(bs))
	}
	for _, b := range bs {
		if b.Contact == "sip:alice@192.0.2.1:5061" {
			t.Errorf("the oldest contact was kept, a newer one replaced")
		}
	}
	if n := h.r.Location().Count(); n != 2 {
		t.Errorf("Count() = %d, want 2", n)
	}
}

func TestRegisterWildcard(t *testing.T) {
	tests := []struct {
		name string
		edit func(m *siptest.Msg)
		want int
	}{
		{name: "alone with Expires 0", edit: func(m *siptest.Msg) { m.Set("Contact", "*"); m.Set("Expires", "0") }, want: 200},
		{name: "with another contact", edit: func(m *siptest.Msg) {
			m.Set("Contact", "*")
			m.Add("Contact", "<sip:alice@192.0.2.1:5060>")
			m.Set("Expires", "0")
		}, want: 400},
		{name: "without Expires", edit: func(m *siptest.Msg) { m.Set("Contact", "*"); m.Del("Expires") }, want: 400},
		{name: "with Expires 3600", edit: func(m *siptest.Msg) { m.Set("Contact", "*"); m.Set("Expires", "3600") }, want: 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			alice := h.phone("alice")
			m := alice.Register(3600)
			m.Del("Contact")
			m.Add("Contact", "<sip:alice@192.0.2.1:5060>, <sip:alice@192.0.2.2:5060>")
			h.mustRegister(alice, m)

			w := alice.Register(0)
			tc.edit(w)
			res, _ := h.register(alice, w, "MD5")
			wantStatus(t, res, tc.want)
			n := len(h.r.Location().Lookup("alice"))
			if tc.want == 200 {
				if n != 0 || len(contacts(res)) != 0 {
					t.Errorf("after Contact: * there are %d bindings and the 200 lists %q", n, contacts(res))
				}
			} else if n != 2 {
				t.Errorf("refused wildcard REGISTER changed the bindings: %d left, want 2", n)
			}
		})
	}
}

func TestRegisterOutOfOrderCSeq(t *testing.T) {
	for _, tc := range []struct {
		name  string
		delta int
	}{{"lower", -1}, {"equal", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			alice := h.phone("alice")
			res, ok := h.register(alice, alice.Register(3600), "MD5")
			wantStatus(t, res, 200)

			// Same Call-ID, a CSeq not above the one that made the binding,
			// with valid credentials (next nonce count).
			late := ok.Clone()
			late.Set("Via", alice.Via(siptest.NewBranch()))
			late.Set("CSeq", strconv.Itoa(ok.CSeq()+tc.delta)+" REGISTER")
			late.Set("Expires", "0")
			cred, _ := digest.ParseCredentials(ok.Get("Authorization"))
			c2, _ := digest.Digest(&digest.Challenge{Realm: cred.Realm, Nonce: cred.Nonce, Algorithm: cred.Algorithm, QOP: []string{"auth"}},
				digest.Options{Method: "REGISTER", URI: cred.URI, Username: "alice", Password: testUsers["alice"], Count: cred.Nc + 1})
			late.Set("Authorization", c2.String())
			wantStatus(t, h.do(alice, late), 500)
			if n := len(h.r.Location().Lookup("alice")); n != 1 {
				t.Errorf("out-of-order REGISTER changed the bindings: %d left, want 1", n)
			}
		})
	}
}

func TestUnregisterOneContact(t *testing.T) {
	h := newHarness(t, Config{})
	alice := h.phone("alice")
	m := alice.Register(3600)
	m.Del("Contact")
	m.Add("Contact", "<sip:alice@192.0.2.1:5060>")
	m.Add("Contact", "<sip:alice@192.0.2.2:5060>")
	h.mustRegister(alice, m)

	u := alice.Register(-1)
	u.Set("Contact", "<sip:alice@192.0.2.1:5060>;expires=0")
	res := h.mustRegister(alice, u)
	want := []string{"<sip:alice@192.0.2.2:5060>;expires=3600"}
	if got := contacts(res); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("after removing one contact the 200 lists %q, want %q", got, want)
	}
	bs := h.r.Location().Lookup("alice")
	if len(bs) != 1 || bs[0].Contact != "sip:alice@192.0.2.2:5060" {
		t.Errorf("bindings %+v, want only sip:alice@192.0.2.2:5060", bs)
	}

	// Removing a contact that is not bound is not an error.
	u = alice.Register(0)
	u.Set("Contact", "<sip:alice@192.0.2.9:5060>")
	res = h.mustRegister(alice, u)
	if len(contacts(res)) != 1 {
		t.Errorf("removing an unknown contact changed the bindings: %q", contacts(res))
	}
}

// TestChallengesByUserAgent: with the shipped rule (MD5 to everyone), a UA
// gets one MD5 challenge and SHA-256 credentials are refused; a UA on the
// SHA-256 list gets SHA-256 first, then MD5, and registers with SHA-256; a
// UA on the MD5-only list gets MD5 alone even when SHA-256 is offered.
func TestChallengesByUserAgent(t *testing.T) {
	algs := func(res *gosip.Response) []string {
		var out []string
		for _, v := range headerValues(res, "WWW-Authenticate") {
			c, err := digest.ParseChallenge(v)
			if err != nil {
				t.Fatalf("challenge %q: %v", v, err)
			}
			out = append(out, c.Algorithm)
		}
		return out
	}
	tests := []struct {
		name    string
		cfg     Config
		ua      string
		want    []string
		use     string
		outcome int
	}{
		{"MD5 to everyone", Config{Algorithms: []string{AlgMD5}, SHA256UserAgents: []string{"Linphone"}}, "JsSIP 3.13.0", []string{"MD5"}, "MD5", 200},
		{"known to choose", Config{Algorithms: []string{AlgMD5}, SHA256UserAgents: []string{"linphone"}}, "Linphone/5.1.2 (belle-sip/5.1.2)", []string{"SHA-256", "MD5"}, "SHA-256", 200},
		{"MD5-only phone", Config{Algorithms: []string{AlgMD5, AlgSHA256}, MD5OnlyUserAgents: []string{"baresip"}}, "baresip v1.0.0 (x86_64/linux)", []string{"MD5"}, "MD5", 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.cfg)
			alice := h.phone("alice")
			m := alice.Register(3600)
			m.Set("User-Agent", tc.ua)
			res := h.do(alice, m)
			wantStatus(t, res, 401)
			if got := algs(res); !slices.Equal(got, tc.want) {
				t.Fatalf("challenges %q, want %q", got, tc.want)
			}
			n := alice.Authenticate(m, res, tc.use)
			wantStatus(t, h.do(alice, n), tc.outcome)
		})
	}
	// SHA-256 credentials are taken only where SHA-256 is offered.
	h := newHarness(t, Config{Algorithms: []string{AlgMD5}})
	if h.r.Authenticator().offers(AlgSHA256) {
		t.Error("SHA-256 accepted although offered to nobody")
	}
}

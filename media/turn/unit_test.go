package turn

import (
	"crypto/tls"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

func TestParseListen(t *testing.T) {
	tests := []struct {
		in      string
		want    listenAddr
		wantErr bool
	}{
		{"udp://0.0.0.0:3478", listenAddr{TransportUDP, "0.0.0.0", 3478}, false},
		{"tcp://127.0.0.1:0", listenAddr{TransportTCP, "127.0.0.1", 0}, false},
		{"tls://turn.example.com:5349", listenAddr{TransportTLS, "turn.example.com", 5349}, false},
		{"udp://[::]:3478", listenAddr{TransportUDP, "::", 3478}, false},
		{"udp://:3478", listenAddr{TransportUDP, "0.0.0.0", 3478}, false},
		{"dtls://0.0.0.0:5349", listenAddr{}, true},
		{"udp://0.0.0.0", listenAddr{}, true},
		{"udp://0.0.0.0:70000", listenAddr{}, true},
		{"udp://0.0.0.0:x", listenAddr{}, true},
		{"udp://u@0.0.0.0:1", listenAddr{}, true},
		{"udp://0.0.0.0:1/path", listenAddr{}, true},
		{"0.0.0.0:3478", listenAddr{}, true},
		{"", listenAddr{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseListen(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseListen(%q) = %+v, %v", tt.in, got, err)
			}
			if err != nil && !errors.Is(err, ErrBadListen) && tt.in != "udp://u@0.0.0.0:1" {
				t.Errorf("error %v is not ErrBadListen", err)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	c := Config{Realm: "r"}.withDefaults()
	if len(c.Listen) != 2 || c.Listen[0] != "udp://0.0.0.0:3478" || c.Listen[1] != "tcp://0.0.0.0:3478" {
		t.Errorf("Listen = %v", c.Listen)
	}
	if !c.PublicIP.Is4() || c.BindIP != netip.IPv4Unspecified() {
		t.Errorf("PublicIP = %v, BindIP = %v", c.PublicIP, c.BindIP)
	}
	if c.RelayPortMin != 49152 || c.RelayPortMax != 65535 || c.MaxAllocationsPerUser != 10 ||
		c.CredentialTTL != 24*time.Hour || c.AllocateRate != 100 || c.ReadLoops < 1 || c.SocketBuffer != 4<<20 {
		t.Errorf("defaults = %+v", c)
	}
	if err := c.validate(); err != nil {
		t.Errorf("validate defaults: %v", err)
	}
	if ip := defaultPublicIP(); !ip.Is4() || ip.IsLoopback() && ip != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("defaultPublicIP = %v", ip)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := func(c *Config) {}
	tests := []struct {
		name string
		mod  func(*Config)
		ok   bool
	}{
		{"defaults", ok, true},
		{"no realm", func(c *Config) { c.Realm = "" }, false},
		{"bad listen", func(c *Config) { c.Listen = []string{"sctp://0.0.0.0:1"} }, false},
		{"tls without config", func(c *Config) { c.Listen = []string{"tls://0.0.0.0:5349"} }, false},
		{"tls without cert", func(c *Config) {
			c.Listen = []string{"tls://0.0.0.0:5349"}
			c.TLSConfig = &tls.Config{}
		}, false},
		{"tls with cert", func(c *Config) {
			c.Listen = []string{"tls://0.0.0.0:5349"}
			c.TLSConfig = &tls.Config{Certificates: []tls.Certificate{{}}}
		}, true},
		{"public ipv6", func(c *Config) { c.PublicIP = netip.MustParseAddr("2001:db8::1") }, false},
		{"bind ipv6", func(c *Config) { c.BindIP = netip.MustParseAddr("::") }, false},
		{"ports reversed", func(c *Config) { c.RelayPortMin, c.RelayPortMax = 60000, 50000 }, false},
		{"negative ttl", func(c *Config) { c.CredentialTTL = -time.Second }, false},
		{"invalid prefix", func(c *Config) { c.AllowPeers = []netip.Prefix{{}} }, false},
		{"too many loops", func(c *Config) { c.ReadLoops = 1000 }, false},
		{"kernel default buffer", func(c *Config) { c.SocketBuffer = -1 }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Config{Realm: "r"}
			tt.mod(&c)
			c = c.withDefaults()
			err := c.validate()
			if (err == nil) != tt.ok {
				t.Fatalf("validate = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrConfig) && !errors.Is(err, ErrBadListen) {
				t.Errorf("error %v is not ErrConfig", err)
			}
		})
	}
}

func TestSourceLimiter(t *testing.T) {
	l := newSourceLimiter(10) // burst 20
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	now := time.Unix(1000, 0)
	n := 0
	for i := 0; i < 100; i++ {
		if l.allow(a, now) {
			n++
		}
	}
	if n != 20 {
		t.Errorf("burst admitted %d, want 20", n)
	}
	if !l.allow(b, now) {
		t.Error("another source was limited")
	}
	if l.allow(a, now.Add(50*time.Millisecond)) {
		t.Error("admitted before a token accrued")
	}
	if !l.allow(a, now.Add(150*time.Millisecond)) {
		t.Error("refused after a token accrued")
	}
	if !newSourceLimiter(-1).allow(a, now) || !(*sourceLimiter)(nil).allow(a, now) {
		t.Error("unlimited limiter refused")
	}
	// Full buckets are forgotten by the sweep.
	l.sweep(now.Add(time.Hour))
	if len(l.buckets) != 0 {
		t.Errorf("%d buckets after sweep", len(l.buckets))
	}
}

func TestUserQuota(t *testing.T) {
	q := newUserQuota(2)
	now := time.Unix(1000, 0)
	if !q.admit("alice", now) || !q.admit("alice", now) {
		t.Fatal("first two refused")
	}
	if q.admit("alice", now) {
		t.Fatal("third admitted while two are pending")
	}
	if !q.admit("bob", now) {
		t.Fatal("other user refused")
	}
	q.created("alice")
	q.created("alice")
	if q.count("alice") != 2 || q.admit("alice", now.Add(time.Minute)) {
		t.Fatal("third admitted while two are active")
	}
	q.deleted("alice")
	if !q.admit("alice", now.Add(time.Minute)) {
		t.Fatal("refused after a deletion")
	}
	// A reservation that never becomes an allocation expires.
	if q.admit("alice", now.Add(time.Minute)) {
		t.Fatal("admitted over quota")
	}
	if !q.admit("alice", now.Add(time.Minute+reservationTTL+time.Millisecond)) {
		t.Fatal("stale reservation not forgotten")
	}
	if !newUserQuota(-1).admit("x", now) {
		t.Fatal("unlimited quota refused")
	}
}

func TestFixChannelBindRefusal(t *testing.T) {
	build := func(setters ...stun.Setter) []byte {
		m, err := stun.Build(append([]stun.Setter{stun.TransactionID,
			stun.NewType(stun.MethodChannelBind, stun.ClassErrorResponse)}, setters...)...)
		if err != nil {
			t.Fatal(err)
		}

		return m.Raw
	}
	refusal := build(&stun.ErrorCodeAttribute{Code: stun.CodeUnauthorized})
	if !fixChannelBindRefusal(refusal) {
		t.Fatal("pion's refusal was not fixed")
	}
	m := &stun.Message{Raw: refusal}
	if err := m.Decode(); err != nil || errorCode(m) != 403 {
		t.Fatalf("fixed message: %v, code %d", err, errorCode(m))
	}
	for name, b := range map[string][]byte{
		"challenge with nonce": build(&stun.ErrorCodeAttribute{Code: stun.CodeUnauthorized}, stun.NewNonce("n"), stun.NewRealm("r")),
		"bad request":          build(&stun.ErrorCodeAttribute{Code: stun.CodeBadRequest}),
		"with integrity":       build(&stun.ErrorCodeAttribute{Code: stun.CodeUnauthorized}, stun.NewShortTermIntegrity("k")),
		"with fingerprint":     build(&stun.ErrorCodeAttribute{Code: stun.CodeUnauthorized}, stun.Fingerprint),
		"truncated":            build(&stun.ErrorCodeAttribute{Code: stun.CodeUnauthorized})[:22],
	} {
		orig := append([]byte(nil), b...)
		if fixChannelBindRefusal(b) || string(b) != string(orig) {
			t.Errorf("%s: changed", name)
		}
	}
}

func FuzzFixChannelBindRefusal(f *testing.F) {
	m, _ := stun.Build(stun.TransactionID, stun.NewType(stun.MethodChannelBind, stun.ClassErrorResponse),
		&stun.ErrorCodeAttribute{Code: stun.CodeUnauthorized})
	f.Add(m.Raw)
	f.Add([]byte{0x01, 0x19})
	f.Fuzz(func(t *testing.T, b []byte) {
		orig := append([]byte(nil), b...)
		if !fixChannelBindRefusal(b) && string(b) != string(orig) {
			t.Fatal("changed without reporting it")
		}
	})
}

func FuzzAdmitDatagram(f *testing.F) {
	s := &Server{metrics: mustMetrics(f), limiter: newSourceLimiter(1)}
	m, _ := stun.Build(stun.TransactionID, stun.BindingRequest)
	f.Add(m.Raw)
	f.Add([]byte{0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4})
	f.Add([]byte{0x00, 0x03, 0x00})
	src := netip.MustParseAddr("192.0.2.1")
	f.Fuzz(func(t *testing.T, b []byte) {
		ok := s.admitDatagram(b, src)
		if ok && len(b) >= 1 && b[0] >= 0x80 {
			t.Fatal("admitted a datagram that is neither STUN nor ChannelData")
		}
		if ok && b[0] < 0x40 {
			m := &stun.Message{Raw: append([]byte(nil), b...)}
			if err := m.Decode(); err != nil {
				// Not required to be decodable, only well framed.
				if len(b) < 20 {
					t.Fatalf("admitted short STUN: %v", err)
				}
			}
		}
	})
}

func mustMetrics(tb testing.TB) *metrics {
	tb.Helper()
	m, err := newMetrics(nil)
	if err != nil {
		tb.Fatal(err)
	}

	return m
}

func FuzzFixResponse(f *testing.F) {
	s := &Server{cfg: Config{Realm: testRealm}, creds: testUsers, now: time.Now}
	req, _ := stun.Build(stun.TransactionID, stun.NewType(stun.MethodCreatePermission, stun.ClassRequest),
		peerAddress("10.0.0.1", 9), stun.NewUsername("alice"), stun.NewRealm(testRealm), stun.NewNonce("n"),
		stun.NewLongTermIntegrity("alice", testRealm, "alicepw"))
	resp, _ := stun.Build(&stun.Message{TransactionID: req.TransactionID},
		stun.NewType(stun.MethodCreatePermission, stun.ClassErrorResponse),
		stun.MessageIntegrity(ha1("alice", "alicepw")))
	bad, _ := stun.Build(&stun.Message{TransactionID: req.TransactionID},
		stun.NewType(stun.MethodCreatePermission, stun.ClassErrorResponse),
		&stun.ErrorCodeAttribute{Code: stun.CodeBadRequest})
	f.Add(resp.Raw, req.Raw)
	f.Add(bad.Raw, req.Raw)
	f.Add([]byte{0x01, 0x19}, []byte{})
	f.Fuzz(func(t *testing.T, resp, req []byte) {
		out := s.fixResponse(resp, req, netip.AddrPort{})
		if len(out) == 0 && len(resp) != 0 {
			t.Fatal("response dropped")
		}
	})
}

func TestFixCreatePermissionRefusal(t *testing.T) {
	s := &Server{cfg: Config{Realm: testRealm}, creds: testUsers, now: time.Now}
	s.selfAddrs = localAddrs(netip.MustParseAddr("192.0.2.10"))
	key := ha1("alice", "alicepw")
	build := func(peers ...stun.Setter) (req, resp *stun.Message) {
		setters := append([]stun.Setter{stun.TransactionID,
			stun.NewType(stun.MethodCreatePermission, stun.ClassRequest)}, peers...)
		setters = append(setters, stun.NewUsername("alice"), stun.NewRealm(testRealm), stun.NewNonce("n"),
			stun.MessageIntegrity(key))
		req, err := stun.Build(setters...)
		if err != nil {
			t.Fatal(err)
		}
		resp, err = stun.Build(&stun.Message{TransactionID: req.TransactionID},
			stun.NewType(stun.MethodCreatePermission, stun.ClassErrorResponse), stun.MessageIntegrity(key))
		if err != nil {
			t.Fatal(err)
		}

		return req, resp
	}
	for _, tt := range []struct {
		name  string
		peers []stun.Setter
		want  int
	}{
		{"refused peer", []stun.Setter{peerAddress("10.0.0.1", 9)}, 403},
		{"refused among allowed", []stun.Setter{peerAddress("203.0.113.1", 9), peerAddress("127.0.0.1", 9)}, 403},
		{"no peer", nil, 400},
		{"own public address", []stun.Setter{peerAddress("192.0.2.10", 5060)}, 403},
		{"allowed peer only", []stun.Setter{peerAddress("203.0.113.1", 9)}, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, resp := build(tt.peers...)
			out := s.fixCreatePermissionRefusal(resp.Raw, req.Raw)
			if tt.want == 0 {
				if out != nil {
					t.Fatal("changed a response it cannot explain")
				}

				return
			}
			m := &stun.Message{Raw: out}
			if out == nil || m.Decode() != nil || errorCode(m) != tt.want {
				t.Fatalf("got code %d, want %d", errorCode(m), tt.want)
			}
			if err := stun.MessageIntegrity(key).Check(m); err != nil {
				t.Fatalf("integrity: %v", err)
			}
		})
	}
	// A response for another transaction, or signed with another key, is kept.
	req, resp := build(peerAddress("10.0.0.1", 9))
	other, _ := build(peerAddress("10.0.0.1", 9))
	if s.fixCreatePermissionRefusal(resp.Raw, other.Raw) != nil {
		t.Error("fixed a response to another transaction")
	}
	forged, _ := stun.Build(&stun.Message{TransactionID: req.TransactionID},
		stun.NewType(stun.MethodCreatePermission, stun.ClassErrorResponse), stun.MessageIntegrity([]byte("k")))
	if s.fixCreatePermissionRefusal(forged.Raw, req.Raw) != nil {
		t.Error("fixed a response signed with another key")
	}
}

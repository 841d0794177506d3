package turn

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/hostaddr"

	"github.com/pion/stun/v4"
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
		c.CredentialTTL != 24*time.Hour || c.AllocateRate != 1000 || c.ReadLoops < 1 || c.SocketBuffer != 4<<20 {
		t.Errorf("defaults = %+v", c)
	}
	if err := c.validate(); err != nil {
		t.Errorf("validate defaults: %v", err)
	}
	if ip := hostaddr.Primary(); !ip.Is4() || ip.IsLoopback() && ip != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("hostaddr.Primary = %v", ip)
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
	if first, second := q.admit("alice", now), q.admit("alice", now); !first || !second {
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

// channelBindExchange builds a ChannelBind request from user (signed with
// reqKey) and pion/turn's answer to it carrying setters.
func channelBindExchange(t testing.TB, user string, reqKey []byte, setters ...stun.Setter) (req, resp []byte) {
	t.Helper()
	q, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodChannelBind, stun.ClassRequest),
		channelNumber(0x4000), peerAddress("10.0.0.1", 9), stun.NewUsername(user), stun.NewRealm(testRealm),
		stun.NewNonce("n"), stun.MessageIntegrity(reqKey))
	if err != nil {
		t.Fatal(err)
	}
	r, err := stun.Build(append([]stun.Setter{&stun.Message{TransactionID: q.TransactionID},
		stun.NewType(stun.MethodChannelBind, stun.ClassErrorResponse)}, setters...)...)
	if err != nil {
		t.Fatal(err)
	}

	return q.Raw, r.Raw
}

func TestFixChannelBindRefusal(t *testing.T) {
	s := &Server{cfg: Config{Realm: testRealm}, creds: testUsers, now: time.Now}
	key := ha1("alice", "alicepw")
	unauthorized := &stun.ErrorCodeAttribute{Code: stun.CodeUnauthorized}

	// pion/turn v5's answer to a refused peer: 401, signed.
	req, resp := channelBindExchange(t, "alice", key, unauthorized, stun.MessageIntegrity(key))
	out := s.fixResponse(resp, req)
	m := &stun.Message{Raw: out}
	if err := m.Decode(); err != nil || errorCode(m) != 403 || m.Type != stun.NewType(stun.MethodChannelBind, stun.ClassErrorResponse) {
		t.Fatalf("fixed message: %v, %v code %d", err, m.Type, errorCode(m))
	}
	if err := stun.MessageIntegrity(key).Check(m); err != nil {
		t.Fatalf("the 403 is not signed with the request's key: %v", err)
	}
	var q stun.Message
	q.Raw = req
	if err := q.Decode(); err != nil || m.TransactionID != q.TransactionID {
		t.Fatalf("transaction ID changed: %v", err)
	}

	_, other := channelBindExchange(t, "alice", key, unauthorized, stun.MessageIntegrity(key))
	notChannelBind, _ := stun.Build(stun.TransactionID, stun.NewType(stun.MethodCreatePermission, stun.ClassRequest),
		stun.NewUsername("alice"), stun.NewRealm(testRealm), stun.NewNonce("n"), stun.MessageIntegrity(key))
	for name, tt := range map[string][2][]byte{
		"challenge with nonce": pair(channelBindExchange(t, "alice", key, unauthorized, stun.NewNonce("n"), stun.NewRealm(testRealm))),
		"bad request":          pair(channelBindExchange(t, "alice", key, &stun.ErrorCodeAttribute{Code: stun.CodeBadRequest}, stun.MessageIntegrity(key))),
		"signed with another key": pair(channelBindExchange(t, "alice", key, unauthorized,
			stun.MessageIntegrity(ha1("alice", "other")))),
		"unknown user":      pair(channelBindExchange(t, "mallory", key, unauthorized, stun.MessageIntegrity(key))),
		"other transaction": {req, other},
		"other request":     {notChannelBind.Raw, resp},
		"truncated":         {req, resp[:22]},
		"no request":        {nil, resp},
	} {
		orig := append([]byte(nil), tt[1]...)
		if out := s.fixResponse(tt[1], tt[0]); string(out) != string(orig) || string(tt[1]) != string(orig) {
			t.Errorf("%s: changed", name)
		}
	}
}

func pair(req, resp []byte) [2][]byte { return [2][]byte{req, resp} }

func FuzzAdmitDatagram(f *testing.F) {
	s := &Server{metrics: mustMetrics(f), limiter: newAllocateLimiter(1)}
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
	key := ha1("alice", "alicepw")
	req, resp := channelBindExchange(f, "alice", key, &stun.ErrorCodeAttribute{Code: stun.CodeUnauthorized},
		stun.MessageIntegrity(key))
	f.Add(resp, req)
	_, bad := channelBindExchange(f, "alice", key, &stun.ErrorCodeAttribute{Code: stun.CodeBadRequest})
	f.Add(bad, req)
	f.Add([]byte{0x01, 0x19}, []byte{})
	f.Fuzz(func(t *testing.T, resp, req []byte) {
		orig := append([]byte(nil), resp...)
		out := s.fixResponse(resp, req)
		if string(resp) != string(orig) {
			t.Fatal("pion's response modified in place")
		}
		if string(out) == string(resp) {
			return
		}
		// Changed: only into a 403 signed with alice's key.
		m := &stun.Message{Raw: out}
		if m.Decode() != nil || errorCode(m) != 403 || stun.MessageIntegrity(key).Check(m) != nil {
			t.Fatalf("rewritten into something else: %x", out)
		}
	})
}

// TestStunStreamFraming checks that a stunStream hands out one frame per
// Read, whatever the segments it arrives in, and keeps the last STUN message.
func TestStunStreamFraming(t *testing.T) {
	a, _ := stun.Build(stun.TransactionID, stun.BindingRequest, stun.NewSoftware("first"))
	b, _ := stun.Build(stun.TransactionID, stun.NewType(stun.MethodChannelBind, stun.ClassRequest),
		channelNumber(0x4000), peerAddress("203.0.113.1", 9))
	chData := []byte{0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5, 0, 0, 0} // 5 bytes of data, padded to 8 (RFC 8656 §12.5)
	stream := append(append(append([]byte(nil), a.Raw...), chData...), b.Raw...)

	for _, bufSize := range []int{1600, 7} {
		client, server := net.Pipe()
		go func() {
			// Two writes that split frames in the middle.
			_, _ = client.Write(stream[:25])
			_, _ = client.Write(stream[25:])
			_ = client.Close()
		}()
		c := &stunStream{Conn: server, r: bufio.NewReaderSize(server, streamBufSize)}
		var frames [][]byte
		var cur []byte
		buf := make([]byte, bufSize)
		for {
			n, err := c.Read(buf)
			cur = append(cur, buf[:n]...)
			if c.left == 0 && len(cur) > 0 {
				frames = append(frames, cur)
				if isSTUN := cur[0] < 0x40; isSTUN != c.keep || (isSTUN && !bytes.Equal(c.req, cur)) {
					t.Errorf("buffer %d: tracked request %x (keep %v), want %x", bufSize, c.req, c.keep, cur)
				}
				cur = nil
			}
			if err != nil {
				break
			}
		}
		_ = server.Close()
		want := [][]byte{a.Raw, chData, b.Raw}
		if len(frames) != len(want) {
			t.Fatalf("buffer %d: %d frames, want %d", bufSize, len(frames), len(want))
		}
		for i := range want {
			if !bytes.Equal(frames[i], want[i]) {
				t.Errorf("buffer %d: frame %d = %x, want %x", bufSize, i, frames[i], want[i])
			}
		}
	}
}

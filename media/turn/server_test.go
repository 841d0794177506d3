package turn

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/hostaddr"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
	"go.uber.org/goleak"
)

// allowLoopback lets tests relay to peers on 127.0.0.0/8.
func allowLoopback(c *Config) {
	c.AllowPeers = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
}

// relayRoundTrip sends payload through relay to an echo peer and waits for
// it to come back.
func relayRoundTrip(t *testing.T, relay net.PacketConn, peer net.Addr, payload []byte) {
	t.Helper()
	buf := make([]byte, 1500)
	// The first packets may race the permission/channel set-up: retry.
	for try := 0; try < 20; try++ {
		if _, err := relay.WriteTo(payload, peer); err != nil {
			t.Fatalf("relay write: %v", err)
		}
		_ = relay.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
		n, from, err := relay.ReadFrom(buf)
		if err != nil {
			continue
		}
		if !bytes.Equal(buf[:n], payload) || from.String() != peer.String() {
			t.Fatalf("got %q from %v, want %q from %v", buf[:n], from, payload, peer)
		}

		return
	}
	t.Fatal("no echo through the relay")
}

func TestStaticCredentials(t *testing.T) {
	s := startServer(t, allowLoopback)
	srv := s.addr(t, TransportUDP)

	t.Run("right password", func(t *testing.T) {
		c := newUDPClient(t, srv, "alice", "alicepw")
		relay, err := c.Allocate()
		if err != nil {
			t.Fatalf("Allocate: %v", err)
		}
		defer relay.Close()
		ra := relay.LocalAddr().(*net.UDPAddr)
		if !ra.IP.Equal(net.IPv4(127, 0, 0, 1)) || ra.Port < DefaultRelayPortMin {
			t.Errorf("relay address %v: want PublicIP and a port in range", ra)
		}
		relayRoundTrip(t, relay, echoPeer(t), []byte("hello via static HA1"))
		if !strings.Contains(s.logs.String(), `msg="allocation created" component=turn user=alice`) {
			t.Errorf("allocation not logged with user:\n%s", s.logs)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		c := newUDPClient(t, srv, "alice", "wrong")
		_, err := c.Allocate()
		// RFC 8489 §9.2.4: 401 (pion/turn v5 answers it so itself).
		if code := turnErrorCode(err); code != 401 {
			t.Fatalf("Allocate with wrong password: %v (code %d), want 401", err, code)
		}
	})
	t.Run("unknown user", func(t *testing.T) {
		c := newUDPClient(t, srv, "mallory", "x")
		if _, err := c.Allocate(); turnErrorCode(err) != 401 {
			t.Fatalf("Allocate for an unknown user: %v, want 401", err)
		}
	})
	t.Run("wrong password over tcp", func(t *testing.T) {
		c := newTCPClient(t, s.addr(t, TransportTCP), "alice", "wrong")
		_, err := c.Allocate()
		if code := turnErrorCode(err); code != 401 {
			t.Fatalf("Allocate with wrong password over TCP: %v (code %d)", err, code)
		}
	})
	if got := s.metric(t, "switchboard_turn_auth_failures_total"); got < 3 {
		t.Errorf("auth failures = %v, want >= 3", got)
	}
}

func TestRelayPortRange(t *testing.T) {
	// Above Linux's default ephemeral range, so other sockets rarely hold them.
	const lo, hi = 61000, 61099
	s := startServer(t, func(c *Config) { c.RelayPortMin, c.RelayPortMax = lo, hi })
	for i := 0; i < 3; i++ {
		relay, err := newUDPClient(t, s.addr(t, TransportUDP), "alice", "alicepw").Allocate()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = relay.Close() })
		if p := relay.LocalAddr().(*net.UDPAddr).Port; p < lo || p > hi {
			t.Errorf("relay port %d outside %d-%d", p, lo, hi)
		}
	}
}

func TestRESTCredentialsAuth(t *testing.T) {
	s := startServer(t, allowLoopback)
	srv := s.addr(t, TransportUDP)

	t.Run("valid", func(t *testing.T) {
		user, pass := RESTCredentials(testSecret, "carol", time.Hour, time.Now())
		c := newUDPClient(t, srv, user, pass)
		relay, err := c.Allocate()
		if err != nil {
			t.Fatalf("Allocate: %v", err)
		}
		defer relay.Close()
		relayRoundTrip(t, relay, echoPeer(t), []byte("hello via REST"))
	})
	t.Run("expired", func(t *testing.T) {
		user, pass := RESTCredentials(testSecret, "carol", -time.Minute, time.Now())
		c := newUDPClient(t, srv, user, pass)
		if _, err := c.Allocate(); err == nil {
			t.Fatal("Allocate succeeded with expired REST credentials")
		}
	})
	t.Run("other secret", func(t *testing.T) {
		user, pass := RESTCredentials([]byte("not the secret"), "carol", time.Hour, time.Now())
		c := newUDPClient(t, srv, user, pass)
		if _, err := c.Allocate(); err == nil {
			t.Fatal("Allocate succeeded with a foreign secret")
		}
	})
}

func TestPeerPermissions(t *testing.T) {
	t.Run("private peer refused", func(t *testing.T) {
		s := startServer(t, nil)
		c := newUDPClient(t, s.addr(t, TransportUDP), "alice", "alicepw")
		relay, err := c.Allocate()
		if err != nil {
			t.Fatal(err)
		}
		defer relay.Close()
		for _, peer := range []string{"10.1.2.3:9", "127.0.0.1:9", "169.254.169.254:80", "192.168.1.1:9"} {
			ua, _ := net.ResolveUDPAddr("udp4", peer)
			// CreatePermission only: no data is ever sent to the peer.
			if err := c.CreatePermission(ua); err == nil {
				t.Errorf("CreatePermission(%s) succeeded", peer)
			}
		}
		if got := s.metric(t, "switchboard_turn_permissions_denied_total"); got != 4 {
			t.Errorf("permissions denied = %v, want 4", got)
		}
		if got := s.metric(t, "switchboard_turn_relayed_packets_total", "direction", "to_peer"); got != 0 {
			t.Errorf("%v packets relayed to refused peers", got)
		}
	})
	t.Run("private peer allowed by allow_peers", func(t *testing.T) {
		s := startServer(t, func(c *Config) {
			c.AllowPeers = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
		})
		c := newUDPClient(t, s.addr(t, TransportUDP), "alice", "alicepw")
		relay, err := c.Allocate()
		if err != nil {
			t.Fatal(err)
		}
		defer relay.Close()
		ua := &net.UDPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 9}
		if err := c.CreatePermission(ua); err != nil {
			t.Fatalf("CreatePermission(%s): %v", ua, err)
		}
		if got := s.metric(t, "switchboard_turn_permissions_total"); got != 1 {
			t.Errorf("permissions = %v, want 1", got)
		}
	})
	t.Run("own addresses refused", func(t *testing.T) {
		s := startServer(t, func(c *Config) { c.PublicIP = netip.MustParseAddr("192.0.2.10") })
		c := newUDPClient(t, s.addr(t, TransportUDP), "alice", "alicepw")
		relay, err := c.Allocate()
		if err != nil {
			t.Fatal(err)
		}
		defer relay.Close()
		own := []net.IP{net.IPv4(192, 0, 2, 10)}
		if ip := hostaddr.Primary(); !ip.IsLoopback() {
			own = append(own, ip.AsSlice()) // an interface address of this machine
		}
		for _, ip := range own {
			// CreatePermission only: no data is ever sent.
			if err := c.CreatePermission(&net.UDPAddr{IP: ip, Port: 5060}); err == nil {
				t.Errorf("CreatePermission to own address %v succeeded", ip)
			}
		}
		if err := c.CreatePermission(&net.UDPAddr{IP: net.IPv4(203, 0, 113, 1), Port: 9}); err != nil {
			t.Errorf("CreatePermission to a public peer: %v", err)
		}
	})
	t.Run("channel bind refused with 403", func(t *testing.T) {
		s := startServer(t, nil)
		rc := newRawClient(t, s.addr(t, TransportUDP), "alice", "alicepw")
		res := rc.authed(stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedTransportUDP())
		if res.Type.Class != stun.ClassSuccessResponse {
			t.Fatalf("Allocate: %v code %d", res.Type, errorCode(res))
		}
		res = rc.authed(stun.NewType(stun.MethodChannelBind, stun.ClassRequest),
			channelNumber(0x4000), peerAddress("10.0.0.1", 9))
		if res.Type.Class != stun.ClassErrorResponse || errorCode(res) != 403 {
			t.Fatalf("ChannelBind to 10.0.0.1: %v code %d, want error 403", res.Type, errorCode(res))
		}
		// pion/turn says 401 here; the listener makes it 403 (RFC 8656
		// §12.2), signed like pion's response.
		if err := rc.key.Check(res); err != nil {
			t.Errorf("ChannelBind 403 integrity: %v", err)
		}
		// CreatePermission (RFC 8656 §10.2): pion/turn v5's own answers,
		// signed (RFC 8489 §9.2.4).
		for _, tt := range []struct {
			name  string
			peers []stun.Setter
			want  int
		}{
			{"refused peer", []stun.Setter{peerAddress("10.0.0.1", 9)}, 403},
			{"refused among allowed", []stun.Setter{peerAddress("203.0.113.1", 9), peerAddress("127.0.0.1", 9)}, 403},
			{"no peer", nil, 400},
		} {
			res = rc.authed(stun.NewType(stun.MethodCreatePermission, stun.ClassRequest), tt.peers...)
			if res.Type.Class != stun.ClassErrorResponse || errorCode(res) != tt.want {
				t.Fatalf("CreatePermission, %s: %v code %d, want error %d", tt.name, res.Type, errorCode(res), tt.want)
			}
			if err := rc.key.Check(res); err != nil {
				t.Errorf("CreatePermission, %s: integrity: %v", tt.name, err)
			}
		}
		res = rc.authed(stun.NewType(stun.MethodCreatePermission, stun.ClassRequest), peerAddress("203.0.113.1", 9))
		if res.Type.Class != stun.ClassSuccessResponse {
			t.Fatalf("CreatePermission to a public peer: %v code %d", res.Type, errorCode(res))
		}
	})
	t.Run("channel bind refused with 403 over tcp and tls", func(t *testing.T) {
		cert, pool := selfSigned(t)
		s := startServer(t, func(c *Config) {
			c.Listen = []string{"tcp://127.0.0.1:0", "tls://127.0.0.1:0"}
			c.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		})
		dial := map[Transport]func(addr string) (net.Conn, error){
			TransportTCP: func(addr string) (net.Conn, error) { return net.DialTimeout("tcp", addr, 2*time.Second) },
			TransportTLS: func(addr string) (net.Conn, error) {
				return tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr,
					&tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})
			},
		}
		for _, tr := range []Transport{TransportTCP, TransportTLS} {
			addr := s.addr(t, tr)
			conn, err := dial[tr](addr.String())
			if err != nil {
				t.Fatal(err)
			}
			rc := newRawStreamClient(t, conn, addr, "alice", "alicepw")
			res := rc.authed(stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedTransportUDP())
			if res.Type.Class != stun.ClassSuccessResponse {
				t.Fatalf("%s: Allocate: %v code %d", tr, res.Type, errorCode(res))
			}
			for i := 0; i < 2; i++ { // the fix holds for every request on the connection
				res = rc.authed(stun.NewType(stun.MethodChannelBind, stun.ClassRequest),
					channelNumber(0x4000+uint16(i)), peerAddress("10.0.0.1", 9))
				if res.Type.Class != stun.ClassErrorResponse || errorCode(res) != 403 {
					t.Fatalf("%s: ChannelBind to 10.0.0.1: %v code %d, want error 403", tr, res.Type, errorCode(res))
				}
				if err := rc.key.Check(res); err != nil {
					t.Errorf("%s: ChannelBind 403 integrity: %v", tr, err)
				}
			}
			// A permitted request on the same connection still works.
			res = rc.authed(stun.NewType(stun.MethodChannelBind, stun.ClassRequest),
				channelNumber(0x4002), peerAddress("203.0.113.1", 9))
			if res.Type.Class != stun.ClassSuccessResponse {
				t.Fatalf("%s: ChannelBind to a public peer: %v code %d", tr, res.Type, errorCode(res))
			}
		}
	})
}

// TestReservationToken checks EVEN-PORT and RESERVATION-TOKEN (RFC 8656
// §7.2) the way turnutils_uclient uses them for RTP and RTCP: the token
// comes back from another client socket, which must reach the read loop
// (and pion/turn allocation manager) that issued it.
func TestReservationToken(t *testing.T) {
	s := startServer(t, func(c *Config) { c.ReadLoops = 4 })
	srv := s.addr(t, TransportUDP)
	allocate := func(c *rawClient, attr stun.Setter) *stun.Message {
		t.Helper()
		res := c.authed(stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedTransportUDP(), attr)
		if res.Type.Class != stun.ClassSuccessResponse {
			t.Fatalf("Allocate: %v code %d", res.Type, errorCode(res))
		}

		return res
	}
	relayPort := func(res *stun.Message) int {
		t.Helper()
		var a stun.XORMappedAddress
		if err := a.GetFromAs(res, stun.AttrXORRelayedAddress); err != nil {
			t.Fatal(err)
		}

		return a.Port
	}
	for i := 0; i < 4; i++ {
		rtp := allocate(newRawClient(t, srv, "alice", "alicepw"), rawAttr{typ: stun.AttrEvenPort, val: []byte{0x80}})
		token, err := rtp.Get(stun.AttrReservationToken)
		if err != nil {
			t.Fatalf("no RESERVATION-TOKEN: %v", err)
		}
		rtcp := allocate(newRawClient(t, srv, "alice", "alicepw"), rawAttr{typ: stun.AttrReservationToken, val: token})
		if p, q := relayPort(rtp), relayPort(rtcp); p%2 != 0 || q != p+1 {
			t.Fatalf("relay ports %d and %d, want an even port and the next", p, q)
		}
	}
}

func TestQuota(t *testing.T) {
	s := startServer(t, func(c *Config) { c.MaxAllocationsPerUser = 2 })
	srv := s.addr(t, TransportUDP)
	var relays []net.PacketConn
	for i := 0; i < 2; i++ {
		r, err := newUDPClient(t, srv, "alice", "alicepw").Allocate()
		if err != nil {
			t.Fatalf("allocation %d: %v", i+1, err)
		}
		relays = append(relays, r)
	}
	_, err := newUDPClient(t, srv, "alice", "alicepw").Allocate()
	if code := turnErrorCode(err); code != 486 {
		t.Fatalf("3rd allocation: %v (code %d), want 486", err, code)
	}
	// REST credentials of the same user count against the same quota.
	ru, rp := RESTCredentials(testSecret, "alice", time.Hour, time.Now())
	if _, err := newUDPClient(t, srv, ru, rp).Allocate(); turnErrorCode(err) != 486 {
		t.Fatalf("REST allocation over quota: %v", err)
	}
	// Another user is not affected.
	rb, err := newUDPClient(t, srv, "bob", "bobpw").Allocate()
	if err != nil {
		t.Fatalf("bob: %v", err)
	}
	defer rb.Close()
	if got := s.metric(t, "switchboard_turn_quota_rejections_total"); got != 2 {
		t.Errorf("quota rejections = %v, want 2", got)
	}
	// Releasing one allocation (Refresh with lifetime 0) frees a slot.
	_ = relays[0].Close()
	eventually(t, 3*time.Second, "deallocation", func() bool { return s.quota.count("alice") == 1 })
	r, err := newUDPClient(t, srv, "alice", "alicepw").Allocate()
	if err != nil {
		t.Fatalf("allocation after release: %v", err)
	}
	_ = r.Close()
	_ = relays[1].Close()
	eventually(t, 3*time.Second, "all released", func() bool { return s.Allocations() == 1 })
}

func TestAllocationExpiryAndRefresh(t *testing.T) {
	s := startServer(t, nil)
	srv := s.addr(t, TransportUDP)
	allocate := func(rc *rawClient, d time.Duration) *net.UDPAddr {
		t.Helper()
		res := rc.authed(stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedTransportUDP(), lifetime(d))
		if res.Type.Class != stun.ClassSuccessResponse {
			t.Fatalf("Allocate: %v code %d", res.Type, errorCode(res))
		}
		var relayed stun.XORMappedAddress
		if err := relayed.GetFromAs(res, stun.AttrXORRelayedAddress); err != nil {
			t.Fatal(err)
		}

		return &net.UDPAddr{IP: relayed.IP, Port: relayed.Port}
	}

	t.Run("expiry frees the relay port", func(t *testing.T) {
		rc := newRawClient(t, srv, "alice", "alicepw")
		relay := allocate(rc, 1*time.Second)
		if s.Allocations() != 1 || s.relayCount() != 1 {
			t.Fatalf("allocations %d relays %d", s.Allocations(), s.relayCount())
		}
		eventually(t, 5*time.Second, "expiry", func() bool { return s.Allocations() == 0 && s.relayCount() == 0 })
		// The port is really released.
		pc, err := net.ListenPacket("udp4", relay.String())
		if err != nil {
			t.Fatalf("relay port still bound: %v", err)
		}
		_ = pc.Close()
	})
	t.Run("refresh extends, lifetime 0 deletes", func(t *testing.T) {
		rc := newRawClient(t, srv, "bob", "bobpw")
		allocate(rc, 1*time.Second)
		res := rc.authed(stun.NewType(stun.MethodRefresh, stun.ClassRequest), lifetime(30*time.Second))
		if res.Type.Class != stun.ClassSuccessResponse {
			t.Fatalf("Refresh: %v code %d", res.Type, errorCode(res))
		}
		time.Sleep(1500 * time.Millisecond) // past the original lifetime
		if s.Allocations() != 1 {
			t.Fatal("refreshed allocation expired")
		}
		res = rc.authed(stun.NewType(stun.MethodRefresh, stun.ClassRequest), lifetime(0))
		if res.Type.Class != stun.ClassSuccessResponse {
			t.Fatalf("Refresh(0): %v code %d", res.Type, errorCode(res))
		}
		eventually(t, 2*time.Second, "delete", func() bool { return s.Allocations() == 0 && s.relayCount() == 0 })
	})
}

func TestSTUNBinding(t *testing.T) {
	s := startServer(t, nil)
	for _, tr := range []Transport{TransportUDP, TransportTCP} {
		t.Run(string(tr), func(t *testing.T) {
			var c *turn.Client
			if tr == TransportUDP {
				c = newUDPClient(t, s.addr(t, tr), "", "")
			} else {
				c = newTCPClient(t, s.addr(t, tr), "", "")
			}
			mapped, err := c.SendBindingRequest()
			if err != nil {
				t.Fatalf("Binding: %v", err)
			}
			if ua := mapped.(*net.UDPAddr); !ua.IP.Equal(net.IPv4(127, 0, 0, 1)) || ua.Port == 0 {
				t.Fatalf("mapped address %v", mapped)
			}
		})
	}
}

func TestTCPListener(t *testing.T) {
	s := startServer(t, allowLoopback)
	c := newTCPClient(t, s.addr(t, TransportTCP), "alice", "alicepw")
	relay, err := c.Allocate()
	if err != nil {
		t.Fatalf("Allocate over TCP: %v", err)
	}
	relayRoundTrip(t, relay, echoPeer(t), []byte("hello over tcp"))
	if !strings.Contains(s.logs.String(), "transport=tcp") {
		t.Error("TCP allocation not logged as tcp")
	}
	_ = relay.Close()
	eventually(t, 3*time.Second, "deallocation", func() bool { return s.Allocations() == 0 })
}

func TestTLSListener(t *testing.T) {
	cert, pool := selfSigned(t)
	s := startServer(t, func(c *Config) {
		allowLoopback(c)
		c.Listen = []string{"udp://127.0.0.1:0", "tls://127.0.0.1:0"}
		c.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	})
	addr := s.addr(t, TransportTLS)
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr.String(),
		&tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, turn.NewSTUNConn(conn), addr, "alice", "alicepw")
	relay, err := c.Allocate()
	if err != nil {
		t.Fatalf("Allocate over TLS: %v", err)
	}
	relayRoundTrip(t, relay, echoPeer(t), []byte("hello over tls"))
	_ = relay.Close()
	eventually(t, 3*time.Second, "deallocation", func() bool { return s.Allocations() == 0 })
	if !strings.Contains(s.logs.String(), "transport=tls") {
		t.Error("TLS allocation not logged as tls")
	}
}

func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "switchboard test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)

	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

func TestMalformedInput(t *testing.T) {
	s := startServer(t, nil)
	srv := s.addr(t, TransportUDP)
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	binding, _ := stun.Build(stun.TransactionID, stun.BindingRequest)
	badCookie := append([]byte(nil), binding.Raw...)
	badCookie[4] ^= 0xff
	badLength := append([]byte(nil), binding.Raw...)
	badLength[3] = 40
	junk := [][]byte{
		{0xff},
		{0x00, 0x01, 0x00},
		badCookie,
		badLength,
		{0x80, 0x00, 0x01, 0x02, 0, 0, 0, 0, 0, 0, 0, 0},           // RTP
		{0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},           // DTLS
		bytes.Repeat([]byte{0xab}, 3000),                           // oversized
		{0x40, 0x00, 0xff, 0xff, 1, 2, 3, 4},                       // ChannelData, bad length, no allocation
		append(binding.Raw[:20:20], bytes.Repeat([]byte{0}, 4)...), // attribute past length
	}
	rnd := make([]byte, 200)
	for i := 0; i < 200; i++ {
		_, _ = rand.Read(rnd)
		junk = append(junk, append([]byte(nil), rnd[:1+i%len(rnd)]...))
	}
	for _, j := range junk {
		if _, err := conn.WriteTo(j, srv); err != nil {
			t.Fatal(err)
		}
	}
	// Nothing answers junk.
	_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	buf := make([]byte, 2048)
	if n, _, err := conn.ReadFrom(buf); err == nil {
		t.Errorf("answer to junk: % x", buf[:n])
	}
	if got := s.metric(t, "switchboard_turn_dropped_total", "reason", "malformed"); got < 6 {
		t.Errorf("malformed dropped = %v", got)
	}
	// The server still works.
	c := newUDPClient(t, srv, "alice", "alicepw")
	if _, err := c.SendBindingRequest(); err != nil {
		t.Fatalf("Binding after junk: %v", err)
	}

	// A TCP stream that is not STUN is closed.
	tc, err := net.DialTimeout("tcp", s.addr(t, TransportTCP).String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	_, _ = tc.Write(bytes.Repeat([]byte{0xee}, 64))
	_ = tc.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := tc.Read(buf); err == nil || isTimeout(err) {
		t.Errorf("junk TCP connection not closed: %v", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error

	return errors.As(err, &ne) && ne.Timeout()
}

func TestTCPFirstReadTimeout(t *testing.T) {
	old := tcpFirstReadTimeout
	tcpFirstReadTimeout = 300 * time.Millisecond
	t.Cleanup(func() { tcpFirstReadTimeout = old }) // runs after the server's Close
	s := startServer(t, nil)
	tc, err := net.DialTimeout("tcp", s.addr(t, TransportTCP).String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	_ = tc.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := tc.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("silent connection not closed by the server: %v", err)
	}
	eventually(t, 2*time.Second, "connection released", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()

		return len(s.conns) == 0
	})
}

func TestAllocateRateLimit(t *testing.T) {
	// Unauthenticated Allocates: twice the rate, 10/s, burst 20.
	s := startServer(t, func(c *Config) { c.AllocateRate = 5 })
	srv := s.addr(t, TransportUDP)
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const sent = 50
	start := time.Now()
	for i := 0; i < sent; i++ {
		m, _ := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
			requestedTransportUDP(), stun.Fingerprint)
		if _, err := conn.WriteTo(m.Raw, srv); err != nil {
			t.Fatal(err)
		}
	}
	answered := 0
	buf := make([]byte, 2048)
	for {
		_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if _, _, err := conn.ReadFrom(buf); err != nil {
			break
		}
		answered++
	}
	maxAnswers := 20 + int(time.Since(start).Seconds()*10) + 1
	if answered < 20 || answered > maxAnswers {
		t.Errorf("%d of %d Allocate requests answered, want 20..%d", answered, sent, maxAnswers)
	}
	if got := s.metric(t, "switchboard_turn_dropped_total", "reason", "rate_limited"); int(got) != sent-answered {
		t.Errorf("rate limited = %v, want %d", got, sent-answered)
	}
	// Binding requests are not limited.
	c := newUDPClient(t, srv, "", "")
	if _, err := c.SendBindingRequest(); err != nil {
		t.Fatalf("Binding while Allocate is limited: %v", err)
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := New(Config{}); !errors.Is(err, ErrConfig) {
		t.Errorf("New without realm: %v", err)
	}
	// A taken port fails New and leaves nothing bound.
	s := startServer(t, nil)
	busy := s.addr(t, TransportTCP).String()
	_, err := New(Config{
		Realm:    testRealm,
		Listen:   []string{"udp://127.0.0.1:0", "tcp://" + busy},
		PublicIP: netip.MustParseAddr("127.0.0.1"),
	})
	if err == nil {
		t.Fatal("New on a busy port succeeded")
	}
	// Registering twice on one registry fails; after Close it works again.
	if _, err := New(Config{Realm: testRealm, Listen: []string{"udp://127.0.0.1:0"},
		PublicIP: netip.MustParseAddr("127.0.0.1"), Metrics: s.reg}); err == nil {
		t.Fatal("second server registered the same metrics")
	}
}

func TestMetricsUnregisteredOnClose(t *testing.T) {
	s := startServer(t, nil)
	cfg := Config{Realm: testRealm, Listen: []string{"udp://127.0.0.1:0"}, PublicIP: netip.MustParseAddr("127.0.0.1")}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := New(withCollab(cfg, nil, nil, s.reg))
	if err != nil {
		t.Fatalf("New after Close on the same registry: %v", err)
	}
	_ = s2.Close()
}

func TestMetrics(t *testing.T) {
	s := startServer(t, allowLoopback)
	c := newUDPClient(t, s.addr(t, TransportUDP), "alice", "alicepw")
	relay, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	payload := []byte("0123456789")
	relayRoundTrip(t, relay, echoPeer(t), payload)
	for _, m := range []struct {
		name   string
		labels []string
	}{
		{"switchboard_turn_allocations_total", nil},
		{"switchboard_turn_allocations_active", nil},
		{"switchboard_turn_permissions_total", nil},
		{"switchboard_turn_relayed_bytes_total", []string{"direction", "to_peer"}},
		{"switchboard_turn_relayed_bytes_total", []string{"direction", "from_peer"}},
		{"switchboard_turn_relayed_packets_total", []string{"direction", "to_peer"}},
		{"switchboard_turn_relayed_packets_total", []string{"direction", "from_peer"}},
	} {
		// A relay socket counts a datagram after its write returns, which
		// can be after the echo came back: poll.
		eventually(t, 2*time.Second, fmt.Sprintf("%s%v >= 1", m.name, m.labels), func() bool {
			return s.metric(t, m.name, m.labels...) >= 1
		})
	}
	if got := s.metric(t, "switchboard_turn_relayed_bytes_total", "direction", "to_peer"); int(got)%len(payload) != 0 {
		t.Errorf("bytes to peer %v not a multiple of the payload", got)
	}
	_ = relay.Close()
	eventually(t, 3*time.Second, "gauge back to 0", func() bool {
		return s.metric(t, "switchboard_turn_allocations_active") == 0
	})
}

// TestCloseReleasesEverything checks that Close ends every goroutine and
// socket the server started, with allocations, TCP connections and relays
// live at the time.
func TestCloseReleasesEverything(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	cert, _ := selfSigned(t)
	cfg := Config{
		Realm:      testRealm,
		Listen:     []string{"udp://127.0.0.1:0", "tcp://127.0.0.1:0", "tls://127.0.0.1:0"},
		TLSConfig:  &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		PublicIP:   netip.MustParseAddr("127.0.0.1"),
		BindIP:     netip.MustParseAddr("127.0.0.1"),
		ReadLoops:  3,
		AllowPeers: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
	}
	s, err := New(withCollab(cfg, testUsers, nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	var udpAddr, tcpAddr, tlsAddr net.Addr
	for _, e := range s.Endpoints() {
		switch e.Transport {
		case TransportUDP:
			udpAddr = e.Addr
		case TransportTCP:
			tcpAddr = e.Addr
		case TransportTLS:
			tlsAddr = e.Addr
		}
	}

	var closers []func()
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}()
	client := func(conn net.PacketConn, addr net.Addr) *turn.Client {
		c, err := turn.NewClient(&turn.ClientConfig{
			TURNServerAddr: addr.String(), Conn: conn, Username: "alice", Password: "alicepw",
			Realm: testRealm, LoggerFactory: quietLogs, RTO: 100 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Listen(); err != nil {
			t.Fatal(err)
		}
		closers = append(closers, func() { c.Close(); _ = conn.Close() })

		return c
	}
	// Live allocations over UDP (several, to use several read loops) and TCP.
	for i := 0; i < 4; i++ {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		r, err := client(pc, udpAddr).Allocate()
		if err != nil {
			t.Fatal(err)
		}
		closers = append(closers, func() { _ = r.Close() })
	}
	tc, err := net.Dial("tcp", tcpAddr.String())
	if err != nil {
		t.Fatal(err)
	}
	r, err := client(turn.NewSTUNConn(tc), tcpAddr).Allocate()
	if err != nil {
		t.Fatal(err)
	}
	closers = append(closers, func() { _ = r.Close() })
	// An idle TCP connection and a TLS connection that never handshakes.
	idle, err := net.Dial("tcp", tcpAddr.String())
	if err != nil {
		t.Fatal(err)
	}
	closers = append(closers, func() { _ = idle.Close() })
	raw, err := net.Dial("tcp", tlsAddr.String())
	if err != nil {
		t.Fatal(err)
	}
	closers = append(closers, func() { _ = raw.Close() })
	eventually(t, 2*time.Second, "connections accepted", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()

		return len(s.conns) == 3
	})
	if s.Allocations() != 5 || s.relayCount() != 5 {
		t.Fatalf("allocations %d relays %d, want 5", s.Allocations(), s.relayCount())
	}

	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if s.Allocations() != 0 || s.relayCount() != 0 {
		t.Fatalf("after Close: allocations %d relays %d", s.Allocations(), s.relayCount())
	}
	// Every listening port is free again.
	for _, a := range []net.Addr{udpAddr, tcpAddr, tlsAddr} {
		switch a := a.(type) {
		case *net.UDPAddr:
			pc, err := net.ListenPacket("udp4", a.String())
			if err != nil {
				t.Errorf("UDP port still bound: %v", err)
			} else {
				_ = pc.Close()
			}
		case *net.TCPAddr:
			l, err := net.Listen("tcp4", a.String())
			if err != nil {
				t.Errorf("TCP port still bound: %v", err)
			} else {
				_ = l.Close()
			}
		}
	}
	// Connections were closed by the server.
	_ = idle.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := idle.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("idle TCP connection still open: %v", err)
	}
	for i := len(closers) - 1; i >= 0; i-- {
		closers[i]()
	}
	closers = nil
}

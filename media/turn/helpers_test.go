package turn

import (
	"bytes"
	"crypto/md5" //nolint:gosec // HA1
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testRealm = "switchboard.test"

var testSecret = []byte("rest-secret-for-tests")

// staticCreds is a Credentials backed by a map of HA1s.
type staticCreds map[string][]byte

func (c staticCreds) LongTermKey(u string) ([]byte, bool) {
	k, ok := c[u]

	return k, ok
}

func ha1(user, pass string) []byte {
	h := md5.Sum([]byte(user + ":" + testRealm + ":" + pass)) //nolint:gosec // HA1

	return h[:]
}

var testUsers = staticCreds{
	"alice": ha1("alice", "alicepw"),
	"bob":   ha1("bob", "bobpw"),
}

// syncBuffer is a goroutine-safe log sink tests can inspect.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()

	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()

	return b.b.String()
}

type testServer struct {
	*Server
	reg  *prometheus.Registry
	logs *syncBuffer
}

// startServer starts a Server on 127.0.0.1 ephemeral ports (UDP and TCP
// unless mod changes Listen) and closes it at the end of the test.
func startServer(t *testing.T, mod func(*Config)) *testServer {
	t.Helper()
	cfg := Config{
		Realm:     testRealm,
		Listen:    []string{"udp://127.0.0.1:0", "tcp://127.0.0.1:0"},
		PublicIP:  netip.MustParseAddr("127.0.0.1"),
		BindIP:    netip.MustParseAddr("127.0.0.1"),
		Secret:    testSecret,
		ReadLoops: 2,
	}
	if mod != nil {
		mod(&cfg)
	}
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	reg := prometheus.NewRegistry()
	s, err := New(withCollab(cfg, testUsers, log, reg))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})

	return &testServer{Server: s, reg: reg, logs: logs}
}

// addr returns the address of the first listener of transport tr.
func (s *testServer) addr(t *testing.T, tr Transport) net.Addr {
	t.Helper()
	for _, e := range s.Endpoints() {
		if e.Transport == tr {
			return e.Addr
		}
	}
	t.Fatalf("no %s listener", tr)

	return nil
}

// metric returns the value of a counter or gauge from the test registry.
func (s *testServer) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := s.reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if !hasLabel(m, labels[i], labels[i+1]) {
					continue next
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}

			return m.GetGauge().GetValue()
		}
	}

	return 0
}

func hasLabel(m *dto.Metric, k, v string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == k && l.GetValue() == v {
			return true
		}
	}

	return false
}

// quietLogs is a pion LoggerFactory that discards everything.
var quietLogs = slogFactory{log: slog.New(slog.DiscardHandler)}

// newUDPClient returns a pion/turn client on a fresh 127.0.0.1 UDP socket.
func newUDPClient(t *testing.T, server net.Addr, user, pass string) *turn.Client {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}

	return newClient(t, conn, server, user, pass)
}

// newTCPClient returns a pion/turn client over a TCP connection to server.
func newTCPClient(t *testing.T, server net.Addr, user, pass string) *turn.Client {
	t.Helper()
	c, err := net.DialTimeout("tcp", server.String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}

	return newClient(t, turn.NewSTUNConn(c), server, user, pass)
}

func newClient(t *testing.T, conn net.PacketConn, server net.Addr, user, pass string) *turn.Client {
	t.Helper()
	c, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: server.String(),
		TURNServerAddr: server.String(),
		Conn:           conn,
		Username:       user,
		Password:       pass,
		Realm:          testRealm,
		RTO:            100 * time.Millisecond,
		LoggerFactory:  quietLogs,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		_ = conn.Close()
	})

	return c
}

// turnErrorCode returns the STUN error code carried by a pion client error,
// or 0.
func turnErrorCode(err error) int {
	var te stun.TurnError
	if errors.As(err, &te) {
		return int(te.ErrorCodeAttr.Code)
	}
	var tp *stun.TurnError
	if errors.As(err, &tp) {
		return int(tp.ErrorCodeAttr.Code)
	}

	return 0
}

// echoPeer is a UDP peer on 127.0.0.1 that sends every datagram back.
func echoPeer(t *testing.T) *net.UDPAddr {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = conn.WriteTo(buf[:n], from)
		}
	}()
	t.Cleanup(func() {
		_ = conn.Close()
		<-done
	})

	return conn.LocalAddr().(*net.UDPAddr)
}

// eventually polls cond for up to d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rawClient speaks STUN/TURN by hand over UDP, for what pion's client does
// not expose (lifetimes, error codes, raw ChannelBind).
type rawClient struct {
	t      *testing.T
	conn   net.PacketConn
	server net.Addr
	user   stun.Username
	realm  stun.Realm
	nonce  stun.Nonce
	key    stun.MessageIntegrity
}

func newRawClient(t *testing.T, server net.Addr, user, pass string) *rawClient {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })

	return &rawClient{
		t: t, conn: conn, server: server,
		user: stun.NewUsername(user), realm: stun.NewRealm(testRealm),
		key: stun.NewLongTermIntegrity(user, testRealm, pass),
	}
}

// newRawStreamClient is a rawClient over a TCP or TLS connection to server
// (pion's STUNConn does the framing).
func newRawStreamClient(t *testing.T, conn net.Conn, server net.Addr, user, pass string) *rawClient {
	t.Helper()
	t.Cleanup(func() { _ = conn.Close() })

	return &rawClient{
		t: t, conn: turn.NewSTUNConn(conn), server: server,
		user: stun.NewUsername(user), realm: stun.NewRealm(testRealm),
		key: stun.NewLongTermIntegrity(user, testRealm, pass),
	}
}

// TURN attributes pion/stun does not define (RFC 8656 §18).
type rawAttr struct {
	typ stun.AttrType
	val []byte
}

func (a rawAttr) AddTo(m *stun.Message) error {
	m.Add(a.typ, a.val)

	return nil
}

func requestedTransportUDP() stun.Setter {
	return rawAttr{typ: 0x0019, val: []byte{17, 0, 0, 0}}
}

func lifetime(d time.Duration) stun.Setter {
	v := make([]byte, 4)
	binary.BigEndian.PutUint32(v, uint32(d/time.Second))

	return rawAttr{typ: 0x000D, val: v}
}

func channelNumber(n uint16) stun.Setter {
	return rawAttr{typ: 0x000C, val: []byte{byte(n >> 8), byte(n), 0, 0}}
}

type xorPeerAddress struct{ stun.XORMappedAddress }

func (a xorPeerAddress) AddTo(m *stun.Message) error {
	return a.XORMappedAddress.AddToAs(m, stun.AttrXORPeerAddress)
}

func peerAddress(ip string, port int) stun.Setter {
	return xorPeerAddress{stun.XORMappedAddress{IP: net.ParseIP(ip).To4(), Port: port}}
}

// roundTrip sends a request and returns the response with the same
// transaction ID, or nil after timeout.
func (c *rawClient) roundTrip(timeout time.Duration, setters ...stun.Setter) *stun.Message {
	c.t.Helper()
	req, err := stun.Build(append([]stun.Setter{stun.TransactionID}, setters...)...)
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.conn.WriteTo(req.Raw, c.server); err != nil {
		c.t.Fatal(err)
	}
	buf := make([]byte, 2048)
	deadline := time.Now().Add(timeout)
	for {
		_ = c.conn.SetReadDeadline(deadline)
		n, _, err := c.conn.ReadFrom(buf)
		if err != nil {
			return nil
		}
		res := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if res.Decode() != nil || res.TransactionID != req.TransactionID {
			continue
		}

		return res
	}
}

// authed sends an authenticated request of type typ, retrying once on
// 401/438 with the server's nonce.
func (c *rawClient) authed(typ stun.MessageType, attrs ...stun.Setter) *stun.Message {
	c.t.Helper()
	for try := 0; try < 2; try++ {
		setters := append([]stun.Setter{typ}, attrs...)
		if len(c.nonce) > 0 {
			setters = append(setters, c.user, c.realm, c.nonce, c.key)
		}
		setters = append(setters, stun.Fingerprint)
		res := c.roundTrip(2*time.Second, setters...)
		if res == nil {
			c.t.Fatalf("%v: no response", typ)
		}
		var code stun.ErrorCodeAttribute
		if res.Type.Class == stun.ClassErrorResponse && code.GetFrom(res) == nil &&
			(code.Code == stun.CodeUnauthorized || code.Code == stun.CodeStaleNonce) {
			var nonce stun.Nonce
			if nonce.GetFrom(res) == nil {
				c.nonce = nonce

				continue
			}
		}

		return res
	}
	c.t.Fatalf("%v: authentication loop", typ)

	return nil
}

// errorCode returns the ERROR-CODE of res, or 0.
func errorCode(res *stun.Message) int {
	var code stun.ErrorCodeAttribute
	if res == nil || code.GetFrom(res) != nil {
		return 0
	}

	return int(code.Code)
}

// withCollab returns cfg with its collaborators set.
func withCollab(cfg Config, creds Credentials, log *slog.Logger, reg prometheus.Registerer) Config {
	cfg.Credentials, cfg.Logger, cfg.Metrics = creds, log, reg
	return cfg
}

package media

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/fingerprint"
	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/stun/v4"
)

// browser is a minimal WebRTC party for tests: a full ICE agent's checks,
// a DTLS client or server, SRTP. It owns one UDP socket whose datagrams it
// demultiplexes (RFC 7983) between DTLS and the rest.
type browser struct {
	t     testing.TB
	conn  *net.UDPConn
	relay netip.AddrPort
	fp    Fingerprint
	cert  dtlsCert

	dtlsIn chan []byte
	other  chan []byte
	done   chan struct{}
	wg     sync.WaitGroup

	in, out *srtp.Context
}

type dtlsCert = struct{ dtls.Option }

func newBrowser(t testing.TB, relay netip.AddrPort) *browser {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.4:0")))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := selfsign.GenerateSelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	x, _ := x509.ParseCertificate(cert.Certificate[0])
	v, _ := fingerprint.Fingerprint(x, crypto.SHA256)
	b := &browser{t: t, conn: c, relay: relay, fp: Fingerprint{Hash: "sha-256", Value: strings.ToUpper(v)},
		cert: dtlsCert{dtls.WithCertificates(cert)}, dtlsIn: make(chan []byte, 64),
		other: make(chan []byte, 256), done: make(chan struct{})}
	b.wg.Add(1)
	go b.read()
	t.Cleanup(func() {
		close(b.done)
		c.Close()
		b.wg.Wait()
	})
	return b
}

func (b *browser) read() {
	defer b.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, _, err := b.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		p := append([]byte(nil), buf[:n]...)
		ch := b.other
		if demux(p) == muxDTLS {
			ch = b.dtlsIn
		}
		select {
		case ch <- p:
		default:
		}
	}
}

func (b *browser) recv(timeout time.Duration) ([]byte, bool) {
	select {
	case p := <-b.other:
		return p, true
	case <-time.After(timeout):
		return nil, false
	}
}

// check sends an ICE connectivity check with USE-CANDIDATE and returns the
// answer, or nil.
func (b *browser) check(ufrag, pwd string) *stun.Message {
	b.t.Helper()
	m, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.NewUsername(ufrag+":browser"),
		stun.RawAttribute{Type: stun.AttrUseCandidate}, stun.NewShortTermIntegrity(pwd), stun.Fingerprint)
	if err != nil {
		b.t.Fatal(err)
	}
	if _, err := b.conn.WriteToUDPAddrPort(m.Raw, b.relay); err != nil {
		b.t.Fatal(err)
	}
	p, ok := b.recv(2 * time.Second)
	if !ok {
		return nil
	}
	r := &stun.Message{Raw: p}
	if err := r.Decode(); err != nil {
		b.t.Fatalf("answer: %v", err)
	}
	return r
}

// handshake runs DTLS as the client and sets up SRTP.
func (b *browser) handshake(ctx context.Context) error {
	pc := &browserDTLS{b: b}
	conn, err := dtls.ClientWithOptions(pc, net.UDPAddrFromAddrPort(b.relay), b.cert.Option,
		dtls.WithSRTPProtectionProfiles(dtls.SRTP_AES128_CM_HMAC_SHA1_80), dtls.WithInsecureSkipVerify(true))
	if err != nil {
		return err
	}
	if err := conn.HandshakeContext(ctx); err != nil {
		conn.Close()
		return err
	}
	state, _ := conn.ConnectionState()
	cfg := srtp.Config{Profile: srtp.ProtectionProfileAes128CmHmacSha1_80}
	if err := cfg.ExtractSessionKeysFromDTLS(&state, true); err != nil {
		return err
	}
	b.out, _ = srtp.CreateContext(cfg.Keys.LocalMasterKey, cfg.Keys.LocalMasterSalt, cfg.Profile)
	b.in, _ = srtp.CreateContext(cfg.Keys.RemoteMasterKey, cfg.Keys.RemoteMasterSalt, cfg.Profile)
	b.t.Cleanup(func() { conn.Close() })
	return nil
}

type browserDTLS struct {
	b *browser
	net.PacketConn
}

func (p *browserDTLS) ReadFrom(buf []byte) (int, net.Addr, error) {
	select {
	case d := <-p.b.dtlsIn:
		return copy(buf, d), net.UDPAddrFromAddrPort(p.b.relay), nil
	case <-p.b.done:
		return 0, nil, net.ErrClosed
	}
}
func (p *browserDTLS) WriteTo(buf []byte, _ net.Addr) (int, error) {
	return p.b.conn.WriteToUDPAddrPort(buf, p.b.relay)
}
func (p *browserDTLS) Close() error                     { return nil }
func (p *browserDTLS) LocalAddr() net.Addr              { return p.b.conn.LocalAddr() }
func (p *browserDTLS) SetDeadline(time.Time) error      { return nil }
func (p *browserDTLS) SetReadDeadline(time.Time) error  { return nil }
func (p *browserDTLS) SetWriteDeadline(time.Time) error { return nil }

func TestWebRTCLegToPlain(t *testing.T) {
	r := newTestRelay(t, nil)
	s := newTestStream(t, r)
	var failed error
	var mu sync.Mutex
	s.OnFailure(func(err error) { mu.Lock(); failed = err; mu.Unlock() })
	br := newBrowser(t, local(s.LocalPort(A)))
	phone := newPhone(t, "127.0.0.3")
	s.SetPeer(A, Peer{WebRTC: &WebRTCPeer{Ufrag: "browser", Pwd: "browserpassword0123456", Fingerprints: []Fingerprint{br.fp}, Setup: "actpass"}})
	s.SetPeer(B, Peer{RTP: phone.addr()})
	ufrag, pwd := s.LocalICE(A)

	if m := br.check(ufrag, "wrong-password-wrong-pwd"); m != nil {
		t.Fatalf("check with a wrong password answered: %v", m)
	}
	m := br.check(ufrag, pwd)
	if m == nil || m.Type != stun.BindingSuccess {
		t.Fatalf("check not answered with success: %v", m)
	}
	if err := stun.NewShortTermIntegrity(pwd).Check(m); err != nil {
		t.Fatalf("answer integrity: %v", err)
	}
	var xor stun.XORMappedAddress
	if err := xor.GetFrom(m); err != nil || xor.Port != br.conn.LocalAddr().(*net.UDPAddr).Port {
		t.Fatalf("XOR-MAPPED-ADDRESS %v, %v", xor, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := br.handshake(ctx); err != nil {
		t.Fatalf("DTLS: %v", err)
	}

	// Browser → phone: SRTP in, RTP out.
	pkt := rtpPacket(111, 1, 960, 0xa, 100)
	var h rtp.Header
	enc, err := br.out.EncryptRTP(nil, pkt, &h)
	if err != nil {
		t.Fatal(err)
	}
	// The keys reach the packet loop just after the handshake: retry once.
	deadline := time.Now().Add(2 * time.Second)
	for {
		br.conn.WriteToUDPAddrPort(enc, local(s.LocalPort(A)))
		if got, ok := phone.tryRecv(200 * time.Millisecond); ok {
			if string(got) != string(pkt) {
				t.Fatalf("phone got %x, want %x", got, pkt)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no RTP at the phone; stats %+v", s.Stats(A))
		}
		pkt = rtpPacket(111, h.SequenceNumber+1, 960, 0xa, 100)
		enc, _ = br.out.EncryptRTP(nil, pkt, &h)
	}
	// Phone → browser: RTP in, SRTP out.
	reply := rtpPacket(111, 7, 960, 0xb, 100)
	phone.send(local(s.LocalPort(B)), reply)
	got, ok := br.recv(2 * time.Second)
	if !ok {
		t.Fatal("no SRTP at the browser")
	}
	dec, err := br.in.DecryptRTP(nil, got, nil)
	if err != nil || string(dec) != string(reply) {
		t.Fatalf("browser decrypted %x (%v), want %x", dec, err, reply)
	}
	if st := s.Stats(A); st.Packets == 0 {
		t.Fatalf("no packets counted for the WebRTC side: %+v", st)
	}
	mu.Lock()
	defer mu.Unlock()
	if failed != nil {
		t.Fatalf("failure reported: %v", failed)
	}
}

func TestWebRTCFingerprintMismatch(t *testing.T) {
	r := newTestRelay(t, nil)
	s := newTestStream(t, r)
	fail := make(chan error, 1)
	s.OnFailure(func(err error) { fail <- err })
	br := newBrowser(t, local(s.LocalPort(A)))
	s.SetPeer(A, Peer{WebRTC: &WebRTCPeer{Ufrag: "browser", Pwd: "browserpassword0123456",
		Fingerprints: []Fingerprint{{Hash: "sha-256", Value: strings.Repeat("AB:", 31) + "AB"}}, Setup: "active"}})
	ufrag, pwd := s.LocalICE(A)
	if m := br.check(ufrag, pwd); m == nil {
		t.Fatal("check not answered")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = br.handshake(ctx) // fails one way or another: the relay must notice
	select {
	case err := <-fail:
		if !errors.Is(err, ErrDTLS) {
			t.Fatalf("failure %v, want ErrDTLS", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no failure reported for a certificate that does not match")
	}
}

func TestWebRTCICETimeout(t *testing.T) {
	r := newTestRelay(t, func(c *Config) { c.ICETimeout = 200 * time.Millisecond })
	s := newTestStream(t, r)
	fail := make(chan error, 1)
	s.OnFailure(func(err error) { fail <- err })
	s.SetPeer(A, Peer{WebRTC: &WebRTCPeer{Ufrag: "browser", Pwd: "browserpassword0123456", Setup: "actpass"}})
	s.LocalICE(A)
	select {
	case err := <-fail:
		if !errors.Is(err, ErrICETimeout) {
			t.Fatalf("failure %v, want ErrICETimeout", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("no ICE timeout")
	}
}

func TestWebRTCGarbage(t *testing.T) {
	r := newTestRelay(t, nil)
	s := newTestStream(t, r)
	s.SetPeer(A, Peer{WebRTC: &WebRTCPeer{Ufrag: "browser", Pwd: "browserpassword0123456", Setup: "actpass"}})
	s.LocalICE(A)
	stranger := newPhone(t, "127.0.0.5")
	for _, p := range [][]byte{{0, 1, 0, 0}, {22, 254, 253, 0, 0}, rtpPacket(0, 1, 0, 1, 20), {0xff, 1, 2}, {}} {
		stranger.send(local(s.LocalPort(A)), p)
	}
	if _, ok := stranger.tryRecv(200 * time.Millisecond); ok {
		t.Fatal("the relay answered garbage")
	}
}

// tryRecv waits up to d for a datagram.
func (p *phone) tryRecv(d time.Duration) ([]byte, bool) {
	buf := make([]byte, 65536)
	p.conn.SetReadDeadline(time.Now().Add(d))
	n, _, err := p.conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		return nil, false
	}
	return buf[:n], true
}

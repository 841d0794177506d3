package media

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/fingerprint"
	"github.com/pion/logging"
	"github.com/pion/srtp/v3"
	"github.com/pion/transport/v5/deadline"
)

// dtlsQueue bounds the DTLS records waiting for a handshake goroutine: a
// flight is a handful of records, more is a flood and is dropped.
const dtlsQueue = 32

// dtlsSession runs the DTLS-SRTP handshake of one WebRTC leg (RFC 5764 §4)
// in a goroutine of its own, over a packet connection that the stream's
// packet loop feeds: pion/dtls wants a net.PacketConn, and the relay's
// sockets belong to its loops.
type dtlsSession struct {
	s    *Stream
	side Side

	in        chan []byte
	closed    chan struct{}
	closeOnce sync.Once
	rd        *deadline.Deadline
}

var quietDTLS = func() logging.LoggerFactory {
	f := logging.NewDefaultLoggerFactory()
	f.DefaultLogLevel = logging.LogLevelDisabled
	return f
}()

// startDTLS starts side's handshake; first, if not nil, is the record that
// started it (a ClientHello). The caller holds s.mu.
func (s *Stream) startDTLS(side Side, first []byte) {
	l := s.legs[side].rtc
	if s.closed || l.failed {
		return // closeRTC may be waiting: no new goroutine
	}
	d := &dtlsSession{s: s, side: side, in: make(chan []byte, dtlsQueue),
		closed: make(chan struct{}), rd: deadline.New()}
	l.dtls = d
	if first != nil {
		d.in <- append([]byte(nil), first...)
	}
	client := isPassive(l.remote.Setup)
	raddr := net.UDPAddrFromAddrPort(l.addr)
	s.rtcWG.Add(1)
	go d.run(client, raddr, l.remoteSet)
}

// deliver queues a record from the party; the caller holds s.mu.
func (d *dtlsSession) deliver(b []byte) bool {
	select {
	case <-d.closed:
		return false
	default:
	}
	select {
	case d.in <- append([]byte(nil), b...):
		return true
	default:
		return false
	}
}

func (d *dtlsSession) close() { d.closeOnce.Do(func() { close(d.closed) }) }

func (d *dtlsSession) run(client bool, raddr *net.UDPAddr, remoteSet <-chan struct{}) {
	s := d.s
	defer s.rtcWG.Done()
	timeout := s.r.cfg.ICETimeout
	if timeout <= 0 {
		timeout = DefaultICETimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	go func() { // ends the handshake when the stream closes
		select {
		case <-d.closed:
			cancel()
		case <-ctx.Done():
		}
	}()

	verify := func(raw [][]byte, _ [][]*x509.Certificate) error {
		select { // the party's SDP may still be on its way (an answer after its ClientHello)
		case <-remoteSet:
		case <-ctx.Done():
			return errors.New("no fingerprint in the party's SDP")
		}
		s.mu.Lock()
		fps := s.legs[d.side].rtc.remote.Fingerprints
		s.mu.Unlock()
		return verifyFingerprint(raw, fps)
	}
	opts := []dtls.Option{
		dtls.WithCertificates(s.r.id.cert),
		dtls.WithSRTPProtectionProfiles(dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AES128_CM_HMAC_SHA1_80),
		dtls.WithInsecureSkipVerify(true), // the fingerprint is the trust (RFC 8122 §5)
		dtls.WithVerifyPeerCertificate(verify),
		dtls.WithExtendedMasterSecret(dtls.RequestExtendedMasterSecret),
		dtls.WithLoggerFactory(quietDTLS),
	}
	var conn *dtls.Conn
	var err error
	if client {
		copts := make([]dtls.ClientOption, 0, len(opts))
		for _, o := range opts {
			copts = append(copts, o)
		}
		conn, err = dtls.ClientWithOptions(d, raddr, copts...)
	} else {
		sopts := make([]dtls.ServerOption, 0, len(opts)+1)
		for _, o := range opts {
			sopts = append(sopts, o)
		}
		sopts = append(sopts, dtls.WithClientAuth(dtls.RequireAnyClientCert))
		conn, err = dtls.ServerWithOptions(d, raddr, sopts...)
	}
	if err == nil {
		err = conn.HandshakeContext(ctx)
	}
	if err == nil {
		err = d.keys(conn, client)
	}
	if err != nil {
		select {
		case <-d.closed: // the stream closed: not the party's failure
		default:
			s.mu.Lock()
			s.rtcFail(d.side, fmt.Errorf("%w: %v", ErrDTLS, err))
			s.mu.Unlock()
		}
		if conn != nil {
			_ = conn.Close() // the handshake's error is what counts
		}
		return
	}
	// Served until the stream closes: retransmitted flights and alerts.
	buf := make([]byte, 1500)
	for {
		if _, err := conn.Read(buf); err != nil {
			break
		}
	}
	_ = conn.Close() // the stream is closing: nothing to report to

}

// keys derives the SRTP contexts from the finished handshake (RFC 5764
// §4.2) and puts them in place.
func (d *dtlsSession) keys(conn *dtls.Conn, client bool) error {
	profile, ok := conn.SelectedSRTPProtectionProfile()
	if !ok {
		return errors.New("no SRTP protection profile negotiated")
	}
	state, ok := conn.ConnectionState()
	if !ok {
		return errors.New("no connection state")
	}
	cfg := srtp.Config{Profile: srtp.ProtectionProfile(profile)}
	if err := cfg.ExtractSessionKeysFromDTLS(&state, client); err != nil {
		return fmt.Errorf("SRTP keys: %w", err)
	}
	out, err := srtp.CreateContext(cfg.Keys.LocalMasterKey, cfg.Keys.LocalMasterSalt, cfg.Profile)
	if err != nil {
		return fmt.Errorf("SRTP context: %w", err)
	}
	in, err := srtp.CreateContext(cfg.Keys.RemoteMasterKey, cfg.Keys.RemoteMasterSalt, cfg.Profile,
		srtp.SRTPReplayProtection(256), srtp.SRTCPReplayProtection(256))
	if err != nil {
		return fmt.Errorf("SRTP context: %w", err)
	}
	s := d.s
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.legs[d.side].rtc
	l.in, l.out, l.ready = in, out, true
	s.r.log.Debug("WebRTC leg ready", "side", d.side, "port", s.legs[d.side].port, "profile", profile)
	return nil
}

// verifyFingerprint checks the party's certificate against the
// a=fingerprint lines of its SDP (RFC 8122 §5).
func verifyFingerprint(raw [][]byte, fps []Fingerprint) error {
	if len(raw) == 0 {
		return errors.New("no certificate")
	}
	cert, err := x509.ParseCertificate(raw[0])
	if err != nil {
		return fmt.Errorf("certificate: %w", err)
	}
	for _, fp := range fps {
		h, err := fingerprint.HashFromString(fp.Hash)
		if err != nil {
			continue
		}
		v, err := fingerprint.Fingerprint(cert, h)
		if err == nil && strings.EqualFold(v, fp.Value) {
			return nil
		}
	}
	return errors.New("certificate does not match the SDP's fingerprint")
}

// ReadFrom hands pion/dtls the next record the party sent.
func (d *dtlsSession) ReadFrom(p []byte) (int, net.Addr, error) {
	select {
	case b := <-d.in:
		return copy(p, b), d.remote(), nil
	case <-d.closed:
		return 0, nil, net.ErrClosed
	case <-d.rd.Done():
		return 0, nil, errTimeout{}
	}
}

// WriteTo sends a record to the party from the leg's port.
func (d *dtlsSession) WriteTo(p []byte, _ net.Addr) (int, error) {
	s := d.s
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-d.closed:
		return 0, net.ErrClosed
	default:
	}
	l := &s.legs[d.side]
	if s.closed || l.rtc == nil || !l.rtc.addr.IsValid() {
		return 0, net.ErrClosed
	}
	if err := s.r.eng.writeTo(l.socks[portRTP], p, l.rtc.addr); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (d *dtlsSession) remote() net.Addr {
	d.s.mu.Lock()
	defer d.s.mu.Unlock()
	return net.UDPAddrFromAddrPort(d.s.legs[d.side].rtc.addr)
}

// Close is pion/dtls closing its connection; the session ends with the stream.
func (d *dtlsSession) Close() error { return nil }

// LocalAddr returns the leg's RTP port.
func (d *dtlsSession) LocalAddr() net.Addr {
	return net.UDPAddrFromAddrPort(netip.AddrPortFrom(d.s.r.bindIP, uint16(d.s.legs[d.side].port)))
}

// SetDeadline sets the read deadline; writes never block.
func (d *dtlsSession) SetDeadline(t time.Time) error { return d.SetReadDeadline(t) }

// SetReadDeadline bounds ReadFrom.
func (d *dtlsSession) SetReadDeadline(t time.Time) error { d.rd.Set(t); return nil }

// SetWriteDeadline is a no-op: writes never block.
func (d *dtlsSession) SetWriteDeadline(time.Time) error { return nil }

type errTimeout struct{}

func (errTimeout) Error() string   { return "i/o timeout" }
func (errTimeout) Timeout() bool   { return true }
func (errTimeout) Temporary() bool { return true }

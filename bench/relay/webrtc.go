package main

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/fingerprint"
	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/stun/v4"
)

// The WebRTC mode (load -webrtc) makes side A of every call a browser: it
// offers UDP/TLS/RTP/SAVPF, runs ICE as the controlling agent (connectivity
// checks with USE-CANDIDATE against the relay's candidate, answers to the
// relay's own checks when it is a full agent such as rtpengine), the DTLS
// client (pion/dtls/v3, a=setup:actpass answered passive by the relay) and
// SRTP (pion/srtp/v3) on one multiplexed port. Side B stays a plain RTP
// phone. The relay converts between them.
//
// The generator is kept cheap so that it is not what limits the run: the
// browser's SRTP packets for the whole run are encrypted once before it
// starts (their send times are kept in a table instead of the payload),
// and the packets the browser receives are decrypted with reused buffers.

// rtcConfig is the browser's side of the WebRTC mode.
type rtcConfig struct {
	profile  dtls.SRTPProtectionProfile
	parallel int           // calls set up at once
	consent  time.Duration // interval of the browser's consent checks (RFC 7675); 0: none
	timeout  time.Duration // ICE plus DTLS per call
}

// srtpProfiles are the -srtp names.
var srtpProfiles = map[string]dtls.SRTPProtectionProfile{
	"aes128-cm-sha1-80": dtls.SRTP_AES128_CM_HMAC_SHA1_80,
	"aead-aes128-gcm":   dtls.SRTP_AEAD_AES_128_GCM,
}

func srtpProfile(p dtls.SRTPProtectionProfile) (srtp.ProtectionProfile, error) {
	switch p {
	case dtls.SRTP_AES128_CM_HMAC_SHA1_80:
		return srtp.ProtectionProfileAes128CmHmacSha1_80, nil
	case dtls.SRTP_AEAD_AES_128_GCM:
		return srtp.ProtectionProfileAeadAes128Gcm, nil
	case dtls.SRTP_AEAD_AES_256_GCM:
		return srtp.ProtectionProfileAeadAes256Gcm, nil
	}
	return 0, fmt.Errorf("SRTP protection profile %#x not supported", p)
}

// browserOffer is what the browser's SDP says about its media.
type browserOffer struct {
	addr        netip.AddrPort // its host candidate (and c=/m=)
	ufrag, pwd  string
	fingerprint string // "sha-256 AB:CD:…"
	setup       string
}

// relayAnswer is what the relay's SDP towards the browser says.
type relayAnswer struct {
	addr         netip.AddrPort // the relay's candidate: where the browser sends
	ufrag, pwd   string
	fingerprints []string // "sha-256 AB:CD:…"
	setup        string
}

// rtcBackend is a relay that converts WebRTC (side A) to plain RTP (side B).
type rtcBackend interface {
	backend
	// newRTCCall sets up call i between the browser and the phone at b.
	// It returns what the relay told the browser and where the phone sends.
	newRTCCall(i int, br browserOffer, b netip.AddrPort) (relayAnswer, netip.AddrPort, error)
}

// browserID is the browser's DTLS certificate, shared by its calls (as a
// browser shares one among the connections of a page).
type browserID struct {
	cert tls.Certificate
	fp   string // "sha-256 AB:CD:…"
}

func newBrowserID() (*browserID, error) {
	cert, err := selfsign.GenerateSelfSigned()
	if err != nil {
		return nil, err
	}
	x, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, err
	}
	v, err := fingerprint.Fingerprint(x, crypto.SHA256)
	if err != nil {
		return nil, err
	}
	return &browserID{cert: cert, fp: "sha-256 " + strings.ToUpper(v)}, nil
}

// rtcCall is the browser end of one call.
type rtcCall struct {
	idx   int
	sock  int // index of its browser socket
	conn  *net.UDPConn
	offer browserOffer
	ans   relayAnswer
	tie   uint64

	iceDone chan struct{} // closed on the first valid success response
	iceOnce sync.Once
	pipe    *dtlsPipe
	dtls    *dtls.Conn

	tx     *srtp.Context // encrypts what the browser sends
	rx     *srtp.Context // decrypts what the relay sends
	pre    []byte        // the browser's SRTP packets of the run, stride bytes each
	stride int
	sent   []int64 // send time (ns since the start) by sequence number & sentMask
}

const sentMask = 1023 // the send-time table covers 1024 rounds (20 s)

// packet returns the pre-encrypted packet of round r (sequence number r+1).
func (c *rtcCall) packet(r int) []byte {
	r %= len(c.pre) / c.stride
	return c.pre[r*c.stride : (r+1)*c.stride]
}

func randomString(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/"
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// checkRequest is the browser's connectivity (or consent) check towards
// the relay (RFC 8445 §7.1.1, §7.1.2): controlling, nominating.
func (c *rtcCall) checkRequest() ([]byte, error) {
	m, err := stun.Build(stun.TransactionID, stun.BindingRequest,
		stun.NewUsername(c.ans.ufrag+":"+c.offer.ufrag),
		ice.AttrControlling(c.tie), ice.PriorityAttr(2130706431), ice.UseCandidate(),
		stun.NewShortTermIntegrity(c.ans.pwd), stun.Fingerprint)
	if err != nil {
		return nil, err
	}
	return m.Raw, nil
}

// onSTUN handles a STUN message from the relay: a success response to the
// browser's check completes its ICE, a check of the relay's own (a full
// agent's, RFC 8445 §7.3) gets its answer. It returns the answer to send.
func (c *rtcCall) onSTUN(b []byte, from netip.AddrPort) []byte {
	m := &stun.Message{Raw: append([]byte(nil), b...)}
	if err := m.Decode(); err != nil {
		return nil
	}
	switch m.Type {
	case stun.BindingSuccess:
		if stun.NewShortTermIntegrity(c.ans.pwd).Check(m) == nil {
			c.iceOnce.Do(func() { close(c.iceDone) })
		}
	case stun.BindingRequest:
		var user stun.Username
		if user.GetFrom(m) != nil || !strings.HasPrefix(user.String(), c.offer.ufrag+":") ||
			stun.NewShortTermIntegrity(c.offer.pwd).Check(m) != nil {
			return nil
		}
		resp, err := stun.Build(stun.NewTransactionIDSetter(m.TransactionID), stun.BindingSuccess,
			&stun.XORMappedAddress{IP: from.Addr().AsSlice(), Port: int(from.Port())},
			stun.NewShortTermIntegrity(c.offer.pwd), stun.Fingerprint)
		if err == nil {
			return resp.Raw
		}
	}
	return nil
}

// connect runs ICE and the DTLS handshake with the relay and prepares the
// SRTP packets of `rounds` rounds.
func (c *rtcCall) connect(ctx context.Context, id *browserID, rc rtcConfig, rounds int) error {
	raddr := net.UDPAddrFromAddrPort(c.ans.addr)
	// ICE: check until the relay answers (RFC 8445 §7.2.2 retransmissions).
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for done := false; !done; {
		req, err := c.checkRequest()
		if err != nil {
			return err
		}
		if _, err := c.conn.WriteToUDP(req, raddr); err != nil {
			return fmt.Errorf("ICE check: %w", err)
		}
		select {
		case <-c.iceDone:
			done = true
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("ICE: no answer to the connectivity checks: %w", ctx.Err())
		}
	}
	// DTLS client: the relay answered a=setup:passive (RFC 5763 §5).
	want := c.ans.fingerprints
	conn, err := dtls.ClientWithOptions(c.pipe, raddr,
		dtls.WithCertificates(id.cert),
		dtls.WithSRTPProtectionProfiles(rc.profile),
		dtls.WithExtendedMasterSecret(dtls.RequireExtendedMasterSecret),
		dtls.WithFlightInterval(200*time.Millisecond),
		dtls.WithInsecureSkipVerify(true),
		dtls.WithVerifyPeerCertificate(func(raw [][]byte, _ [][]*x509.Certificate) error {
			return verifyFingerprint(raw, want)
		}))
	if err != nil {
		return fmt.Errorf("DTLS: %w", err)
	}
	c.dtls = conn
	if err := conn.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("DTLS handshake: %w", err)
	}
	sel, ok := conn.SelectedSRTPProtectionProfile()
	if !ok {
		return errors.New("DTLS: no SRTP protection profile negotiated")
	}
	prof, err := srtpProfile(sel)
	if err != nil {
		return err
	}
	state, ok := conn.ConnectionState()
	if !ok {
		return errors.New("DTLS: no connection state")
	}
	keys := srtp.Config{Profile: prof}
	if err := keys.ExtractSessionKeysFromDTLS(&state, true); err != nil {
		return fmt.Errorf("SRTP keys: %w", err)
	}
	if c.tx, err = srtp.CreateContext(keys.Keys.LocalMasterKey, keys.Keys.LocalMasterSalt, prof); err != nil {
		return err
	}
	if c.rx, err = srtp.CreateContext(keys.Keys.RemoteMasterKey, keys.Keys.RemoteMasterSalt, prof); err != nil {
		return err
	}
	tag, err := prof.AuthTagRTPLen()
	if err != nil {
		return err
	}
	aead, err := prof.AEADAuthTagLen()
	if err != nil {
		return err
	}
	c.stride = packetSize + tag + aead
	c.pre = make([]byte, rounds*c.stride)
	plain := newPacket(c.idx, 0)
	for r := 0; r < rounds; r++ {
		seq := uint16(r + 1)
		binary.BigEndian.PutUint16(plain[2:], seq)
		binary.BigEndian.PutUint32(plain[4:], uint32(seq)*160)
		dst := c.pre[r*c.stride : r*c.stride : (r+1)*c.stride]
		out, err := c.tx.EncryptRTP(dst, plain, nil)
		if err != nil {
			return fmt.Errorf("SRTP: %w", err)
		}
		if len(out) != c.stride || &out[0] != &c.pre[r*c.stride] {
			return fmt.Errorf("SRTP: packet of %d bytes, want %d", len(out), c.stride)
		}
	}
	c.sent = make([]int64, sentMask+1)
	return nil
}

func verifyFingerprint(raw [][]byte, want []string) error {
	if len(raw) == 0 {
		return errors.New("no certificate")
	}
	x, err := x509.ParseCertificate(raw[0])
	if err != nil {
		return err
	}
	for _, w := range want {
		hash, value, _ := strings.Cut(w, " ")
		if !strings.EqualFold(hash, "sha-256") {
			continue
		}
		got, err := fingerprint.Fingerprint(x, crypto.SHA256)
		if err == nil && strings.EqualFold(got, value) {
			return nil
		}
	}
	return fmt.Errorf("certificate matches none of the fingerprints %q", want)
}

// dtlsPipe is the net.PacketConn a call's DTLS runs on: it writes to the
// relay from the shared browser socket and reads what the socket's demuxer
// hands it.
type dtlsPipe struct {
	conn  *net.UDPConn
	raddr *net.UDPAddr
	in    chan []byte
	done  chan struct{}
	once  sync.Once

	mu       sync.Mutex
	deadline time.Time
}

func newDTLSPipe(conn *net.UDPConn, raddr netip.AddrPort) *dtlsPipe {
	return &dtlsPipe{conn: conn, raddr: net.UDPAddrFromAddrPort(raddr), in: make(chan []byte, 16), done: make(chan struct{})}
}

func (p *dtlsPipe) deliver(b []byte) {
	select {
	case p.in <- append([]byte(nil), b...):
	default: // full: as a socket buffer would, drop
	}
}

func (p *dtlsPipe) ReadFrom(b []byte) (int, net.Addr, error) {
	p.mu.Lock()
	dl := p.deadline
	p.mu.Unlock()
	var timeout <-chan time.Time
	if !dl.IsZero() {
		d := time.Until(dl)
		if d <= 0 {
			return 0, nil, timeoutError{}
		}
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case pkt := <-p.in:
		return copy(b, pkt), p.raddr, nil
	case <-p.done:
		return 0, nil, net.ErrClosed
	case <-timeout:
		return 0, nil, timeoutError{}
	}
}

func (p *dtlsPipe) WriteTo(b []byte, _ net.Addr) (int, error) {
	select {
	case <-p.done:
		return 0, net.ErrClosed
	default:
	}
	return p.conn.WriteToUDP(b, p.raddr)
}

func (p *dtlsPipe) Close() error {
	p.once.Do(func() { close(p.done) })
	return nil
}

func (p *dtlsPipe) LocalAddr() net.Addr { return p.conn.LocalAddr() }

func (p *dtlsPipe) SetDeadline(t time.Time) error { return p.SetReadDeadline(t) }

func (p *dtlsPipe) SetReadDeadline(t time.Time) error {
	p.mu.Lock()
	p.deadline = t
	p.mu.Unlock()
	return nil
}

func (p *dtlsPipe) SetWriteDeadline(time.Time) error { return nil }

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// setupDemux reads a browser socket while the calls are set up and hands
// each packet to the call whose relay address sent it: STUN to the ICE
// code, DTLS (RFC 7983 §7: first byte 20–63) to the call's pipe.
type setupDemux struct {
	conn  *net.UDPConn
	mu    sync.Mutex
	calls map[netip.AddrPort]*rtcCall
	done  chan struct{}
}

func (d *setupDemux) add(c *rtcCall) {
	d.mu.Lock()
	d.calls[c.ans.addr] = c
	d.mu.Unlock()
}

func (d *setupDemux) run() {
	defer close(d.done)
	buf := make([]byte, 2048)
	for {
		n, from, err := d.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || isTimeout(err) {
				return
			}
			continue
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		d.mu.Lock()
		c := d.calls[from]
		d.mu.Unlock()
		if c == nil || n == 0 {
			continue
		}
		b := buf[:n]
		switch {
		case b[0] < 4:
			if resp := c.onSTUN(b, from); resp != nil {
				d.conn.WriteToUDPAddrPort(resp, from)
			}
		case b[0] >= 20 && b[0] <= 63:
			c.pipe.deliver(b)
		}
	}
}

// stop ends the reader; the socket is then the polling loop's.
func (d *setupDemux) stop() {
	d.conn.SetReadDeadline(time.Now())
	<-d.done
	d.conn.SetReadDeadline(time.Time{})
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// setupRTC creates the WebRTC calls on the relay, `parallel` at a time:
// signalling (one at a time), ICE, DTLS, SRTP keys and the pre-encrypted
// packets.
func setupRTC(be rtcBackend, calls []callState, as, bs []*net.UDPConn, cfg loadConfig) ([]*rtcCall, error) {
	id, err := newBrowserID()
	if err != nil {
		return nil, err
	}
	demux := make([]*setupDemux, len(as))
	for i, c := range as {
		demux[i] = &setupDemux{conn: c, calls: map[netip.AddrPort]*rtcCall{}, done: make(chan struct{})}
		go demux[i].run()
	}
	defer func() {
		for _, d := range demux {
			d.stop()
		}
	}()
	rounds := int(cfg.duration/period) + 2
	rtc := make([]*rtcCall, len(calls))
	var signalling sync.Mutex
	jobs := make(chan int)
	errs := make(chan error, len(calls))
	var wg sync.WaitGroup
	for w := 0; w < max(cfg.rtc.parallel, 1); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				errs <- setupCall(be, i, &calls[i], as, bs, id, &signalling, demux, cfg, rounds, rtc)
			}
		}()
	}
	var first error
	for i := range calls {
		jobs <- i
		select {
		case err := <-errs:
			if err != nil && first == nil {
				first = err
			}
		default:
		}
		if first != nil {
			break
		}
	}
	close(jobs)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		closeRTC(rtc)
		return nil, first
	}
	return rtc, nil
}

func setupCall(be rtcBackend, i int, cs *callState, as, bs []*net.UDPConn, id *browserID, signalling *sync.Mutex,
	demux []*setupDemux, cfg loadConfig, rounds int, out []*rtcCall) error {
	c := &rtcCall{
		idx: i, sock: cs.sockA, conn: as[cs.sockA], iceDone: make(chan struct{}),
		offer: browserOffer{
			addr:  as[cs.sockA].LocalAddr().(*net.UDPAddr).AddrPort(),
			ufrag: randomString(8), pwd: randomString(24), fingerprint: id.fp, setup: "actpass",
		},
	}
	var tb [8]byte
	rand.Read(tb[:])
	c.tie = binary.BigEndian.Uint64(tb[:])
	phone := bs[cs.sockB].LocalAddr().(*net.UDPAddr).AddrPort()
	signalling.Lock()
	ans, toB, err := be.newRTCCall(i, c.offer, phone)
	signalling.Unlock()
	if err != nil {
		return fmt.Errorf("call %d: %w", i, err)
	}
	c.ans = ans
	c.pipe = newDTLSPipe(c.conn, ans.addr)
	out[i] = c
	demux[cs.sockA].add(c)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.rtc.timeout)
	defer cancel()
	if err := c.connect(ctx, id, cfg.rtc, rounds); err != nil {
		return fmt.Errorf("call %d: %w", i, err)
	}
	cs.dstA, cs.dstB = net.UDPAddrFromAddrPort(ans.addr), net.UDPAddrFromAddrPort(toB)
	cs.pktA, cs.pktB = c.packet(0), newPacket(i, 1)
	cs.bufA, cs.bufB = [][]byte{cs.pktA}, [][]byte{cs.pktB}
	return nil
}

// closeRTC ends the browsers' DTLS sessions (after the relay's calls are
// gone, so that their close_notify alerts end nothing).
func closeRTC(rtc []*rtcCall) {
	for _, c := range rtc {
		if c == nil {
			continue
		}
		if c.dtls != nil {
			c.dtls.Close()
		}
		if c.pipe != nil {
			c.pipe.Close()
		}
	}
}

// rtcReceive is the polling loop's WebRTC state.
type rtcReceive struct {
	byAddr map[netip.AddrPort]*rtcCall // relay address → call, for STUN
	dec    [2048]byte
	hdr    rtp.Header
	stun   uint64 // STUN messages from the relays
	rtcp   uint64 // SRTCP packets
	other  uint64 // DTLS and anything else
	failed uint64 // SRTP packets that did not decrypt
}

func (t *traffic) initRTC() {
	t.rtcRx.byAddr = make(map[netip.AddrPort]*rtcCall, len(t.rtc))
	for _, c := range t.rtc {
		t.rtcRx.byAddr[c.ans.addr] = c
	}
}

// accountBrowser counts one packet received on browser socket sock.
func (t *traffic) accountBrowser(rc *receiver, sock int, b []byte, from netip.AddrPort, now int64) {
	switch {
	case len(b) == 0:
		rc.bad++
	case b[0] < 4: // STUN (RFC 7983 §7)
		t.rtcRx.stun++
		if c := t.rtcRx.byAddr[from]; c != nil {
			if resp := c.onSTUN(b, from); resp != nil {
				t.conns[sock].WriteToUDPAddrPort(resp, from)
			}
		}
	case b[0] >= 128 && b[0] <= 191 && len(b) >= 12:
		if b[1] >= 192 && b[1] <= 223 { // RTCP multiplexed (RFC 5761 §4)
			t.rtcRx.rtcp++
			return
		}
		ssrc := binary.BigEndian.Uint32(b[8:])
		ci := int(ssrc / 2)
		if ssrc&1 == 0 || ci >= len(t.rtc) {
			rc.bad++
			return
		}
		plain, err := t.rtc[ci].rx.DecryptRTP(t.rtcRx.dec[:0], b, &t.rtcRx.hdr)
		if err != nil {
			t.rtcRx.failed++
			rc.bad++
			return
		}
		rc.account(plain, now, t.winStart, t.winEnd)
	default:
		t.rtcRx.other++
	}
}

// accountPhone counts one packet received on a phone socket: the browser's
// packet, decrypted by the relay; its send time is in the call's table.
func (t *traffic) accountPhone(rc *receiver, b []byte, now int64) {
	if len(b) != packetSize || binary.BigEndian.Uint16(b[12:]) != magic || b[14] != 0 {
		rc.bad++
		return
	}
	ci := int(binary.BigEndian.Uint32(b[16:]))
	if ci >= len(t.rtc) {
		rc.bad++
		return
	}
	sent := t.rtc[ci].sent[binary.BigEndian.Uint16(b[2:])&sentMask]
	rc.total++
	if sent >= t.winStart && sent < t.winEnd {
		rc.inWindow++
		rc.hist.add(time.Duration(now - sent))
	}
}

// consent sends the consent checks (RFC 7675 §5.1) of tick's calls: each
// call one per rtc.consent, spread over the ticks.
func (t *traffic) consent(tick int) {
	every := int(t.cfg.rtc.consent / time.Millisecond)
	if every <= 0 || tick < every { // in the first interval ICE has just been done
		return
	}
	for i := tick % every; i < len(t.rtc); i += every {
		c := t.rtc[i]
		if req, err := c.checkRequest(); err == nil {
			t.conns[c.sock].WriteToUDP(req, t.calls[i].dstA)
		}
	}
}

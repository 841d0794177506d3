package trunk

import (
	"encoding/binary"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gosip "github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/switchboard/switchboard/internal/siptest"
	"github.com/switchboard/switchboard/test/internal/testbed"
)

// carrier is a carrier's SIP server stand-in, in the carrier namespace at
// one address: a scripted siptest phone that challenges with digest and
// checks the switch's credentials, and answers calls with RTP.
type carrier struct {
	*siptest.Phone
	t          *testing.T
	name, ns   string
	addr       string           // host:port
	user, pass string           // the credentials it expects
	registered []*gosip.Request // the REGISTERs it accepted (answerRegister)
}

const carrierRealm = "carrier.example"

// carrierSocket opens a carrier's SIP socket at ip:port (0: any port) in
// ns: before the switch starts, whose config names its address.
func carrierSocket(t *testing.T, ns, ip string, port int) net.PacketConn {
	t.Helper()
	pc, err := testbed.ListenPacketIn(ns, net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("carrier socket %s:%d: %v", ip, port, err)
	}
	return pc
}

// newCarrier makes the carrier on its socket pc in ns; proxy is the
// switch, user and pass the credentials it expects of it.
func newCarrier(t *testing.T, ns string, pc net.PacketConn, name, proxy, user, pass string, tr *siptest.Trace) *carrier {
	t.Helper()
	ip := pc.LocalAddr().(*net.UDPAddr).IP.String()
	p := siptest.NewPhone(t, siptest.Config{Transport: "udp", Server: proxy, User: name, Name: name, Domain: ip,
		PacketConn: pc, Trace: tr})
	return &carrier{Phone: p, t: t, name: name, ns: ns, addr: p.Addr().String(), user: user, pass: pass}
}

// challenge answers req with a digest challenge: 401 (WWW-Authenticate) or
// 407 (Proxy-Authenticate).
func (c *carrier) challenge(req *gosip.Request, code int) {
	c.t.Helper()
	name, reason := "WWW-Authenticate", "Unauthorized"
	if code == 407 {
		name, reason = "Proxy-Authenticate", "Proxy Authentication Required"
	}
	c.Reply(req, code, reason, fmt.Sprintf(`%s: Digest realm="%s", nonce="%s", qop="auth", algorithm=MD5`, name, carrierRealm, siptest.Rand(8)))
}

// authorized reports whether req carries the expected credentials in
// header (Authorization or Proxy-Authorization), for its method and
// Request-URI.
func (c *carrier) authorized(req *gosip.Request, header string) error {
	h := req.GetHeader(header)
	if h == nil {
		return fmt.Errorf("no %s", header)
	}
	cred, err := digest.ParseCredentials(h.Value())
	if err != nil {
		return err
	}
	want, err := digest.Digest(&digest.Challenge{Realm: carrierRealm, Nonce: cred.Nonce, QOP: []string{"auth"}, Algorithm: "MD5"},
		digest.Options{Method: string(req.Method), URI: cred.URI, Username: c.user, Password: c.pass, Cnonce: cred.Cnonce, Count: cred.Nc})
	if err != nil {
		return err
	}
	switch {
	case cred.Username != c.user || cred.Realm != carrierRealm:
		return fmt.Errorf("credentials of %q for %q", cred.Username, cred.Realm)
	case cred.URI != req.Recipient.String():
		return fmt.Errorf("digest uri %q is not the Request-URI %q", cred.URI, req.Recipient.String())
	case cred.Response != want.Response:
		return fmt.Errorf("wrong digest response")
	}
	return nil
}

// authInvite takes an INVITE of the switch, challenges it with code and
// returns the INVITE re-sent with valid credentials (failing the test
// otherwise), and the first one.
func (c *carrier) authInvite(code int) (first, authed *gosip.Request) {
	c.t.Helper()
	first = c.WaitRequest("INVITE")
	c.challenge(first, code)
	authed = c.WaitRequest("INVITE")
	header := "Authorization"
	if code == 407 {
		header = "Proxy-Authorization"
	}
	if err := c.authorized(authed, header); err != nil {
		c.t.Fatalf("carrier %s: INVITE re-sent with bad credentials: %v\n%s", c.name, err, authed)
	}
	if authed.CSeq().SeqNo != first.CSeq().SeqNo+1 || authed.Via().Value() == first.Via().Value() {
		c.t.Errorf("carrier %s: re-sent INVITE with CSeq %d after %d and Via %s", c.name, authed.CSeq().SeqNo, first.CSeq().SeqNo, authed.Via().Value())
	}
	return first, authed
}

// answer rings and answers the INVITE req with an SDP offering PCMU at an
// RTP socket of its own, and starts sending a tone of freq Hz to where the
// INVITE's SDP (the switch's relay) says, recording what comes back.
func (c *carrier) answer(req *gosip.Request, freq float64) *rtpLeg {
	c.t.Helper()
	peer, err := sdpAudio(req.Body())
	if err != nil {
		c.t.Fatalf("carrier %s: INVITE SDP: %v\n%s", c.name, err, req.Body())
	}
	leg := newRTPLeg(c.t, c.ns, c.Addr().Addr().String())
	c.Reply(req, 180, "Ringing")
	ip := c.Addr().Addr().String()
	sdp := fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\nm=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n",
		ip, ip, leg.port())
	c.replyBody(req, 200, "OK", sdp)
	leg.play(peer, freq)
	return leg
}

// replyBody answers req with a body (application/sdp), as Reply does
// otherwise.
func (c *carrier) replyBody(req *gosip.Request, code int, reason, sdp string) {
	res := gosip.NewResponseFromRequest(req, code, reason, []byte(sdp))
	if t, ok := req.To().Params.Get("tag"); !ok || t == "" {
		res.To().Params.Add("tag", c.Tag(req.CallID().Value()))
	}
	res.AppendHeader(gosip.NewHeader("Contact", "<"+c.Contact()+">"))
	res.AppendHeader(gosip.NewHeader("Content-Type", "application/sdp"))
	c.SendTo(res.String(), req.Source())
}

// waitAck waits for the ACK of a 2xx: sent to the carrier's Contact (the
// ACKs of its challenges go to the INVITE's Request-URI).
func (c *carrier) waitAck() *gosip.Request {
	c.t.Helper()
	return c.Wait(siptest.And(siptest.IsRequest("ACK"), func(m gosip.Message) bool {
		return m.(*gosip.Request).Recipient.User == c.name
	}), 0, "ACK of the 2xx").(*gosip.Request)
}

// sdpAudio reads the address of an SDP's first audio stream.
func sdpAudio(body []byte) (netip.AddrPort, error) {
	var ip netip.Addr
	port := 0
	for _, l := range strings.Split(string(body), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "c=IN IP4 "):
			a, err := netip.ParseAddr(strings.TrimPrefix(l, "c=IN IP4 "))
			if err != nil {
				return netip.AddrPort{}, err
			}
			if !ip.IsValid() {
				ip = a
			}
		case strings.HasPrefix(l, "m=audio ") && port == 0:
			f := strings.Fields(l)
			port, _ = strconv.Atoi(f[1])
		}
	}
	if !ip.IsValid() || port == 0 {
		return netip.AddrPort{}, fmt.Errorf("no audio stream")
	}
	return netip.AddrPortFrom(ip, uint16(port)), nil
}

// rtpLeg is the carrier's media: it sends a tone in PCMU and keeps the
// PCMU it receives, decoded.
type rtpLeg struct {
	t    *testing.T
	pc   net.PacketConn
	stop chan struct{}
	wg   sync.WaitGroup

	mu      sync.Mutex
	samples []int16
}

func newRTPLeg(t *testing.T, ns, ip string) *rtpLeg {
	t.Helper()
	pc, err := testbed.ListenPacketIn(ns, net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	l := &rtpLeg{t: t, pc: pc, stop: make(chan struct{})}
	l.wg.Add(1)
	go l.receive()
	t.Cleanup(l.close)
	return l
}

func (l *rtpLeg) port() int { return l.pc.LocalAddr().(*net.UDPAddr).Port }

// play sends 20 ms PCMU packets of a sine at freq Hz to peer until close
// (at most 30 s).
func (l *rtpLeg) play(peer netip.AddrPort, freq float64) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		to := net.UDPAddrFromAddrPort(peer)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		limit := time.After(30 * time.Second)
		pkt := make([]byte, 12+160)
		pkt[0], pkt[1] = 0x80, 0 // V=2, PT 0 (PCMU)
		binary.BigEndian.PutUint32(pkt[8:], 0x5b0a7c11)
		for n := 0; ; n++ {
			binary.BigEndian.PutUint16(pkt[2:], uint16(n))
			binary.BigEndian.PutUint32(pkt[4:], uint32(n*160))
			for i := 0; i < 160; i++ {
				s := 0.5 * math.Sin(2*math.Pi*freq*float64(n*160+i)/8000)
				pkt[12+i] = ulawEncode(int16(s * 32767))
			}
			_, _ = l.pc.WriteTo(pkt, to) // best effort, like any RTP
			select {
			case <-l.stop:
				return
			case <-limit:
				return
			case <-tick.C:
			}
		}
	}()
}

func (l *rtpLeg) receive() {
	defer l.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, _, err := l.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if n <= 12 || buf[0]>>6 != 2 || buf[1]&0x7f != 0 {
			continue // not PCMU RTP
		}
		l.mu.Lock()
		for _, b := range buf[12:n] {
			l.samples = append(l.samples, ulawDecode(b))
		}
		l.mu.Unlock()
	}
}

// received returns the seconds of audio received so far.
func (l *rtpLeg) received() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return float64(len(l.samples)) / 8000
}

// tone measures what was received at freq Hz.
func (l *rtpLeg) tone(freq float64) testbed.Tone {
	l.mu.Lock()
	defer l.mu.Unlock()
	return testbed.MeasureTone(testbed.WAV{Rate: 8000, Channels: 1, Samples: append([]int16(nil), l.samples...)}, freq)
}

func (l *rtpLeg) close() {
	select {
	case <-l.stop:
		return
	default:
	}
	close(l.stop)
	l.pc.Close()
	l.wg.Wait()
}

// G.711 µ-law (ITU-T G.711, the classic bias-and-segment form).
func ulawEncode(s int16) byte {
	const bias, clip = 0x84, 32635
	v, sign := int(s), 0
	if v < 0 {
		v, sign = -v, 0x80
	}
	v = min(v, clip) + bias
	exp := 7
	for mask := 0x4000; v&mask == 0 && exp > 0; mask >>= 1 {
		exp--
	}
	mant := (v >> (exp + 3)) & 0x0f
	return ^byte(sign | exp<<4 | mant)
}

func ulawDecode(u byte) int16 {
	u = ^u
	exp, mant := int(u>>4)&7, int(u&0x0f)
	v := ((mant << 3) + 0x84) << exp
	v -= 0x84
	if u&0x80 != 0 {
		v = -v
	}
	return int16(v)
}

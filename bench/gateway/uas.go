package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gosip "github.com/emiago/sipgo/sip"

	"github.com/switchboard/switchboard/internal/siptest"
)

// uas is the SIP side: one registered user on one UDP socket that answers
// every INVITE with 200 OK and an SDP pointing at a UDP socket of the call,
// and sends a 172-byte PCMU RTP packet every 20 ms on each call.
type uas struct {
	user, password, domain string
	proxy                  *net.UDPAddr
	conn                   *net.UDPConn
	local                  netip.AddrPort

	mu    sync.Mutex
	calls map[string]*uasCall // by Call-ID
	resp  chan *gosip.Response

	rx   atomic.Int64 // RTP packets received on all calls
	tx   atomic.Int64
	stop chan struct{}
	wg   sync.WaitGroup
}

type uasCall struct {
	rtp  *net.UDPConn
	dst  netip.AddrPort
	tag  string
	ok   string // the 200 OK, resent on a retransmitted INVITE
	seq  uint16
	ts   uint32
	ssrc uint32
}

func newUAS(proxy, user, password, domain string) (*uas, error) {
	pa, err := net.ResolveUDPAddr("udp", proxy)
	if err != nil {
		return nil, err
	}
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	c.SetReadBuffer(4 << 20)
	u := &uas{user: user, password: password, domain: domain, proxy: pa, conn: c,
		local: c.LocalAddr().(*net.UDPAddr).AddrPort(),
		calls: map[string]*uasCall{}, resp: make(chan *gosip.Response, 16), stop: make(chan struct{})}
	u.wg.Add(2)
	go u.readSIP()
	go u.transmit()
	return u, nil
}

func (u *uas) close() {
	close(u.stop)
	u.conn.Close()
	u.mu.Lock()
	for id, c := range u.calls {
		c.rtp.Close()
		delete(u.calls, id)
	}
	u.mu.Unlock()
	u.wg.Wait()
}

func (u *uas) contact() string {
	return fmt.Sprintf("<sip:%s@%s>", u.user, u.local)
}

// register registers the user (with digest authentication).
func (u *uas) register() error {
	callID := siptest.Rand(12) + "@bench"
	build := func(cseq int, auth string) string {
		m := &siptest.Msg{Start: fmt.Sprintf("REGISTER sip:%s SIP/2.0", u.domain)}
		m.Add("Via", fmt.Sprintf("SIP/2.0/UDP %s;branch=%s;rport", u.local, siptest.NewBranch()))
		m.Add("Max-Forwards", "70")
		m.Add("From", fmt.Sprintf("<sip:%s@%s>;tag=%s", u.user, u.domain, siptest.Rand(8)))
		m.Add("To", fmt.Sprintf("<sip:%s@%s>", u.user, u.domain))
		m.Add("Call-ID", callID)
		m.Add("CSeq", fmt.Sprintf("%d REGISTER", cseq))
		m.Add("Contact", u.contact())
		m.Add("Expires", "3600")
		if auth != "" {
			m.Add("Authorization", auth)
		}
		m.Add("Content-Length", "0")
		return m.String()
	}
	send := func(s string) (*gosip.Response, error) {
		if _, err := u.conn.WriteToUDP([]byte(s), u.proxy); err != nil {
			return nil, err
		}
		select {
		case r := <-u.resp:
			return r, nil
		case <-time.After(5 * time.Second):
			return nil, errors.New("REGISTER: no response")
		}
	}
	res, err := send(build(1, ""))
	if err != nil {
		return err
	}
	if res.StatusCode == 401 || res.StatusCode == 407 {
		chal := siptest.Challenge(res, "MD5")
		if chal == "" {
			chal = siptest.Challenge(res, "SHA-256")
		}
		auth, err := siptest.DigestValue(chal, "REGISTER", "sip:"+u.domain, siptest.Credentials{User: u.user, Password: u.password})
		if err != nil {
			return err
		}
		if res, err = send(build(2, auth)); err != nil {
			return err
		}
	}
	if res.StatusCode != 200 {
		return fmt.Errorf("REGISTER: %d %s", res.StatusCode, res.Reason)
	}
	return nil
}

func (u *uas) readSIP() {
	defer u.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, from, err := u.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		msg, err := siptest.Parse(string(buf[:n]))
		if err != nil {
			log.Printf("uas: unparsable SIP from %s: %v", from, err)
			continue
		}
		switch m := msg.(type) {
		case *gosip.Response:
			if m.StatusCode >= 200 {
				select {
				case u.resp <- m:
				default:
				}
			}
		case *gosip.Request:
			u.request(m, from)
		}
	}
}

func (u *uas) reply(req *gosip.Request, to netip.AddrPort, code int, reason, tag, sdp string) string {
	var body []byte
	if sdp != "" {
		body = []byte(sdp)
	}
	res := gosip.NewResponseFromRequest(req, code, reason, body)
	if h := res.To(); h != nil && tag != "" && !req.To().Params.Has("tag") {
		h.Params.Add("tag", tag)
	}
	if req.IsInvite() && code >= 200 && code < 300 {
		res.AppendHeader(gosip.NewHeader("Contact", u.contact()))
	}
	if sdp != "" {
		res.AppendHeader(gosip.NewHeader("Content-Type", "application/sdp"))
	}
	s := res.String()
	u.conn.WriteToUDPAddrPort([]byte(s), to)
	return s
}

func (u *uas) request(req *gosip.Request, from netip.AddrPort) {
	id := req.CallID().Value()
	switch req.Method {
	case gosip.INVITE:
		u.mu.Lock()
		c := u.calls[id]
		u.mu.Unlock()
		if c != nil { // retransmission or re-INVITE: same answer
			u.conn.WriteToUDPAddrPort([]byte(c.ok), from)
			return
		}
		dst, err := audioAddr(req.Body())
		if err != nil {
			u.reply(req, from, 488, "Not Acceptable Here", siptest.Rand(8), "")
			return
		}
		r, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			u.reply(req, from, 503, "Service Unavailable", siptest.Rand(8), "")
			return
		}
		c = &uasCall{rtp: r, dst: dst, tag: siptest.Rand(8), ssrc: rand.Uint32(), seq: uint16(rand.IntN(60000))}
		port := r.LocalAddr().(*net.UDPAddr).Port
		sdp := fmt.Sprintf("v=0\r\no=- %d 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n", rand.IntN(1<<30), port)
		c.ok = u.reply(req, from, 200, "OK", c.tag, sdp)
		u.mu.Lock()
		u.calls[id] = c
		u.mu.Unlock()
		u.wg.Add(1)
		go u.receive(r)
	case gosip.ACK:
	case gosip.BYE, gosip.CANCEL:
		u.mu.Lock()
		c := u.calls[id]
		delete(u.calls, id)
		u.mu.Unlock()
		tag := ""
		if c != nil {
			c.rtp.Close()
			tag = c.tag
		}
		u.reply(req, from, 200, "OK", tag, "")
	case gosip.OPTIONS:
		u.reply(req, from, 200, "OK", siptest.Rand(8), "")
	default:
		u.reply(req, from, 405, "Method Not Allowed", siptest.Rand(8), "")
	}
}

// audioAddr is the audio destination of an SDP.
func audioAddr(body []byte) (netip.AddrPort, error) {
	var addr netip.Addr
	port := 0
	for _, l := range strings.Split(string(body), "\n") {
		l = strings.TrimSpace(l)
		if v, ok := strings.CutPrefix(l, "c=IN IP4 "); ok {
			addr, _ = netip.ParseAddr(v)
		}
		if v, ok := strings.CutPrefix(l, "m=audio "); ok && port == 0 {
			fmt.Sscanf(v, "%d", &port)
		}
	}
	if !addr.IsValid() || port == 0 {
		return netip.AddrPort{}, errors.New("no audio address in SDP")
	}
	return netip.AddrPortFrom(addr, uint16(port)), nil
}

func (u *uas) receive(c *net.UDPConn) {
	defer u.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		if n >= 12 {
			u.rx.Add(1)
		}
	}
}

// transmit sends one packet per call every 20 ms.
func (u *uas) transmit() {
	defer u.wg.Done()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	pkt := make([]byte, 12+160)
	for i := range pkt[12:] {
		pkt[12+i] = 0xff // PCMU silence
	}
	var cs []*uasCall
	for {
		select {
		case <-u.stop:
			return
		case <-tick.C:
		}
		cs = cs[:0]
		u.mu.Lock()
		for _, c := range u.calls {
			cs = append(cs, c)
		}
		u.mu.Unlock()
		for _, c := range cs {
			c.seq++
			c.ts += 160
			pkt[0], pkt[1] = 0x80, 0
			binary.BigEndian.PutUint16(pkt[2:], c.seq)
			binary.BigEndian.PutUint32(pkt[4:], c.ts)
			binary.BigEndian.PutUint32(pkt[8:], c.ssrc)
			if _, err := c.rtp.WriteToUDPAddrPort(pkt, c.dst); err == nil {
				u.tx.Add(1)
			}
		}
	}
}

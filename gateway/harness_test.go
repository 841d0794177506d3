package gateway_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	gosip "github.com/emiago/sipgo/sip"
	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard/switchboard/cdr"
	"github.com/switchboard/switchboard/gateway"
	"github.com/switchboard/switchboard/internal/siptest"
	"github.com/switchboard/switchboard/internal/sqldb"
	"github.com/switchboard/switchboard/media"
	"github.com/switchboard/switchboard/registrar"
	proxy "github.com/switchboard/switchboard/sip"
)

const domain = "switchboard.local"

// env is a switch on 127.0.0.1: registrar, proxy with its media relay, and
// the gateway under test behind an HTTP server, all the real components.
type env struct {
	t     *testing.T
	trace *siptest.Trace
	proxy string // the proxy's UDP address
	gw    *gateway.Gateway
	http  *httptest.Server
	ws    string
	users *registrar.Users
	reg   *registrar.Registrar
	db    interface{ Close() error }
}

func newEnv(t *testing.T, mod func(*gateway.Config)) *env {
	t.Helper()
	tr := siptest.NewTrace(t)
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug - 4
	}
	log := slog.New(slog.NewTextHandler(tr, &slog.HandlerOptions{Level: level}))
	ctx := context.Background()
	db, err := sqldb.Open(ctx, filepath.Join(t.TempDir(), "switchboard.db"))
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registrar.New(ctx, registrar.Config{Realm: domain, AuthFailures: -1, DB: db, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	calls, err := cdr.New(ctx, cdr.Config{DB: db, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	bg, stopBG := context.WithCancel(context.Background())
	var bgWG sync.WaitGroup
	bgWG.Add(2)
	go func() { defer bgWG.Done(); reg.Serve(bg) }()
	go func() { defer bgWG.Done(); calls.Serve(bg) }()
	lo := 33000 + 2*rand.IntN(12000)
	relay, err := media.New(media.Config{PublicIP: "127.0.0.1", BindIP: "127.0.0.1", PortMin: lo, PortMax: lo + 399, Quarantine: -1, Workers: 1,
		Logger: log, Metrics: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.New(proxy.Config{Domain: domain, Listen: []proxy.Listen{{Transport: "udp", Addr: "127.0.0.1:0"}},
		Advertise: "127.0.0.1", MediaRelay: relay, TimerC: 30 * time.Second,
		Registrar: reg, Authenticator: reg.Authenticator(), Recorder: calls, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	bgWG.Add(1)
	go func() { defer bgWG.Done(); srv.Serve(bg) }()
	for _, u := range []string{"alice", "bob", "carol"} {
		if err := reg.Users().Add(ctx, u, u+"pw"); err != nil {
			t.Fatal(err)
		}
	}
	cfg := gateway.Config{
		Domain:      domain,
		ProxyAddr:   srv.Addrs()["udp"],
		ListenIP:    "127.0.0.1",
		ICEIPs:      []string{"127.0.0.1"},
		ICETimeout:  8 * time.Second,
		RingTimeout: 20 * time.Second,
	}
	if mod != nil {
		mod(&cfg)
	}
	cfg.Logger = log
	gw, err := gateway.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(gw.Handler())
	e := &env{t: t, trace: tr, proxy: srv.Addrs()["udp"], gw: gw, http: hs, ws: "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws", users: reg.Users(), reg: reg, db: db}
	t.Cleanup(func() {
		hs.CloseClientConnections()
		if err := gw.Close(); err != nil {
			t.Errorf("gateway close: %v", err)
		}
		hs.Close()
		srv.Close()
		relay.Close()
		stopBG()
		bgWG.Wait()
		db.Close()
	})
	return e
}

// msg is any message the gateway sends, as a web page would decode it.
type msg struct {
	Type       string             `json:"type"`
	ID         string             `json:"id"`
	Call       string             `json:"call"`
	State      string             `json:"state"`
	Status     int                `json:"status"`
	Reason     string             `json:"reason"`
	Code       string             `json:"code"`
	Message    string             `json:"message"`
	SDP        string             `json:"sdp"`
	User       string             `json:"user"`
	AOR        string             `json:"aor"`
	From       string             `json:"from"`
	To         string             `json:"to"`
	Video      *bool              `json:"video"`
	EarlyMedia bool               `json:"earlyMedia"`
	Held       *bool              `json:"held"`
	By         string             `json:"by"`
	Digit      string             `json:"digit"`
	Text       string             `json:"text"`
	ICEServers []webrtc.ICEServer `json:"iceServers"`
}

// browser stands in for a browser tab running the web phone: a WebSocket
// speaking the protocol and a pion peer connection for media.
type browser struct {
	t     *testing.T
	e     *env
	name  string
	ws    *websocket.Conn
	in    chan msg
	ended chan struct{}

	mu        sync.Mutex
	pc        *webrtc.PeerConnection
	audioOut  *webrtc.TrackLocalStaticRTP
	videoOut  *webrtc.TrackLocalStaticRTP
	rxAudio   atomic.Int64
	rxVideo   atomic.Int64
	rxDTMF    atomic.Int64
	stopSend  chan struct{}
	sendWG    sync.WaitGroup
	closeOnce sync.Once
}

func (e *env) browser(name string) *browser {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, e.ws, nil)
	if err != nil {
		e.t.Fatalf("%s: dial %s: %v", name, e.ws, err)
	}
	ws.SetReadLimit(1 << 20)
	b := &browser{t: e.t, e: e, name: name, ws: ws, in: make(chan msg, 256), ended: make(chan struct{})}
	go b.read()
	e.t.Cleanup(b.close)
	if m := b.next(); m.Type != "hello" {
		e.t.Fatalf("%s: first message %+v, want hello", name, m)
	}
	return b
}

func (b *browser) read() {
	defer close(b.ended)
	for {
		_, data, err := b.ws.Read(context.Background())
		if err != nil {
			return
		}
		var m msg
		if err := json.Unmarshal(data, &m); err != nil {
			b.t.Errorf("%s: gateway sent malformed JSON %q", b.name, data)
			continue
		}
		b.e.trace.Printf("%s <- %s", b.name, abbreviate(string(data)))
		b.in <- m
	}
}

var verbose = os.Getenv("GW_VERBOSE") != ""

func abbreviate(s string) string {
	if len(s) > 300 && !verbose {
		return s[:300] + "..."
	}
	return s
}

func (b *browser) close() {
	b.closeOnce.Do(func() {
		b.stopMedia()
		b.ws.CloseNow()
	})
}

func (b *browser) stopMedia() {
	b.mu.Lock()
	if b.stopSend != nil {
		close(b.stopSend)
		b.stopSend = nil
	}
	pc := b.pc
	b.mu.Unlock()
	b.sendWG.Wait()
	if pc != nil {
		pc.Close()
	}
}

func (b *browser) send(v any) {
	b.t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		b.t.Fatal(err)
	}
	b.sendRaw(string(data))
}

func (b *browser) sendRaw(s string) {
	b.t.Helper()
	b.e.trace.Printf("%s -> %s", b.name, abbreviate(s))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.ws.Write(ctx, websocket.MessageText, []byte(s)); err != nil {
		b.t.Fatalf("%s: write: %v", b.name, err)
	}
}

// next returns the next message, failing after 10s.
func (b *browser) next() msg {
	b.t.Helper()
	select {
	case m := <-b.in:
		return m
	case <-time.After(10 * time.Second):
		b.t.Fatalf("%s: no message within 10s", b.name)
	}
	return msg{}
}

// wait returns the first message of type typ (and state, for call_state),
// skipping others; errors other than the one waited for fail the test, as
// does another final call state. It does not look at call ids: use waitCall
// where an earlier call's messages may still be on their way.
func (b *browser) wait(typ, state string) msg {
	b.t.Helper()
	return b.waitCall("", typ, state)
}

// waitCall is wait for the messages of call id only: a message about
// another call (one with another non-empty call id) is skipped, whatever it
// says. id "" matches every message.
func (b *browser) waitCall(id, typ, state string) msg {
	b.t.Helper()
	what := strings.TrimSpace(typ + " " + state)
	if id != "" {
		what += " of call " + id
	}
	deadline := time.After(15 * time.Second)
	for {
		select {
		case m := <-b.in:
			if id != "" && m.Call != "" && m.Call != id {
				continue
			}
			if m.Type == typ && (state == "" || m.State == state || m.Code == state) && (id == "" || m.Call == id) {
				return m
			}
			if m.Type == "error" && typ != "error" {
				b.t.Fatalf("%s: error while waiting for %s: %+v", b.name, what, m)
			}
			if m.Type == "call_state" && typ == "call_state" && isFinalState(m.State) && m.State != state {
				b.t.Fatalf("%s: call %s ended %s (%d %s) while waiting for %s", b.name, m.Call, m.State, m.Status, m.Reason, what)
			}
		case <-deadline:
			b.t.Fatalf("%s: no %s within 15s", b.name, what)
		}
	}
}

func isFinalState(s string) bool {
	switch s {
	case "trying", "ringing", "answered":
		return false
	}
	return true
}

func (b *browser) login(user, password string) msg {
	b.t.Helper()
	b.send(map[string]string{"type": "login", "user": user, "password": password, "id": "l1"})
	for {
		m := b.next()
		if m.Type == "logged_in" || m.Type == "error" {
			return m
		}
	}
}

func (b *browser) mustLogin(user string) {
	b.t.Helper()
	if m := b.login(user, user+"pw"); m.Type != "logged_in" {
		b.t.Fatalf("%s: login %s: %+v", b.name, user, m)
	}
}

// newPC builds the browser's peer connection: opus, PCMU and
// telephone-event like Chrome, VP8 when video is wanted.
func (b *browser) newPC(video bool) *webrtc.PeerConnection {
	b.t.Helper()
	var me webrtc.MediaEngine
	for _, c := range []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}, PayloadType: 111},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000}, PayloadType: 0},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: "audio/telephone-event", ClockRate: 8000, SDPFmtpLine: "0-15"}, PayloadType: 126},
	} {
		if err := me.RegisterCodec(c, webrtc.RTPCodecTypeAudio); err != nil {
			b.t.Fatal(err)
		}
	}
	if video {
		fb := []webrtc.RTCPFeedback{{Type: "nack", Parameter: "pli"}, {Type: "ccm", Parameter: "fir"}}
		if err := me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: fb}, PayloadType: 96}, webrtc.RTPCodecTypeVideo); err != nil {
			b.t.Fatal(err)
		}
	}
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	api := webrtc.NewAPI(webrtc.WithMediaEngine(&me), webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		b.t.Fatal(err)
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		buf := make([]byte, 1500)
		for {
			n, _, err := tr.Read(buf)
			if err != nil {
				return
			}
			if n < 12 {
				continue
			}
			switch {
			case tr.Kind() == webrtc.RTPCodecTypeVideo:
				b.rxVideo.Add(1)
			case buf[1]&0x7f == 126:
				b.rxDTMF.Add(1)
			default:
				b.rxAudio.Add(1)
			}
		}
	})
	b.mu.Lock()
	b.pc = pc
	b.mu.Unlock()
	return pc
}

// addTracks gives the peer connection its microphone (and camera).
func (b *browser) addTracks(pc *webrtc.PeerConnection, video bool) {
	b.t.Helper()
	a, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000}, "audio", "mic")
	if err != nil {
		b.t.Fatal(err)
	}
	if _, err := pc.AddTrack(a); err != nil {
		b.t.Fatal(err)
	}
	b.audioOut = a
	if video {
		v, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "cam")
		if err != nil {
			b.t.Fatal(err)
		}
		if _, err := pc.AddTrack(v); err != nil {
			b.t.Fatal(err)
		}
		b.videoOut = v
	}
}

// offer builds an offer with every candidate in it.
func (b *browser) offer(video bool) string {
	b.t.Helper()
	pc := b.newPC(video)
	b.addTracks(pc, video)
	o, err := pc.CreateOffer(nil)
	if err != nil {
		b.t.Fatal(err)
	}
	done := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(o); err != nil {
		b.t.Fatal(err)
	}
	<-done
	return pc.LocalDescription().SDP
}

// call places a call to to.
func (b *browser) call(id, to string, video bool) {
	b.t.Helper()
	b.send(map[string]any{"type": "call", "call": id, "to": to, "sdp": b.offer(video)})
}

// applyAnswer takes the gateway's answer to our offer.
func (b *browser) applyAnswer(sdp string) {
	b.t.Helper()
	if err := b.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp}); err != nil {
		b.t.Fatalf("%s: set answer: %v", b.name, err)
	}
}

// answer accepts an incoming call's offer.
func (b *browser) answer(in msg, video bool) {
	b.t.Helper()
	pc := b.newPC(video)
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: in.SDP}); err != nil {
		b.t.Fatalf("%s: set offer: %v", b.name, err)
	}
	b.addTracks(pc, video)
	a, err := pc.CreateAnswer(nil)
	if err != nil {
		b.t.Fatal(err)
	}
	done := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(a); err != nil {
		b.t.Fatal(err)
	}
	<-done
	b.send(map[string]any{"type": "answer", "call": in.Call, "sdp": pc.LocalDescription().SDP})
}

// startSending sends 20 ms audio packets (and video packets) until the
// call's media stops.
func (b *browser) startSending() {
	b.mu.Lock()
	defer b.mu.Unlock()
	stop := make(chan struct{})
	b.stopSend = stop
	a, v := b.audioOut, b.videoOut
	b.sendWG.Add(1)
	go func() {
		defer b.sendWG.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		seq := uint16(rand.IntN(1000))
		payload := make([]byte, 80)
		vp8 := make([]byte, 200)
		vp8[0] = 0x10 // VP8 payload descriptor: start of partition 0
		for i := uint32(0); ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			seq++
			_ = a.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: i * 960, Marker: i == 0}, Payload: payload})
			if v != nil {
				_ = v.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: i * 3000, Marker: true}, Payload: vp8})
			}
		}
	}()
}

// eventually polls cond for up to d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// phone is a SIP phone on the switch: a raw-SIP siptest.Phone for
// signalling and a UDP socket for PCMU RTP.
type phone struct {
	*siptest.Phone
	t       *testing.T
	rtp     *net.UDPConn
	rx      atomic.Int64
	events  atomic.Int64
	dst     atomic.Pointer[netip.AddrPort]
	stop    chan struct{}
	wg      sync.WaitGroup
	stopped atomic.Bool
}

func (e *env) phone(user string) *phone {
	e.t.Helper()
	p := &phone{t: e.t, stop: make(chan struct{})}
	p.Phone = siptest.NewPhone(e.t, siptest.Config{Server: e.proxy, User: user, Password: user + "pw", Trace: e.trace})
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		e.t.Fatal(err)
	}
	p.rtp = c
	p.wg.Add(2)
	go p.receive()
	go p.transmit()
	e.t.Cleanup(p.close)
	return p
}

func (p *phone) close() {
	if p.stopped.CompareAndSwap(false, true) {
		close(p.stop)
		p.rtp.Close()
		p.wg.Wait()
	}
}

func (p *phone) receive() {
	defer p.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, err := p.rtp.Read(buf)
		if err != nil {
			return
		}
		if n >= 12 {
			if buf[1]&0x7f == 101 {
				p.events.Add(1)
			} else {
				p.rx.Add(1)
			}
		}
	}
}

// transmit sends a PCMU packet every 20 ms to the address of the last SDP
// the phone got.
func (p *phone) transmit() {
	defer p.wg.Done()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	pkt := make([]byte, 12+160)
	pkt[0] = 0x80
	ssrc := rand.Uint32()
	binary.BigEndian.PutUint32(pkt[8:], ssrc)
	for i := uint32(0); ; i++ {
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
		dst := p.dst.Load()
		if dst == nil {
			continue
		}
		pkt[1] = 0
		binary.BigEndian.PutUint16(pkt[2:], uint16(i))
		binary.BigEndian.PutUint32(pkt[4:], i*160)
		p.rtp.WriteToUDPAddrPort(pkt, *dst)
	}
}

// sendDTMF sends the RFC 4733 events of one digit (three packets, the
// last with the end bit).
func (p *phone) sendDTMF(event byte) {
	dst := p.dst.Load()
	if dst == nil {
		p.t.Fatal("phone has no media destination")
	}
	pkt := make([]byte, 16)
	pkt[0] = 0x80
	binary.BigEndian.PutUint32(pkt[4:], 777777)
	binary.BigEndian.PutUint32(pkt[8:], 4242)
	for i := range 3 {
		pkt[1] = 101
		if i == 0 {
			pkt[1] |= 0x80
		}
		binary.BigEndian.PutUint16(pkt[2:], uint16(60000+i))
		pkt[12] = event
		pkt[13] = 10
		if i == 2 {
			pkt[13] |= 0x80
		}
		binary.BigEndian.PutUint16(pkt[14:], uint16(160*(i+1)))
		p.rtp.WriteToUDPAddrPort(pkt, *dst)
	}
}

// sdp is the phone's SDP: PCMU and telephone-event on its RTP socket.
func (p *phone) sdp(dir string) string {
	port := p.rtp.LocalAddr().(*net.UDPAddr).Port
	if dir == "" {
		dir = "sendrecv"
	}
	return fmt.Sprintf("v=0\r\no=- 1 %d IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio %d RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=%s\r\n",
		rand.IntN(1000), port, dir)
}

// learn takes the media address of an SDP the phone received.
func (p *phone) learn(body []byte) {
	p.t.Helper()
	var addr netip.Addr
	port := 0
	for _, l := range strings.Split(string(body), "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "c=IN IP4 ") {
			addr = netip.MustParseAddr(strings.TrimPrefix(l, "c=IN IP4 "))
		}
		if strings.HasPrefix(l, "m=audio ") && port == 0 {
			fmt.Sscanf(strings.TrimPrefix(l, "m=audio "), "%d", &port)
		}
	}
	if !addr.IsValid() || port == 0 {
		p.t.Fatalf("no audio address in SDP:\n%s", body)
	}
	ap := netip.AddrPortFrom(addr, uint16(port))
	p.dst.Store(&ap)
}

// respond answers a request the phone received, with an SDP body when
// sdp is not empty.
func (p *phone) respond(req *gosip.Request, code int, reason, sdp string) *gosip.Response {
	p.t.Helper()
	var body []byte
	if sdp != "" {
		body = []byte(sdp)
	}
	res := gosip.NewResponseFromRequest(req, code, reason, body)
	if to := res.To(); to != nil && code > 100 && !req.To().Params.Has("tag") {
		to.Params.Add("tag", p.Tag(req.CallID().Value()))
	}
	if req.IsInvite() && code > 100 && code < 300 {
		res.AppendHeader(gosip.NewHeader("Contact", "<"+p.Contact()+">"))
	}
	if sdp != "" {
		res.AppendHeader(gosip.NewHeader("Content-Type", "application/sdp"))
	}
	p.SendTo(res.String(), req.Source())
	return res
}

// byeAsCallee hangs up a call the phone answered (it is the UAS of inv).
func (p *phone) byeAsCallee(inv *gosip.Request) *siptest.Msg {
	m := &siptest.Msg{Start: "BYE " + inv.Contact().Address.String() + " SIP/2.0"}
	m.Add("Via", p.Via(siptest.NewBranch()))
	for _, h := range inv.GetHeaders("Record-Route") {
		m.Add("Route", h.Value())
	}
	m.Add("Max-Forwards", "70")
	to := inv.To().Value()
	m.Add("From", to+";tag="+p.Tag(inv.CallID().Value()))
	m.Add("To", inv.From().Value())
	m.Add("Call-ID", inv.CallID().Value())
	m.Add("CSeq", "900 BYE")
	p.Send(m)
	return m
}

// inDialog builds a request in the dialog the phone started with inv and
// that res (a 2xx) confirmed: route set reversed, remote target its
// Contact (RFC 3261 §12.2.1.1).
func (p *phone) inDialog(method string, inv *siptest.Msg, res *gosip.Response, cseq int) *siptest.Msg {
	m := &siptest.Msg{Start: method + " " + res.Contact().Address.String() + " SIP/2.0"}
	branch := siptest.NewBranch()
	if method == "ACK" {
		branch = siptest.NewBranch()
	}
	m.Add("Via", p.Via(branch))
	rr := res.GetHeaders("Record-Route")
	for i := len(rr) - 1; i >= 0; i-- {
		m.Add("Route", rr[i].Value())
	}
	m.Add("Max-Forwards", "70")
	m.Add("From", inv.Get("From"))
	m.Add("To", res.To().Value())
	m.Add("Call-ID", inv.Get("Call-ID"))
	m.Add("CSeq", fmt.Sprintf("%d %s", cseq, method))
	return m
}

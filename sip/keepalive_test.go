package sip

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	gosip "github.com/emiago/sipgo/sip"
	"github.com/pion/stun/v4"

	"github.com/switchboard/switchboard/internal/siptest"
)

// natKeepalives is a startSwitch edit: keep-alives every second, a binding
// removed after two unanswered probes.
func natKeepalives(method string) func(*Config) {
	return func(c *Config) {
		c.NAT.KeepaliveInterval = time.Second
		c.NAT.KeepaliveFailures = 2
		c.NAT.KeepaliveMethod = method
	}
}

// registerBehindNAT registers p with a private Contact that is not its
// source address: a phone behind a NAT router, as the registrar sees it.
func registerBehindNAT(t *testing.T, p *siptest.Phone) {
	t.Helper()
	m := p.Register(3600)
	m.Set("Contact", "<sip:"+p.User()+"@10.9.9.9:5060>")
	wantStatus(t, p.WaitFinal(p.SendAuthenticated(m)), 200)
}

// TestKeepaliveOptions checks the OPTIONS keep-alives: a UDP binding behind
// NAT is probed from the listener it registered on (the second of two UDP
// listeners: Addrs lists the last), to its source address, with From
// sip:keepalive@...; while it answers it stays; once two probes in a row go
// unanswered it is removed and counted. A binding whose Contact is trusted
// is not probed.
func TestKeepaliveOptions(t *testing.T) {
	sw := startSwitch(t, natKeepalives(KeepaliveOptions), func(c *Config) {
		c.Listen = append([]Listen{{Transport: "udp", Addr: "127.0.0.1:0"}}, c.Listen...)
	})
	alice := sw.phone("alice", "udp", "")
	registerBehindNAT(t, alice)
	bob := sw.registered("bob", "")

	for i := 0; i < 2; i++ {
		req := alice.Wait(siptest.IsRequest("OPTIONS"), 3*time.Second, "keep-alive OPTIONS").(*gosip.Request)
		if req.Source() != sw.srv.Addrs()["udp"] {
			t.Errorf("keep-alive came from %s, want the UDP listener %s", req.Source(), sw.srv.Addrs()["udp"])
		}
		if got := req.Recipient.String(); got != "sip:alice@10.9.9.9:5060" {
			t.Errorf("keep-alive Request-URI %s, want the binding's Contact", got)
		}
		if from := req.From(); from == nil || from.Address.User != "keepalive" {
			t.Errorf("keep-alive From %v, want sip:keepalive@...", from)
		}
		alice.Reply(req, 200, "OK")
	}
	bob.ExpectNone(siptest.IsRequest("OPTIONS"), 100*time.Millisecond, "keep-alive to a trusted Contact")
	if st := sw.srv.NATStats(); st.KeepalivesSent < 2 || st.Unreachable != 0 {
		t.Fatalf("after two answered probes: %+v", st)
	}

	// Silence: two unanswered probes, then the binding goes.
	eventually(t, 6*time.Second, "binding removed as unreachable", func() bool {
		return len(sw.reg.Location().Lookup("alice")) == 0
	})
	st := sw.srv.NATStats()
	if st.Unreachable != 1 || st.KeepalivesFailed < 2 {
		t.Errorf("after the removal: %+v, want 1 unreachable and at least 2 failed", st)
	}
	if !strings.Contains(sw.tr.String(), "binding removed: keep-alives unanswered") {
		t.Errorf("removal not logged")
	}
	if len(sw.reg.Location().Lookup("bob")) != 1 {
		t.Errorf("bob's trusted binding went too")
	}
}

// recordingConn is a PacketConn that notes the CRLF keep-alives it reads.
type recordingConn struct {
	net.PacketConn
	mu    sync.Mutex
	crlfs []string // sources
}

func (c *recordingConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, from, err := c.PacketConn.ReadFrom(b)
	if err == nil && bytes.Equal(b[:n], []byte("\r\n\r\n")) {
		c.mu.Lock()
		c.crlfs = append(c.crlfs, from.String())
		c.mu.Unlock()
	}
	return n, from, err
}

func (c *recordingConn) seen() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.crlfs...)
}

// TestKeepaliveCRLF checks the crlf method: CRLFCRLF datagrams from the
// listener, and no removal (nothing answers them).
func TestKeepaliveCRLF(t *testing.T) {
	sw := startSwitch(t, natKeepalives(KeepaliveCRLF))
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rc := &recordingConn{PacketConn: pc}
	alice := siptest.NewPhone(t, siptest.Config{Server: sw.srv.Addrs()["udp"], PacketConn: rc, User: "alice", Password: passwords["alice"], Trace: sw.tr})
	registerBehindNAT(t, alice)
	eventually(t, 5*time.Second, "three CRLF keep-alives", func() bool { return len(rc.seen()) >= 3 })
	for _, src := range rc.seen() {
		if src != sw.srv.Addrs()["udp"] {
			t.Errorf("CRLF keep-alive from %s, want the UDP listener %s", src, sw.srv.Addrs()["udp"])
		}
	}
	alice.ExpectNone(siptest.IsRequest("OPTIONS"), 10*time.Millisecond, "OPTIONS with keepalive_method crlf")
	if len(sw.reg.Location().Lookup("alice")) != 1 || sw.srv.NATStats().Unreachable != 0 {
		t.Errorf("an unanswerable CRLF keep-alive removed the binding")
	}
}

// TestSTUNOnSIPPort sends a STUN Binding request (pion/stun) to the SIP UDP
// port and checks the answer (RFC 5626 §8.4): a success response to the
// same transaction whose XOR-MAPPED-ADDRESS is our address. The datagram
// is not counted as malformed SIP, and SIP still works on the port.
func TestSTUNOnSIPPort(t *testing.T) {
	sw := startSwitch(t)
	c, err := net.Dial("udp", sw.srv.Addrs()["udp"])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if _, err := c.Write(req.Raw); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no STUN answer on the SIP port: %v", err)
	}
	res := &stun.Message{Raw: buf[:n]}
	if err := res.Decode(); err != nil {
		t.Fatalf("answer is not STUN: %v", err)
	}
	if res.Type != stun.BindingSuccess || res.TransactionID != req.TransactionID {
		t.Fatalf("answer %s (transaction %x), want a Binding success for %x", res.Type, res.TransactionID, req.TransactionID)
	}
	var xor stun.XORMappedAddress
	if err := xor.GetFrom(res); err != nil {
		t.Fatalf("no XOR-MAPPED-ADDRESS: %v", err)
	}
	if got, want := xor.String(), c.LocalAddr().String(); got != want {
		t.Errorf("XOR-MAPPED-ADDRESS %s, want %s", got, want)
	}
	if err := stun.Fingerprint.Check(res); err != nil {
		t.Errorf("FINGERPRINT: %v", err)
	}
	// Counted once the write has returned, which may be after the answer
	// has arrived here.
	eventually(t, 2*time.Second, "the answer counted", func() bool { return sw.srv.NATStats().STUNAnswered >= 1 })
	if got := sw.srv.NATStats().STUNAnswered; got != 1 {
		t.Errorf("STUNAnswered %d, want 1", got)
	}
	if got := sw.srv.Stats.Malformed.Load(); got != 0 {
		t.Errorf("the STUN request was counted as %d malformed datagrams", got)
	}
	// A Binding indication (a keep-alive needing no answer) gets none.
	ind := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodBinding, stun.ClassIndication))
	c.Write(ind.Raw)
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := c.Read(buf); err == nil {
		t.Errorf("a Binding indication was answered")
	}
	sw.registered("alice", "")
}

// TestCRLFPongOnStreams proves that sipgo answers the RFC 5626 §3.5.1
// CRLFCRLF ping with a CRLF pong on a TCP connection, so the switch need
// not (baresip's outbound test in test/nat shows it on a registered flow).
func TestCRLFPongOnStreams(t *testing.T) {
	sw := startSwitch(t)
	c, err := net.Dial("tcp", sw.srv.Addrs()["tcp"])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	for i := 0; i < 2; i++ {
		if _, err := c.Write([]byte("\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		pong := make([]byte, 2)
		if _, err := io.ReadFull(r, pong); err != nil || string(pong) != "\r\n" {
			t.Fatalf("ping %d: pong %q, %v: want CRLF", i, pong, err)
		}
	}
}

const testInstance = `"<urn:uuid:00000000-0000-1000-8000-00aa00bb00cc>"`

// registerFlow registers p's Contact (or contact, when given) as an RFC
// 5626 flow of testInstance with reg-id 1.
func registerFlow(t *testing.T, p *siptest.Phone, contact string) *gosip.Response {
	t.Helper()
	if contact == "" {
		contact = p.Contact()
	}
	m := p.Register(3600)
	m.Set("Contact", "<"+contact+">;reg-id=1;+sip.instance="+testInstance)
	m.Set("Supported", "outbound, path")
	res := p.WaitFinal(p.SendAuthenticated(m))
	wantStatus(t, res, 200)
	if res.GetHeader("Require") == nil || res.GetHeader("Require").Value() != "outbound" {
		t.Errorf("200 to a flow registration without Require: outbound:\n%s", res)
	}
	return res
}

// TestOutboundNewFlowTakesCalls registers bob's instance over one TCP
// connection, then over a second one (a reconnect) while the first is still
// open: the new flow replaces the old, and a call reaches bob on the new
// connection only.
func TestOutboundNewFlowTakesCalls(t *testing.T) {
	sw := startSwitch(t)
	old := sw.phone("bob", "tcp", "bob-old")
	registerFlow(t, old, "")
	cur := sw.phone("bob", "tcp", "bob-new")
	res := registerFlow(t, cur, strings.Replace(cur.Contact(), "bob@", "bob-2@", 1))
	if n := len(res.GetHeaders("Contact")); n != 1 {
		t.Fatalf("200 after the reconnect lists %d contacts, want 1 (the new flow):\n%s", n, res)
	}
	bs := sw.reg.Location().Lookup("bob")
	if len(bs) != 1 || bs[0].Source != cur.Addr() {
		t.Fatalf("bindings %+v, want one on the new flow from %s", bs, cur.Addr())
	}

	alice := sw.registered("alice", "")
	inv := invite(t, alice, "bob")
	req := cur.WaitRequest("INVITE")
	cur.Reply(req, 486, "Busy Here")
	final := alice.WaitFinal(inv)
	wantStatus(t, final, 486)
	alice.Send(siptest.Ack(inv, final))
	old.ExpectNone(siptest.IsRequest("INVITE"), 200*time.Millisecond, "INVITE on the replaced flow")
}

package interop

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gosip "github.com/emiago/sipgo/sip"
	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
	"github.com/pion/stun/v4"

	"github.com/switchboard/switchboard/internal/siptest"
	"github.com/switchboard/switchboard/test/internal/testbed"
)

// iceTimeout is media.ice_timeout in TestWebRTCLegFailure.
const iceTimeout = 2 * time.Second

// TestWebRTCLegFailure: a WebRTC leg whose ICE never completes, or whose DTLS
// handshake shows a certificate that is not the one its SDP's fingerprint
// names, ends the call: the switch sends BYE to both parties with Reason
// "ICE timeout" or "DTLS failure", records that it hung up and why, and
// frees the call's relay ports. The WebRTC party is scripted here (a UDP SIP
// phone whose offer is UDP/TLS/RTP/SAVPF, ICE with pion/stun, DTLS with
// pion/dtls); the other is baresip, answering by itself with plain RTP. A
// third call does ICE and DTLS right with the certificate of its SDP: it
// gets SRTP from the relay and stays up past the timeout, which shows the
// script's ICE and DTLS are what a relay accepts and the failures are the
// ones the cases make. media.ice_timeout is 2s; the rest is the shipped
// configuration.
func TestWebRTCLegFailure(t *testing.T) {
	testbed.RequireBaresip(t)
	testbed.RequireTool(t, "sox")
	srv := testbed.StartServer(t, testbed.Binary(t), testbed.ServerConfig{Media: "ice_timeout: " + iceTimeout.String()})
	alice := testbed.Cred{User: "alice", Password: "alice-rtc-pw"}
	bobCred := testbed.Cred{User: "bob", Password: "bob-rtc-pw"}
	addUsers(t, srv, []testbed.Cred{alice, bobCred})
	bob := testbed.StartBaresip(t, "bob", testbed.BaresipConfig{
		User: bobCred.User, Password: bobCred.Password, Domain: srv.Domain, Proxy: srv.Addr(t, "udp"), AnswerMode: "auto",
		AudioFile: testbed.MakeTone(t, filepath.Join(t.TempDir(), "bob.wav"), 600, 60),
	})
	bob.WaitRegistered(t, 10*time.Second)
	tr := siptest.NewTrace(t)
	// The certificate whose fingerprint the offers carry, and another one.
	own, err := selfsign.GenerateSelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	other, err := selfsign.GenerateSelfSigned()
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		ice    bool             // answer the relay's ICE
		cert   *tls.Certificate // then run DTLS with this certificate
		reason string           // the BYE's Reason text; "" for none
	}{
		{name: "ICE timeout", reason: "ICE timeout"},
		{name: "DTLS fingerprint mismatch", ice: true, cert: &other, reason: "DTLS failure"},
		{name: "ICE and DTLS right", ice: true, cert: &own},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bob.ClearEvents()
			phone := siptest.NewPhone(t, siptest.Config{Server: srv.Addr(t, "udp"), User: alice.User, Password: alice.Password, Domain: srv.Domain, Trace: tr})
			c := dialWebRTC(t, phone, srv.Domain, fingerprint(own))
			waitBaresip(t, bob, "CALL_ESTABLISHED", 10*time.Second)
			if tc.ice {
				c.checkICE(t)
			}
			if tc.cert != nil {
				c.handshake(t, *tc.cert, tc.reason == "")
			}
			if tc.reason == "" {
				// Up past the ICE timeout, with SRTP from baresip's RTP.
				c.noBYE(t, time.Until(c.sent.Add(iceTimeout+time.Second)))
				if n := c.media.rtp.Load(); n == 0 {
					t.Errorf("no SRTP from the relay after the DTLS handshake (%d packets)", n)
				} else {
					t.Logf("%d SRTP packets from the relay", n)
				}
				bye := c.dlg.Request("BYE")
				phone.Send(bye)
				if res := phone.WaitFinal(bye); res.StatusCode != 200 {
					t.Errorf("BYE: %d %s", res.StatusCode, res.Reason)
				}
				waitBaresip(t, bob, "CALL_CLOSED", 10*time.Second)
				checkRecord(t, srv, c.callID, "BYE", "caller")
				portsFreed(t, srv)
				return
			}
			bye := phone.Wait(siptest.And(siptest.IsRequest("BYE"), siptest.CallID(c.callID)), iceTimeout+5*time.Second, "BYE from the switch").(*gosip.Request)
			after := time.Since(c.sent)
			phone.Reply(bye, 200, "OK")
			reason := ""
			if h := bye.GetHeader("Reason"); h != nil {
				reason = h.Value()
			}
			t.Logf("BYE %s after the INVITE, Reason: %s", after.Round(time.Millisecond), reason)
			if !strings.Contains(reason, `text="`+tc.reason+`"`) {
				t.Errorf("the BYE's Reason is %q, want text=%q", reason, tc.reason)
			}
			if tc.reason == "ICE timeout" && after < iceTimeout {
				t.Errorf("BYE for an ICE timeout after %s, before media.ice_timeout (%s)", after, iceTimeout)
			}
			waitBaresip(t, bob, "CALL_CLOSED", 10*time.Second)
			if !strings.Contains(testbed.StripANSI(bob.Log()), `text="`+tc.reason+`"`) {
				t.Errorf("baresip got no BYE with Reason text=%q", tc.reason)
			}
			checkRecord(t, srv, c.callID, tc.reason, "switch")
			portsFreed(t, srv)
		})
	}
	// baresip was offered plain RTP only.
	log := testbed.StripANSI(bob.Log())
	if strings.Contains(log, "UDP/TLS/RTP/SAVPF") || strings.Contains(log, "a=ice-ufrag") || strings.Contains(log, "a=fingerprint") {
		t.Errorf("baresip was sent WebRTC SDP (it speaks plain RTP only):\n%s", testbed.Tail(log, 200))
	}
	if t.Failed() {
		t.Logf("SIP trace:\n%s", tr.String())
	}
}

// rtcCall is a call from the scripted WebRTC party.
type rtcCall struct {
	phone  *siptest.Phone
	callID string
	dlg    *siptest.Dialog
	sent   time.Time // when the INVITE was sent
	media  *demux    // its media socket
	ufrag  string    // its ICE credentials
	pwd    string
	// The relay's side, from the answer.
	relay                 *net.UDPAddr
	rUfrag, rPwd, rFinger string
	rSetup                string
}

// dialWebRTC calls bob from phone with a WebRTC offer (one audio m-line,
// setup:actpass, the fingerprint fp, a host candidate on a socket of its
// own), ACKs the 200 and checks the answer is the relay's WebRTC SDP.
func dialWebRTC(t *testing.T, phone *siptest.Phone, domain, fp string) *rtcCall {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &rtcCall{phone: phone, media: &demux{PacketConn: pc}, ufrag: siptest.Rand(4), pwd: siptest.Rand(12)}
	t.Cleanup(func() { pc.Close() })
	port := pc.LocalAddr().(*net.UDPAddr).Port
	sdp := strings.Join([]string{
		"v=0",
		"o=- 4611731400430051336 2 IN IP4 127.0.0.1",
		"s=-",
		"t=0 0",
		"a=msid-semantic: WMS",
		fmt.Sprintf("m=audio %d UDP/TLS/RTP/SAVPF 111 0 8 126", port),
		"c=IN IP4 127.0.0.1",
		"a=rtcp:9 IN IP4 0.0.0.0",
		fmt.Sprintf("a=candidate:1 1 udp 2122260223 127.0.0.1 %d typ host generation 0", port),
		"a=end-of-candidates",
		"a=ice-ufrag:" + c.ufrag,
		"a=ice-pwd:" + c.pwd,
		"a=ice-options:trickle",
		"a=fingerprint:sha-256 " + fp,
		"a=setup:actpass",
		"a=mid:0",
		"a=sendrecv",
		"a=rtcp-mux",
		"a=rtpmap:111 opus/48000/2",
		"a=fmtp:111 minptime=10;useinbandfec=1",
		"a=rtpmap:0 PCMU/8000",
		"a=rtpmap:8 PCMA/8000",
		"a=rtpmap:126 telephone-event/8000",
		"a=ssrc:1001 cname:siptest",
		"",
	}, "\r\n")
	inv := phone.Request("INVITE", "sip:bob@"+domain)
	inv.Add("Content-Type", "application/sdp")
	inv.Body = sdp
	c.sent = time.Now()
	inv = phone.SendAuthenticated(inv)
	c.callID = inv.Get("Call-ID")
	res := phone.WaitFinalWithin(inv, 15*time.Second)
	if res.StatusCode != 200 {
		t.Fatalf("INVITE with a WebRTC offer: %d %s\n%s", res.StatusCode, res.Reason, res.String())
	}
	c.dlg = phone.UACDialog(inv, res)
	phone.Send(c.dlg.Request("ACK"))
	ans := string(res.Body())
	field := func(re string) string {
		m := regexp.MustCompile(`(?m)^` + re + `\r?$`).FindStringSubmatch(ans)
		if m == nil {
			t.Fatalf("the answer has no %s:\n%s", re, ans)
		}
		return m[1]
	}
	if proto := field(`m=audio \d+ (\S+) .*`); proto != "UDP/TLS/RTP/SAVPF" {
		t.Fatalf("the answer to a WebRTC offer is %s:\n%s", proto, ans)
	}
	field(`(a=ice-lite)`)
	c.rUfrag, c.rPwd = field(`a=ice-ufrag:(\S+)`), field(`a=ice-pwd:(\S+)`)
	c.rFinger, c.rSetup = field(`a=fingerprint:sha-256 (\S+)`), field(`a=setup:(\S+)`)
	if c.rSetup != "passive" && c.rSetup != "active" {
		t.Fatalf("the answer's a=setup:%s is neither active nor passive:\n%s", c.rSetup, ans)
	}
	host, ps, _ := strings.Cut(field(`(?i:a=candidate:\S+ 1 udp) \d+ (\S+ \d+) typ host.*`), " ")
	p, _ := strconv.Atoi(ps)
	c.relay = &net.UDPAddr{IP: net.ParseIP(host), Port: p}
	if m := field(`m=audio (\d+) .*`); m != ps {
		t.Fatalf("the answer's m= port %s is not its candidate's %s:\n%s", m, ps, ans)
	}
	return c
}

// checkICE sends the relay a connectivity check with USE-CANDIDATE (RFC 8445
// §7.2: USERNAME relay-ufrag:our-ufrag, MESSAGE-INTEGRITY with the relay's
// password) until it answers with a success response whose integrity holds.
func (c *rtcCall) checkICE(t *testing.T) {
	t.Helper()
	prio := make([]byte, 4)
	binary.BigEndian.PutUint32(prio, 1853824767)
	tie := make([]byte, 8)
	binary.BigEndian.PutUint64(tie, 0x1122334455667788)
	req, err := stun.Build(stun.TransactionID, stun.BindingRequest,
		stun.NewUsername(c.rUfrag+":"+c.ufrag),
		stun.RawAttribute{Type: stun.AttrPriority, Value: prio},
		stun.RawAttribute{Type: stun.AttrICEControlling, Value: tie},
		stun.RawAttribute{Type: stun.AttrUseCandidate},
		stun.NewShortTermIntegrity(c.rPwd), stun.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := c.media.WriteTo(req.Raw, c.relay); err != nil {
			t.Fatal(err)
		}
		_ = c.media.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		for {
			n, _, err := c.media.PacketConn.ReadFrom(buf)
			if err != nil {
				break // retransmit
			}
			if !stun.IsMessage(buf[:n]) {
				continue
			}
			res := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if err := res.Decode(); err != nil || res.TransactionID != req.TransactionID {
				continue
			}
			if res.Type != stun.BindingSuccess {
				t.Fatalf("the relay answered the ICE check with %s", res.Type)
			}
			if err := stun.NewShortTermIntegrity(c.rPwd).Check(res); err != nil {
				t.Fatalf("the relay's ICE response fails MESSAGE-INTEGRITY with its a=ice-pwd: %v", err)
			}
			var xor stun.XORMappedAddress
			if err := xor.GetFrom(res); err != nil || xor.Port != c.media.LocalAddr().(*net.UDPAddr).Port {
				t.Fatalf("the relay's ICE response maps us to %v (%v), want %v", xor, err, c.media.LocalAddr())
			}
			_ = c.media.SetReadDeadline(time.Time{})
			return
		}
	}
	t.Fatalf("the relay at %v answered no ICE check within 3s", c.relay)
}

// handshake runs DTLS with cert, as the client when the relay's answer says
// passive (our offer said actpass). With ok it must succeed and show the
// certificate of the answer's fingerprint; otherwise its outcome is only
// logged (the relay may abort it or close after it).
func (c *rtcCall) handshake(t *testing.T, cert tls.Certificate, ok bool) {
	t.Helper()
	if c.rSetup != "passive" {
		t.Fatalf("the relay answered actpass with a=setup:%s; this script is a DTLS client only", c.rSetup)
	}
	var shown string
	conn, err := dtls.ClientWithOptions(c.media, c.relay,
		dtls.WithCertificates(cert),
		dtls.WithInsecureSkipVerify(true), // the fingerprint is the trust (RFC 8122 §5)
		dtls.WithSRTPProtectionProfiles(dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AES128_CM_HMAC_SHA1_80),
		dtls.WithExtendedMasterSecret(dtls.RequireExtendedMasterSecret),
		dtls.WithVerifyPeerCertificate(func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) > 0 {
				shown = fingerprintDER(raw[0])
			}
			return nil
		}),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	limit := 5 * time.Second
	if !ok {
		limit = 2 * time.Second // the relay may drop it without an alert
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	err = conn.HandshakeContext(ctx)
	switch {
	case !ok:
		t.Logf("DTLS handshake with a certificate the SDP does not name: %v", err)
	case err != nil:
		t.Fatalf("DTLS handshake with the relay: %v", err)
	case !strings.EqualFold(shown, c.rFinger):
		t.Fatalf("the relay's DTLS certificate has fingerprint %s, its SDP says %s", shown, c.rFinger)
	}
}

// noBYE checks that no BYE of the call arrives for d.
func (c *rtcCall) noBYE(t *testing.T, d time.Duration) {
	t.Helper()
	c.phone.ExpectNone(siptest.And(siptest.IsRequest("BYE"), siptest.CallID(c.callID)), d, "BYE")
}

// demux is the WebRTC party's media socket as its DTLS connection reads it:
// DTLS records pass (first byte 20-63, RFC 7983 §7), SRTP and SRTCP (128-191)
// are counted and dropped, anything else dropped.
type demux struct {
	net.PacketConn
	rtp atomic.Int64
}

// ReadFrom implements net.PacketConn.
func (d *demux) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, a, err := d.PacketConn.ReadFrom(b)
		if err != nil || n == 0 || (b[0] >= 20 && b[0] <= 63) {
			return n, a, err
		}
		if b[0] >= 128 && b[0] <= 191 {
			d.rtp.Add(1)
		}
	}
}

func fingerprint(c tls.Certificate) string { return fingerprintDER(c.Certificate[0]) }

// fingerprintDER is a certificate's SHA-256 fingerprint as SDP writes it
// (RFC 8122 §5: upper-case hex pairs joined by colons).
func fingerprintDER(der []byte) string {
	sum := sha256.Sum256(der)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

func waitBaresip(t *testing.T, b *testbed.Baresip, typ string, d time.Duration) {
	t.Helper()
	b.WaitEventType(t, typ, d)
}

// checkRecord waits for the call's record to be closed and checks who hung
// up and why. The call was answered, so its status stays 200.
func checkRecord(t *testing.T, srv *testbed.Server, callID, reason, by string) {
	t.Helper()
	var row testbed.CDR
	if !testbed.Poll(10*time.Second, 100*time.Millisecond, func() bool {
		for _, r := range srv.CDRs(t) {
			if r["call-id"] == callID && strings.TrimSpace(r["ended"]) != "-" {
				row = r
				return true
			}
		}
		return false
	}) {
		t.Fatalf("no closed record of call %s within 10s", callID)
	}
	t.Logf("record: status %s, hangup-by %s, reason %s, media %s", row["status"], row["hangup-by"], row["reason"], row["media"])
	if row["status"] != "200" || row["hangup-by"] != by || row["reason"] != reason {
		t.Errorf("the call's record has status %s, hung up by %s for %q; want 200, by %s for %q: %v", row["status"], row["hangup-by"], row["reason"], by, reason, row)
	}
}

// portsFreed waits until the relay has no stream and no port pair in use
// (/metrics).
func portsFreed(t *testing.T, srv *testbed.Server) {
	t.Helper()
	var used, streams float64
	var err error
	if !testbed.Poll(10*time.Second, 100*time.Millisecond, func() bool {
		var m map[string]float64
		if m, err = metrics(srv); err != nil {
			return false
		}
		used, streams = m[`switchboard_media_port_pairs{state="used"}`], m["switchboard_media_streams"]
		return used == 0 && streams == 0
	}) {
		t.Errorf("the relay still holds %v port pairs and %v streams 10s after the call (%v)", used, streams, err)
	}
}

// metrics reads the server's /metrics (served to loopback) into name{labels}
// → value.
func metrics(srv *testbed.Server) (map[string]float64, error) {
	c := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	res, err := c.Get("http://" + srv.Addrs["http"] + "/metrics")
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, errors.New("metrics: " + res.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && !strings.HasPrefix(f[0], "#") {
			if v, err := strconv.ParseFloat(f[1], 64); err == nil {
				out[f[0]] = v
			}
		}
	}
	if _, ok := out["switchboard_media_streams"]; !ok {
		return nil, errors.New("metrics: no switchboard_media_streams")
	}
	return out, sc.Err()
}

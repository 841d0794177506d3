package trunk

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/siptest"
	"github.com/switchboard/switchboard/test/internal/testbed"
)

// Addresses, which exist only inside the rig's namespaces (198.18.0.0/15
// is for benchmarking networks, RFC 2544): the switch's side of the
// carriers' link, the two carriers and a neighbour of theirs that is
// neither; the office network of the phones.
const (
	switchIP   = "198.18.0.1"
	carrier1IP = "198.18.0.2"
	carrier2IP = "198.18.0.3"
	strangerIP = "198.18.0.9"
	officeGW   = "198.18.1.1" // the switch's side of the office link
	phoneIP    = "198.18.1.2"
	domain     = "switchboard.local"
)

// rig is a switch with trunks to carrier stand-ins: the switch in
// namespace sw, its phones in lan (an office network: they send from an
// address of their own, as phones do, not from one of the switch's), the
// carriers in car.
type rig struct {
	t            *testing.T
	sw, lan, car string
	srv          *testbed.Server
	proxy        string // the switch's SIP UDP address
	tr           *siptest.Trace
}

// newNetwork makes the three namespaces and the links of sw to the
// others; the switch routes nothing between them.
func (r *rig) newNetwork() {
	t := r.t
	t.Helper()
	testbed.RequireNetns(t)
	r.sw, r.lan, r.car = testbed.NewNetns(t, "sw"), testbed.NewNetns(t, "lan"), testbed.NewNetns(t, "car")
	link := func(peer, swAddr string, peerAddrs ...string) {
		testbed.IP(t, "-n", r.sw, "link", "add", "to-"+peer[len(peer)-3:], "type", "veth", "peer", "name", "eth0", "netns", peer)
		testbed.IP(t, "-n", r.sw, "addr", "add", swAddr+"/24", "dev", "to-"+peer[len(peer)-3:])
		testbed.IP(t, "-n", r.sw, "link", "set", "to-"+peer[len(peer)-3:], "up")
		for _, a := range peerAddrs {
			testbed.IP(t, "-n", peer, "addr", "add", a+"/24", "dev", "eth0")
		}
		testbed.IP(t, "-n", peer, "link", "set", "eth0", "up")
		testbed.IP(t, "-n", peer, "route", "add", "default", "via", swAddr)
	}
	link(r.car, switchIP, carrier1IP, carrier2IP, strangerIP)
	link(r.lan, officeGW, phoneIP)
}

// startSwitch starts switchboard in r.sw on the shipped config, with only
// addresses and ports changed and the trunk sections given, and adds the
// users (name → calling class; password name+"-pw").
func (r *rig) startSwitch(trunkYAML string, users map[string]string) {
	t := r.t
	t.Helper()
	r.srv = testbed.StartServer(t, testbed.Binary(t), testbed.ServerConfig{
		Netns:   r.sw,
		Listen:  []string{"udp://" + switchIP + ":0"},
		MediaIP: switchIP,
		Extra:   trunkYAML,
	})
	r.proxy = r.srv.Addr(t, "udp")
	errs := make(chan error, len(users))
	for u, class := range users {
		go func() {
			_, err := r.srv.CLI(context.Background(), "user", "add", u, "--password", u+"-pw", "--calls", class)
			errs <- err
		}()
	}
	for range users {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// phone is a siptest phone of user in the switch's namespace, registered.
func (r *rig) phone(user string) *siptest.Phone {
	t := r.t
	t.Helper()
	pc, err := testbed.ListenPacketIn(r.lan, phoneIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	p := siptest.NewPhone(t, siptest.Config{Transport: "udp", Server: r.proxy, User: user, Password: user + "-pw",
		Domain: domain, PacketConn: pc, Trace: r.tr})
	p.MustRegister()
	return p
}

// baresip starts a baresip phone of user in the switch's namespace sending
// a tone of freq Hz, and waits until it has registered.
func (r *rig) baresip(user string, freq int, answer string) *testbed.Baresip {
	t := r.t
	t.Helper()
	b := testbed.StartBaresip(t, user, testbed.BaresipConfig{
		User: user, Password: user + "-pw", Domain: domain, Proxy: r.proxy, Netns: r.lan, IP: phoneIP, AnswerMode: answer,
		AudioFile: testbed.MakeTone(t, t.TempDir()+"/"+user+".wav", freq, 30),
	})
	b.WaitRegistered(t, 10*time.Second)
	return b
}

// trunkList returns the rows of `switchboard trunk list` by trunk name.
func (r *rig) trunkList() map[string]map[string]string {
	r.t.Helper()
	m, err := r.trunkListErr()
	if err != nil {
		r.t.Fatal(err)
	}
	return m
}

// trunkListErr is trunkList that returns its error (for goroutines).
func (r *rig) trunkListErr() (map[string]map[string]string, error) {
	out, err := r.srv.CLI(context.Background(), "trunk", "list")
	if err != nil {
		return nil, err
	}
	rows, err := testbed.ParseTable(out)
	if err != nil {
		return nil, fmt.Errorf("trunk list: %w\n%s", err, out)
	}
	m := map[string]map[string]string{}
	for _, row := range rows {
		m[row["name"]] = row
	}
	return m, nil
}

// record returns the call record of callID once it has ended.
func (r *rig) record(callID string) testbed.CDR {
	r.t.Helper()
	var rec testbed.CDR
	if !testbed.Eventually(r.t, 10*time.Second, func() bool {
		for _, c := range r.srv.CDRs(r.t) {
			if c["call-id"] == callID && c["ended"] != "-" && c["ended"] != "" {
				rec = c
				return true
			}
		}
		return false
	}, "call record of "+callID) {
		r.t.FailNow()
	}
	return rec
}

// logCount counts the switch's log lines with msg and every attribute of
// attrs.
func (r *rig) logCount(msg string, attrs map[string]string) int {
	n := 0
	for _, line := range strings.Split(r.srv.Log(), "\n") {
		kv := testbed.ParseLogfmt(line)
		if kv["msg"] != msg {
			continue
		}
		ok := true
		for k, v := range attrs {
			ok = ok && kv[k] == v
		}
		if ok {
			n++
		}
	}
	return n
}

// trunkYAML is the trunk configuration for carriers at c1 and c2 (host:port)
// with the dial plan and limits; reg1 makes carrier1 register.
func trunkYAML(c1, c2 string, reg1 bool) string {
	return fmt.Sprintf(`trunks:
  - {name: carrier1, address: "sip:%s;transport=udp", username: sb1, password: pw1, register: %t,
     inbound_from: [%s/32], caller_id: "+4930999000", timeout: 1s}
  - {name: carrier2, address: "sip:%s", username: sb2, password: pw2, inbound_from: [%s/32], timeout: 1s}
numbers:
  "+4930123456": [alice]
dialplan:
  country_code: "49"
  international_prefix: "00"
  routes:
    - {match: "^\\+49", trunks: [carrier1, carrier2]}
    - {match: "^\\+", trunks: [carrier2]}
limits:
  calls_per_user: 2
  external_calls_per_hour: 60
  blocked: ["^\\+4990", "^\\+882"]
`, c1, reg1, hostOf(c1), c2, hostOf(c2))
}

func hostOf(hostport string) string {
	h, _, _ := net.SplitHostPort(hostport)
	return h
}

func portOf(hostport string) int {
	_, p, _ := net.SplitHostPort(hostport)
	n, _ := strconv.Atoi(p)
	return n
}

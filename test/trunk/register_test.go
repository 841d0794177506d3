package trunk

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	gosip "github.com/emiago/sipgo/sip"

	"github.com/switchboard/switchboard/internal/siptest"
	"github.com/switchboard/switchboard/test/internal/testbed"
)

// registrationExpiry is what the carrier grants: short, so that refreshes
// come every 1.5 s.
const registrationExpiry = 2

// answerRegister answers one REGISTER of the switch as a carrier's
// registrar does: a fresh challenge each time, then 200 with the expiry
// granted to its contact. It reports whether a REGISTER came within wait.
func (c *carrier) answerRegister(wait time.Duration) bool {
	c.t.Helper()
	m, ok := c.TryWait(siptest.IsRequest("REGISTER"), wait)
	if !ok {
		return false
	}
	req := m.(*gosip.Request)
	if req.GetHeader("Authorization") == nil {
		c.challenge(req, 401)
		return true
	}
	if err := c.authorized(req, "Authorization"); err != nil {
		c.t.Errorf("carrier %s: REGISTER with bad credentials: %v\n%s", c.name, err, req)
		c.Reply(req, 403, "Forbidden")
		return true
	}
	if to := req.To().Address; to.User != c.user || to.Host != c.Addr().Addr().String() {
		c.t.Errorf("carrier %s: REGISTER for %s, want sip:%s@%s", c.name, to.String(), c.user, c.Addr().Addr())
	}
	ct := req.Contact()
	if ct == nil {
		c.t.Fatalf("carrier %s: REGISTER without Contact", c.name)
	}
	exp := registrationExpiry
	if e := req.GetHeader("Expires"); e != nil && e.Value() == "0" {
		exp = 0
	}
	c.Reply(req, 200, "OK", fmt.Sprintf("Contact: <%s>;expires=%d", ct.Address.String(), exp))
	c.registered = append(c.registered, req)
	return true
}

// registering answers the carrier's REGISTERs until cond (quick, run
// here) holds, failing the test after timeout.
func (c *carrier) registering(timeout time.Duration, what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: not within %s", what, timeout)
		}
		c.answerRegister(20 * time.Millisecond)
	}
}

// registeringUntil is registering for a slow cond (a CLI run, a metrics
// scrape): it runs in a goroutine of its own, so that the REGISTERs that
// come meanwhile are answered in time. cond must not fail the test.
func (c *carrier) registeringUntil(timeout time.Duration, what string, cond func() bool) {
	c.t.Helper()
	met := make(chan struct{})
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for !cond() {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
		close(met)
	}()
	c.registering(timeout, what, func() bool {
		select {
		case <-met:
			return true
		default:
			return false
		}
	})
}

// TestTrunkRegistration: a trunk with register: true registers with its
// carrier (answering the digest challenge), refreshes before the granted
// expiry, shows its state in `switchboard trunk list` and the metrics, takes
// calls that come on the registration's flow (and only those: the trunk has
// no inbound_from), and registers again once the carrier, restarted on the
// same address, answers again.
func TestTrunkRegistration(t *testing.T) {
	t.Parallel()
	r := &rig{t: t, tr: siptest.NewTrace(t)}
	r.newNetwork()
	pc1, pc2 := carrierSocket(t, r.car, carrier1IP, 0), carrierSocket(t, r.car, carrier2IP, 0)
	addr1 := pc1.LocalAddr().String()
	cfg := trunkYAML(addr1, pc2.LocalAddr().String(), true)
	cfg = strings.Replace(cfg, "inbound_from: ["+carrier1IP+"/32], ", "", 1) // the flow alone
	r.startSwitch(cfg, map[string]string{"alice": "national"})
	c1 := newCarrier(t, r.car, pc1, "carrier1", r.proxy, "sb1", "pw1", r.tr)
	c1.registering(5*time.Second, "registered", func() bool { return len(c1.registered) >= 1 })

	registered := func() bool { l, _ := r.trunkListErr(); return l["carrier1"]["state"] == "registered" }
	c1.registeringUntil(10*time.Second, "trunk list says registered", registered)
	var row, row2 map[string]string
	c1.registeringUntil(10*time.Second, "trunk list", func() bool {
		l, err := r.trunkListErr()
		row, row2 = l["carrier1"], l["carrier2"]
		return err == nil
	})
	exp, err := time.ParseInLocation("2006-01-02 15:04:05", row["expires"], time.Local)
	if err != nil || time.Until(exp) > registrationExpiry*time.Second+time.Second {
		t.Errorf("trunk list expires %q (%v), want within %ds", row["expires"], err, registrationExpiry)
	}
	if row["register"] != "true" || row["last-error"] != "-" {
		t.Errorf("trunk list row %v", row)
	}
	if row2["register"] != "false" || row2["state"] != "-" {
		t.Errorf("carrier2 (no registration) row %v", row2)
	}
	// Refreshed before expiry: two more registrations in 4 s, one Call-ID.
	c1.registering(4*time.Second, "two refreshes", func() bool { return len(c1.registered) >= 3 })
	first, last := c1.registered[0], c1.registered[len(c1.registered)-1]
	if first.CallID().Value() != last.CallID().Value() || last.CSeq().SeqNo <= first.CSeq().SeqNo {
		t.Errorf("refresh: Call-ID %s CSeq %d after %s %d", last.CallID().Value(), last.CSeq().SeqNo, first.CallID().Value(), first.CSeq().SeqNo)
	}
	contact := last.Contact().Address
	if contact.Host != switchIP || contact.Port != portOf(r.proxy) {
		t.Errorf("registered Contact %s, want the switch's listener %s", contact.String(), r.proxy)
	}
	var metric string
	c1.registeringUntil(10*time.Second, "metrics", func() bool {
		var err error
		metric, err = r.metric("switchboard_trunk_registered", `trunk="carrier1"`)
		return err == nil
	})
	if metric != "1" {
		t.Errorf("switchboard_trunk_registered{trunk=carrier1} = %q, want 1", metric)
	}

	// A call on the registration's flow (to the registered Contact, the
	// number in To) rings alice.
	alice := r.phone("alice")
	inv := c1.Request("INVITE", contact.String())
	inv.Set("To", "<sip:+4930123456@"+switchIP+">")
	inv.Set("From", "<sip:+4917012345678@"+carrier1IP+">;tag="+siptest.Rand(6))
	c1.Send(inv)
	ring := alice.WaitRequest("INVITE")
	alice.Reply(ring, 486, "Busy Here")
	c1.registering(5*time.Second, "486 through the switch", func() bool {
		_, ok := c1.TryWait(siptest.IsResponseTo(inv, 486, 486), 10*time.Millisecond)
		return ok
	})
	// The carrier's address from another port: neither the flow nor an
	// inbound_from network.
	other := newCarrier(t, r.car, carrierSocket(t, r.car, carrier1IP, 0), "other", r.proxy, "", "", r.tr)
	inv2 := other.Request("INVITE", contact.String())
	inv2.Set("To", "<sip:+4930123456@"+switchIP+">")
	inv2.Set("From", "<sip:+4917012345678@"+carrier1IP+">;tag="+siptest.Rand(6))
	other.Send(inv2)
	c1.registering(5*time.Second, "403 off the flow", func() bool {
		res, ok := other.TryWait(siptest.IsResponseTo(inv2, 200, 699), 10*time.Millisecond)
		if ok && res.(*gosip.Response).StatusCode != 403 {
			t.Errorf("INVITE off the registration's flow: %d, want 403", res.(*gosip.Response).StatusCode)
		}
		return ok
	})
	alice.ExpectNone(siptest.IsRequest("INVITE"), 100*time.Millisecond, "the call off the flow")

	// The carrier stops: the refresh goes unanswered, the state says so.
	c1.Close()
	testbed.Eventually(t, 5*time.Second, func() bool { return r.trunkList()["carrier1"]["state"] == "failed" }, "trunk list says failed")
	row = r.trunkList()["carrier1"]
	if !strings.Contains(row["last-error"], "no response to REGISTER") {
		t.Errorf("last error %q", row["last-error"])
	}
	if n, err := r.metric("switchboard_trunk_registration_failures_total", `trunk="carrier1"`); err != nil || n == "" || n == "0" {
		t.Errorf("switchboard_trunk_registration_failures_total = %q", n)
	}
	// It comes back on the same address: registered again (backoff 1 s, 2 s, …).
	c1 = newCarrier(t, r.car, carrierSocket(t, r.car, carrier1IP, portOf(addr1)), "carrier1", r.proxy, "sb1", "pw1", r.tr)
	c1.registering(8*time.Second, "registered again", func() bool { return len(c1.registered) >= 1 })
	c1.registeringUntil(10*time.Second, "trunk list says registered again", registered)
	if n := r.logCount("trunk registered", map[string]string{"trunk": "carrier1"}); n != 2 {
		t.Errorf("%d \"trunk registered\" log lines, want 2 (first time, after the failure)", n)
	}

	// At shutdown the switch takes its registration back (Expires: 0).
	if err := r.srv.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	c1.registering(10*time.Second, "REGISTER with Expires: 0", func() bool {
		l := c1.registered[len(c1.registered)-1]
		e := l.GetHeader("Expires")
		return e != nil && e.Value() == "0"
	})
	if code, err := r.srv.WaitExit(15 * time.Second); err != nil || code != 0 {
		t.Errorf("switchboard exited with %d, %v", code, err)
	}
}

// metric reads one sample of the switch's /metrics (served to loopback in
// its namespace): the value of name with a label set containing labels.
func (r *rig) metric(name, labels string) (string, error) {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) { return testbed.DialIn(r.sw, addr) },
	}}
	defer client.CloseIdleConnections()
	res, err := client.Get("http://" + r.srv.Addrs["http"] + "/metrics")
	if err != nil {
		return "", fmt.Errorf("metrics: %w", err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, name+"{") && strings.Contains(l, labels) {
			f := strings.Fields(l)
			if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
				return strconv.FormatFloat(v, 'f', -1, 64), nil
			}
		}
	}
	return "", sc.Err()
}

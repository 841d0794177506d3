package sip

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/cdr"
	"github.com/switchboard/switchboard/internal/siptest"
)

// TestForgedInDialogRequestsNotRelayed: a request with a To tag and a Route
// naming the switch is not thereby in a dialog of the switch's. From a
// stranger, for every method and with the catcher as Request-URI or as the
// next Route, nothing reaches the catcher and the switch refuses.
func TestForgedInDialogRequestsNotRelayed(t *testing.T) {
	sw := startSwitch(t)
	catcher := siptest.NewPhone(t, siptest.Config{User: "catcher", Name: "catcher", Trace: sw.tr})
	udp := sw.srv.Addrs()["udp"]
	for _, tr := range []string{"udp", "tcp"} {
		stranger := sw.phone("alice", tr, "stranger-"+tr)
		own := sw.srv.Addrs()[tr]
		variants := []struct {
			name, ruri string
			routes     []string
		}{
			{"route to us", "sip:123@" + catcher.Addr().String(), []string{"<sip:" + own + ";lr>"}},
			{"route to us with transport", "sip:123@" + catcher.Addr().String(), []string{"<sip:" + own + ";transport=" + tr + ";lr>"}},
			{"route to us with a made-up token", "sip:123@" + catcher.Addr().String(), []string{"<sip:" + own + ";lr;sbd=00112233445566778899>"}},
			{"route to us then catcher", "sip:bob@" + testDomain, []string{"<sip:" + own + ";lr>", "<sip:" + catcher.Addr().String() + ";lr>"}},
			{"two routes to us", "sip:123@" + catcher.Addr().String(), []string{"<sip:" + udp + ";lr>", "<sip:" + own + ";lr;r2=on>"}},
			{"no route", "sip:123@" + catcher.Addr().String(), nil},
		}
		for _, v := range variants {
			for _, method := range []string{"INVITE", "MESSAGE", "BYE", "ACK", "INFO", "UPDATE", "NOTIFY", "REFER", "OPTIONS", "PRACK"} {
				m := stranger.Request(method, v.ruri)
				m.Set("From", "<sip:mallory@example.org>;tag=m1")
				m.Set("To", "<sip:123@198.51.100.7>;tag=forged")
				for _, r := range v.routes {
					m.Add("Route", r)
				}
				stranger.Send(m)
				if method == "ACK" {
					continue
				}
				res := stranger.WaitFinal(m)
				if res.StatusCode != 403 && res.StatusCode != 404 && res.StatusCode != 481 {
					t.Errorf("%s %s over %s: %d %s, want 403, 404 or 481", v.name, method, tr, res.StatusCode, res.Reason)
				}
				if method == "INVITE" {
					stranger.Send(siptest.Ack(m, res))
				}
			}
		}
	}
	// Anything relayed would have arrived by the time the last was refused.
	catcher.ExpectNone(siptest.IsRequest(""), 200*time.Millisecond, "request relayed for a stranger")
}

// TestRouteFromAnotherDialogNotAccepted: the signed Route of a real call is
// valid for that call only; a stranger who copies it into a request of a
// dialog of their own is refused.
func TestRouteFromAnotherDialogNotAccepted(t *testing.T) {
	sw := startSwitch(t)
	bob := sw.registered("bob", "")
	alice := sw.registered("alice", "")
	catcher := siptest.NewPhone(t, siptest.Config{User: "catcher", Name: "catcher", Trace: sw.tr})
	inv := invite(t, alice, "bob")
	req := bob.WaitRequest("INVITE")
	answer(t, bob, req)
	ok := alice.WaitResponse(inv, 200, 200)
	rr := headerValues(ok, "Record-Route")
	if len(rr) != 1 || !strings.Contains(rr[0], dialogParam+"=") {
		t.Fatalf("Record-Route %q: want one signed entry", rr)
	}
	ad := alice.UACDialog(inv, ok)
	alice.Send(ad.Request("ACK"))
	bob.WaitRequest("ACK")

	stranger := sw.phone("alice", "udp", "stranger")
	m := stranger.Request("MESSAGE", "sip:123@"+catcher.Addr().String())
	m.Set("From", "<sip:mallory@example.org>;tag=m1")
	m.Set("To", "<sip:123@198.51.100.7>;tag=forged")
	m.Add("Route", rr[0])
	stranger.Send(m)
	wantStatus(t, stranger.WaitFinal(m), 403)
	catcher.ExpectNone(siptest.IsRequest(""), 100*time.Millisecond, "request relayed with another dialog's Route")

	// The real dialog still routes.
	bye := ad.Request("BYE")
	alice.Send(bye)
	bob.Reply(bob.WaitRequest("BYE"), 200, "OK")
	wantStatus(t, alice.WaitFinal(bye), 200)
}

// TestDialogSurvivesRestartWithSameSecret: with the secret kept (as the
// binary keeps it in the database), a Route signed by one run is valid for
// the next.
func TestDialogSurvivesRestartWithSameSecret(t *testing.T) {
	a := startSwitch(t, func(c *Config) { c.Secret = "kept" })
	b := startSwitch(t, func(c *Config) { c.Secret = "kept" })
	other := startSwitch(t, func(c *Config) { c.Secret = "other" })
	tok := a.srv.dialogToken("call-1", "tag-a")
	if tok != b.srv.dialogToken("call-1", "tag-a") {
		t.Fatal("same secret, different dialog tokens")
	}
	if tok == other.srv.dialogToken("call-1", "tag-a") || tok == a.srv.dialogToken("call-2", "tag-a") || tok == a.srv.dialogToken("call-1", "tag-b") {
		t.Fatal("dialog token does not depend on secret, Call-ID and tag")
	}
}

// TestRefusalsHoldNoTransaction: requests the switch refuses itself are
// answered statelessly, so a stream of them leaves no live transaction.
func TestRefusalsHoldNoTransaction(t *testing.T) {
	sw := startSwitch(t)
	stranger := sw.phone("alice", "udp", "stranger")
	for i := 0; i < 50; i++ {
		m := stranger.Request("MESSAGE", callURI("bob"))
		m.Set("From", "<sip:mallory@example.org>;tag=m1")
		stranger.Send(m)
		wantStatus(t, stranger.WaitFinal(m), 403)
	}
	deadline := time.Now().Add(2 * time.Second)
	for sw.srv.LiveTransactions() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := sw.srv.LiveTransactions(); n > 0 {
		t.Fatalf("%d transactions alive after 50 refused requests, want 0", n)
	}
}

// TestTransactionCap: beyond MaxTransactions new requests get 503 with
// Retry-After.
func TestTransactionCap(t *testing.T) {
	sw := startSwitch(t, func(c *Config) { c.MaxTransactions = 100 })
	bob := sw.registered("bob", "")
	alice := sw.registered("alice", "")
	inv := invite(t, alice, "bob")
	req := bob.WaitRequest("INVITE")
	bd := answer(t, bob, req)
	ok := alice.WaitResponse(inv, 200, 200)
	ad := alice.UACDialog(inv, ok)
	alice.Send(ad.Request("ACK"))
	bob.WaitRequest("ACK")

	// The cap is reached (by 100 transactions held elsewhere).
	sw.srv.txLive.Add(100)
	defer sw.srv.txLive.Add(-100)
	p := sw.phone("carol", "udp", "")
	m := p.Register(3600)
	p.Send(m)
	res := p.WaitFinal(m)
	wantStatus(t, res, 503)
	if len(headerValues(res, "Retry-After")) != 1 {
		t.Errorf("503 without Retry-After:\n%s", res)
	}
	// Requests inside a dialog still pass: the call can be hung up.
	bye := bd.Request("BYE")
	bob.Send(bye)
	alice.Reply(alice.WaitRequest("BYE"), 200, "OK")
	wantStatus(t, bob.WaitFinal(bye), 200)
}

// TestFloodGuard: more than Requests messages in a window bans the source
// for Ban; other sources, exempt networks and trusted sockets pass.
func TestFloodGuard(t *testing.T) {
	now := time.Unix(1000, 0)
	f := newFloodGuard(FloodConfig{Requests: 3, Window: time.Second, Ban: time.Minute,
		Exempt: []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")}}, discardLogger())
	f.now = func() time.Time { return now }
	a := netip.MustParseAddrPort("192.0.2.1:5060")
	b := netip.MustParseAddrPort("192.0.2.2:5060")
	for i := 0; i < 3; i++ {
		if !f.allow(a) {
			t.Fatalf("message %d refused below the limit", i+1)
		}
	}
	if f.allow(a) {
		t.Fatal("4th message in the window allowed")
	}
	if !f.allow(b) {
		t.Fatal("another source refused")
	}
	now = now.Add(30 * time.Second)
	if f.allow(netip.MustParseAddrPort("192.0.2.1:6000")) {
		t.Fatal("banned source allowed from another port during the ban")
	}
	now = now.Add(31 * time.Second)
	if !f.allow(a) {
		t.Fatal("source still refused after the ban")
	}
	for i := 0; i < 10; i++ {
		if !f.allow(netip.MustParseAddrPort("10.9.1.1:5060")) {
			t.Fatal("exempt source refused")
		}
	}
	gw := netip.MustParseAddrPort("127.0.0.1:40000")
	f.trust(gw)
	for i := 0; i < 10; i++ {
		if !f.allow(gw) {
			t.Fatal("trusted socket refused")
		}
	}
	if bans, _ := f.bans.Load(), f.dropped.Load(); bans != 1 {
		t.Fatalf("%d bans, want 1", bans)
	}
	f.sweep()
}

// TestFloodedSourceIsDropped: a source over the limit gets no answers,
// while another source is served.
func TestFloodedSourceIsDropped(t *testing.T) {
	sw := startSwitch(t, func(c *Config) { c.Flood = FloodConfig{Requests: 20, Window: time.Minute, Ban: time.Minute} })
	bob := sw.registered("bob", "") // 2 messages from bob's source
	flooder := siptest.NewPhone(t, siptest.Config{Server: sw.srv.Addrs()["udp"], User: "x", Name: "flooder", Trace: sw.tr, Local: "127.0.0.9:0"})
	for i := 0; i < 30; i++ {
		flooder.Send(flooder.Request("OPTIONS", "sip:"+testDomain))
	}
	m := flooder.Request("OPTIONS", "sip:"+testDomain)
	flooder.Send(m)
	if _, ok := flooder.TryWait(siptest.IsResponseTo(m, 100, 699), 300*time.Millisecond); ok {
		t.Fatal("a flooding source was answered")
	}
	alive(t, sw, bob)
}

// TestShutdownHangsUpCalls: SIGTERM's drain waits for the grace, then sends
// BYE to both parties of an answered call and records it as ended by the
// switch with reason "shutdown".
func TestShutdownHangsUpCalls(t *testing.T) {
	sw := startSwitch(t, func(c *Config) { c.ShutdownGrace = 300 * time.Millisecond })
	bob := sw.registered("bob", "")
	alice := sw.registered("alice", "")
	inv := invite(t, alice, "bob")
	req := bob.WaitRequest("INVITE")
	answer(t, bob, req)
	ok := alice.WaitResponse(inv, 200, 200)
	ad := alice.UACDialog(inv, ok)
	alice.Send(ad.Request("ACK"))
	bob.WaitRequest("ACK")

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- sw.srv.Shutdown(ctx)
	}()
	for _, p := range []*siptest.Phone{alice, bob} {
		b := p.WaitRequest("BYE")
		if v := b.GetHeader("Reason"); v == nil || !strings.Contains(v.Value(), "shutdown") {
			t.Errorf("BYE to %s without Reason shutdown:\n%s", p.User(), b)
		}
		p.Reply(b, 200, "OK")
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	r := sw.record(inv.Get("Call-ID"), "ended", func(r cdr.Record) bool { return !r.Ended.IsZero() })
	if r.Reason != "shutdown" || r.HangupBy != "switch" || r.Status != 200 {
		t.Errorf("CDR %+v: want status 200, reason shutdown, hangup_by switch", r)
	}
}

// TestShutdownEndsAsSoonAsCallsEnd: a call that ends during the grace lets
// the drain finish at once.
func TestShutdownEndsAsSoonAsCallsEnd(t *testing.T) {
	sw := startSwitch(t, func(c *Config) { c.ShutdownGrace = time.Minute })
	bob := sw.registered("bob", "")
	alice := sw.registered("alice", "")
	inv := invite(t, alice, "bob")
	req := bob.WaitRequest("INVITE")
	answer(t, bob, req)
	ok := alice.WaitResponse(inv, 200, 200)
	ad := alice.UACDialog(inv, ok)
	alice.Send(ad.Request("ACK"))
	bob.WaitRequest("ACK")

	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- sw.srv.Shutdown(context.Background()) }()
	for !sw.srv.draining.Load() {
		time.Sleep(time.Millisecond)
	}
	// New calls are refused while draining...
	m := alice.Request("INVITE", callURI("bob"))
	alice.Send(m)
	res := alice.WaitFinal(m)
	wantStatus(t, res, 503)
	alice.Send(siptest.Ack(m, res))
	// ...calls in progress go on, and their end ends the drain.
	bye := ad.Request("BYE")
	alice.Send(bye)
	bob.Reply(bob.WaitRequest("BYE"), 200, "OK")
	wantStatus(t, alice.WaitFinal(bye), 200)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("drain did not end when the last call ended")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("drain took %s", d)
	}
	r := sw.record(inv.Get("Call-ID"), "ended", func(r cdr.Record) bool { return !r.Ended.IsZero() })
	if r.Reason != "BYE" || r.HangupBy != "caller" {
		t.Errorf("CDR %+v: want ended by the caller's BYE", r)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestSipgoLogsTruncated: what sipgo quotes from the network is cut short.
func TestSipgoLogsTruncated(t *testing.T) {
	var buf strings.Builder
	h := &sipgoLogHandler{next: slog.NewTextHandler(&buf, nil), stats: &Stats{}}
	log := slog.New(h)
	log.Error("Read filter error", "req", strings.Repeat("A", 5000), "error", errors.New(strings.Repeat("B", 5000)))
	if n := strings.Count(buf.String(), "A"); n > maxLoggedValue {
		t.Fatalf("%d bytes of attacker text logged", n)
	}
	if n := strings.Count(buf.String(), "B"); n > maxLoggedValue {
		t.Fatalf("%d bytes of an error logged", n)
	}
	if !strings.Contains(buf.String(), "component=sipgo") {
		t.Fatalf("component missing: %s", buf.String())
	}
}

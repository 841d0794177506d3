package hostile

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	gosip "github.com/emiago/sipgo/sip"

	"github.com/switchboard/switchboard/internal/siptest"
	"github.com/switchboard/switchboard/test/internal/testbed"
)

// relayMethods are the methods a stranger tries to get relayed.
var relayMethods = []string{"INVITE", "MESSAGE", "BYE", "ACK", "INFO", "UPDATE", "NOTIFY", "REFER", "OPTIONS"}

// relayCase is one shape of forged request: where its Request-URI points
// and which Route headers it carries, in a dialog (To tag) or not.
type relayCase struct {
	name   string
	ruri   func(sw, catcher string) string
	routes func(sw, catcher, transport string) []string
	// outOfDialog leaves the To tag out.
	outOfDialog bool
}

// relayCases returns the forged shapes. sw and catcher are host:port; a
// ";transport=tcp" target sends the relayed request to the catcher's TCP
// listener (same port as its UDP socket).
func relayCases() []relayCase {
	atCatcher := func(sw, c string) string { return "sip:123@" + c }
	atCatcherTCP := func(sw, c string) string { return "sip:123@" + c + ";transport=tcp" }
	atSwitch := func(sw, c string) string { return "sip:123@" + sw }
	routes := func(rs ...string) func(sw, c, tr string) []string {
		return func(sw, c, tr string) []string {
			out := make([]string, len(rs))
			for i, r := range rs {
				r = strings.ReplaceAll(r, "SW", sw)
				r = strings.ReplaceAll(r, "CATCHER", c)
				out[i] = strings.ReplaceAll(r, "TR", tr)
			}
			return out
		}
	}
	none := routes()
	return []relayCase{
		{name: "route-to-switch", ruri: atCatcher, routes: routes("<sip:SW;lr>")},
		{name: "route-to-switch/tcp-target", ruri: atCatcherTCP, routes: routes("<sip:SW;lr>")},
		{name: "no-route", ruri: atCatcher, routes: none},
		{name: "no-route/tcp-target", ruri: atCatcherTCP, routes: none},
		{name: "route-with-transport", ruri: atCatcher, routes: routes("<sip:SW;transport=TR;lr>")},
		{name: "route-with-transport/tcp-target", ruri: atCatcherTCP, routes: routes("<sip:SW;transport=TR;lr>")},
		{name: "route-with-forged-token", ruri: atCatcher, routes: routes("<sip:SW;lr;sbd=00112233445566778899;ftag=1>")},
		{name: "two-routes-second-catcher", ruri: atCatcher, routes: routes("<sip:SW;lr>", "<sip:CATCHER;lr>")},
		{name: "two-routes-second-catcher-tcp", ruri: atCatcher, routes: routes("<sip:SW;lr>", "<sip:CATCHER;transport=tcp;lr>")},
		{name: "ruri-switch/routes-switch-catcher", ruri: atSwitch, routes: routes("<sip:SW;lr>", "<sip:CATCHER;lr>")},
		{name: "ruri-switch/route-catcher", ruri: atSwitch, routes: routes("<sip:CATCHER;lr>")},
		{name: "ruri-switch/route-catcher-tcp", ruri: atSwitch, routes: routes("<sip:CATCHER;transport=tcp;lr>")},
		{name: "out-of-dialog/ruri-catcher", ruri: atCatcher, routes: none, outOfDialog: true},
		{name: "out-of-dialog/ruri-catcher-tcp", ruri: atCatcherTCP, routes: none, outOfDialog: true},
		{name: "out-of-dialog/route-catcher", ruri: atSwitch, routes: routes("<sip:CATCHER;lr>"), outOfDialog: true},
		{name: "out-of-dialog/routes-switch-catcher", ruri: atCatcher, routes: routes("<sip:SW;lr>", "<sip:CATCHER;lr>"), outOfDialog: true},
	}
}

// forged builds the request of method for c from the attacker p, with the
// Call-ID callID (the test finds it again at the catcher).
func forged(p *siptest.Phone, method string, c relayCase, sw, catcher, transport, callID string) *siptest.Msg {
	ruri := c.ruri(sw, catcher)
	m := &siptest.Msg{Start: method + " " + ruri + " SIP/2.0"}
	m.Add("Via", p.Via(siptest.NewBranch()))
	for _, r := range c.routes(sw, catcher, transport) {
		m.Add("Route", r)
	}
	m.Add("Max-Forwards", "70")
	m.Add("From", "<"+p.AOR()+">;tag="+siptest.Rand(4))
	to := "<sip:123@" + catcher + ">"
	if !c.outOfDialog {
		to += ";tag=" + siptest.Rand(4)
	}
	m.Add("To", to)
	m.Add("Call-ID", callID)
	m.Add("CSeq", "7 "+method)
	m.Add("Contact", "<"+p.Contact()+">")
	switch method {
	case "NOTIFY":
		m.Add("Event", "refer")
		m.Add("Subscription-State", "active;expires=60")
		m.Add("Content-Type", "message/sipfrag")
		m.Body = "SIP/2.0 200 OK\r\n"
	case "REFER":
		m.Add("Refer-To", "<sip:victim@"+catcher+">")
	case "MESSAGE":
		m.Add("Content-Type", "text/plain")
		m.Body = "buy cheap minutes"
	case "INFO":
		m.Add("Content-Type", "application/dtmf-relay")
		m.Body = "Signal=5\r\nDuration=160\r\n"
	case "INVITE", "UPDATE":
		m.Add("Content-Type", "application/sdp")
		m.Body = sdp(p, 41000)
	}
	return m
}

// TestRelayForgedRequests sends, from strangers on 127.0.0.X over UDP and
// TCP, every method in every forged shape that tries to have the switch
// relay it to a socket the test owns (the catcher): nothing may arrive
// there, and every request but ACK must be refused with 403, 404 or 481.
// A local user's authenticated MESSAGE to the catcher shows that the
// catcher does receive what the switch relays.
func TestRelayForgedRequests(t *testing.T) {
	v := startVictim(t, "")
	c := newCatcher(t, "127.0.0.200")

	// Control: our own users may send to foreign URIs; that reaches the catcher.
	alice := v.registered("alice")
	ctl := alice.Request("MESSAGE", "sip:control@"+c.addr)
	ctl.Set("Call-ID", "control-"+siptest.Rand(4))
	ctl.Set("Content-Type", "text/plain")
	ctl.Body = "hello"
	ctl = alice.SendAuthenticated(ctl)
	if res := alice.WaitFinal(ctl); res.StatusCode != 200 {
		t.Fatalf("control: alice's authenticated MESSAGE to the catcher got %d %s, want the catcher's 200", res.StatusCode, res.Reason)
	}

	type result struct {
		name, method, callID string
		code                 int
		line                 string
	}
	var results []result
	n := 0
	for _, transport := range []string{"udp", "tcp"} {
		// Requests spread over several sources, so that a per-source rate
		// limit does not answer for the relay check.
		var attackers []*siptest.Phone
		for i := range 8 {
			ip := attackerIP(10 + i)
			if transport == "tcp" {
				ip = attackerIP(30 + i)
			}
			attackers = append(attackers, v.attacker("evil", ip, transport))
		}
		sw := v.server(transport)
		for _, rc := range relayCases() {
			for _, method := range relayMethods {
				name := transport + "/" + rc.name + "/" + method
				p := attackers[n%len(attackers)]
				callID := fmt.Sprintf("relay-%d-%s", n, siptest.Rand(3))
				n++
				m := forged(p, method, rc, sw, c.addr, transport, callID)
				results = append(results, result{name: name, method: method, callID: callID})
				p.Send(m)
				if method == "ACK" {
					continue
				}
				msg, ok := p.TryWait(siptest.IsResponseTo(m, 200, 699), 3*time.Second)
				if !ok {
					results[len(results)-1].line = "no final response within 3s"
					continue
				}
				res := msg.(*gosip.Response)
				results[len(results)-1].code = res.StatusCode
				results[len(results)-1].line = firstLine(res)
				if method == "INVITE" {
					p.Send(siptest.Ack(m, res))
				}
			}
		}
	}
	// Anything relayed arrives within a second of the last request.
	c.quietFor(time.Second, 5*time.Second)

	var wrong []string
	for _, r := range results {
		if r.method == "ACK" {
			continue
		}
		switch r.code {
		case 403, 404, 481:
		default:
			wrong = append(wrong, fmt.Sprintf("%s: got %q", r.name, r.line))
		}
	}
	if len(wrong) > 0 {
		t.Errorf("%d forged requests not refused with 403, 404 or 481:\n  %s", len(wrong), strings.Join(wrong, "\n  "))
	}
	got, raw := c.received()
	leaked := map[string]string{}
	for _, msg := range got {
		id := callIDOf(msg)
		if strings.HasPrefix(id, "control-") {
			continue
		}
		leaked[id] = firstLine(msg)
	}
	if len(leaked) > 0 {
		var names []string
		for _, r := range results {
			if l, ok := leaked[r.callID]; ok {
				names = append(names, r.name+" -> catcher got "+l)
			}
		}
		sort.Strings(names)
		t.Errorf("the switch relayed %d of %d forged requests to the catcher (open relay):\n  %s", len(names), len(results), strings.Join(names, "\n  "))
	}
	controls := 0
	for _, msg := range got {
		if strings.HasPrefix(callIDOf(msg), "control-") {
			controls++
		}
	}
	if controls == 0 {
		t.Errorf("the catcher never got the control MESSAGE (%d reads in all)", raw)
	}
	t.Logf("%d forged requests sent; catcher received %d messages (%d reads), %d of them the control", len(results), len(got), raw, controls)
}

// TestRelayInDialogOfRealCall checks the other side of the rule: a real
// authenticated call between two local users has its ACK, re-INVITE, INFO
// and BYE relayed in both directions, while a third party that copies the
// call's Call-ID and tags (but not the route set the switch record-routed)
// gets nothing relayed, neither to a catcher nor to the call's parties.
func TestRelayInDialogOfRealCall(t *testing.T) {
	v := startVictim(t, "")
	c := newCatcher(t, "127.0.0.201")
	bob := v.registered("bob")
	alice := v.registered("alice")
	cl := placeCall(t, alice, bob)
	callID := cl.caller.CallID

	// Forgeries from 127.0.0.X with the real call's identifiers.
	for i, transport := range []string{"udp", "tcp"} {
		p := v.attacker("evil", attackerIP(50+i), transport)
		sw := v.server(transport)
		for _, target := range []string{"sip:123@" + c.addr, bob.Contact(), alice.Contact()} {
			for _, route := range []string{"<sip:" + sw + ";lr>", "<sip:" + sw + ";transport=" + transport + ";lr>", ""} {
				for _, method := range []string{"BYE", "INFO", "INVITE", "ACK"} {
					m := &siptest.Msg{Start: method + " " + target + " SIP/2.0"}
					m.Add("Via", p.Via(siptest.NewBranch()))
					if route != "" {
						m.Add("Route", route)
					}
					m.Add("Max-Forwards", "70")
					m.Add("From", cl.caller.Local)
					m.Add("To", cl.caller.Remote)
					m.Add("Call-ID", callID)
					m.Add("CSeq", "9 "+method)
					if method == "ACK" {
						m.Set("CSeq", fmt.Sprintf("%d ACK", cl.inv.CSeq()))
					}
					m.Add("Contact", "<"+p.Contact()+">")
					p.Send(m)
					if method == "ACK" {
						continue
					}
					msg, ok := p.TryWait(siptest.IsResponseTo(m, 200, 699), 3*time.Second)
					switch {
					case !ok:
						t.Errorf("forged %s %s (Route %q) over %s: no final response within 3s", method, target, route, transport)
					default:
						res := msg.(*gosip.Response)
						if res.StatusCode != 403 && res.StatusCode != 404 && res.StatusCode != 481 {
							t.Errorf("forged %s %s (Route %q) over %s: got %d %s, want 403, 404 or 481", method, target, route, transport, res.StatusCode, res.Reason)
						}
						if method == "INVITE" {
							p.Send(siptest.Ack(m, res))
						}
					}
				}
			}
		}
	}
	c.quietFor(time.Second, 5*time.Second)
	if got, raw := c.received(); raw > 0 {
		var lines []string
		for _, m := range got {
			lines = append(lines, firstLine(m))
		}
		t.Errorf("forged in-dialog requests reached the catcher: %d reads: %q", raw, lines)
	}
	for _, p := range []*siptest.Phone{alice, bob} {
		for _, m := range p.Drain() {
			if r, ok := m.(*gosip.Request); ok {
				t.Errorf("%s got a forged %s:\n%s", p.User(), r.Method, r)
			}
		}
	}

	// The real call still works: re-INVITE from the caller, INFO from the
	// callee, BYE from the callee, each relayed.
	reinv := cl.caller.Request("INVITE")
	reinv.Add("Contact", "<"+alice.Contact()+">")
	reinv.Set("Content-Type", "application/sdp")
	reinv.Body = sdp(alice, 40010)
	alice.Send(reinv)
	req := bob.Wait(siptest.And(siptest.IsRequest("INVITE"), siptest.CallID(callID)), 0, "the re-INVITE").(*gosip.Request)
	replySDP(bob, req, sdp(bob, 40012))
	alice.WaitResponse(reinv, 200, 200)
	ack := cl.caller.Request("ACK")
	ack.Set("CSeq", fmt.Sprintf("%d ACK", reinv.CSeq()))
	alice.Send(ack)
	bob.Wait(siptest.And(siptest.IsRequest("ACK"), siptest.CallID(callID)), 0, "the re-INVITE's ACK")

	info := cl.callee.Request("INFO")
	info.Set("Content-Type", "application/dtmf-relay")
	info.Body = "Signal=1\r\nDuration=160\r\n"
	bob.Send(info)
	got := alice.Wait(siptest.And(siptest.IsRequest("INFO"), siptest.CallID(callID)), 0, "bob's INFO").(*gosip.Request)
	alice.Reply(got, 200, "OK")
	if res := bob.WaitFinal(info); res.StatusCode != 200 {
		t.Errorf("INFO got %d %s", res.StatusCode, res.Reason)
	}

	bye := cl.callee.Request("BYE")
	bob.Send(bye)
	b := alice.Wait(siptest.And(siptest.IsRequest("BYE"), siptest.CallID(callID)), 0, "bob's BYE").(*gosip.Request)
	alice.Reply(b, 200, "OK")
	if res := bob.WaitFinal(bye); res.StatusCode != 200 {
		t.Errorf("BYE got %d %s", res.StatusCode, res.Reason)
	}
	rows := v.waitCDR(callID, "ended", func(r testbed.CDR) bool { return r["ended"] != "" && r["ended"] != "-" })
	for _, r := range rows {
		if r["call-id"] == callID && r["hangup-by"] != "callee" {
			t.Errorf("CDR of the real call: hangup-by %q, want callee (a forged BYE must not end it): %v", r["hangup-by"], r)
		}
	}
}

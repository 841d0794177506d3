package hostile

import (
	"fmt"
	"testing"
	"time"

	gosip "github.com/emiago/sipgo/sip"

	"github.com/switchboard/switchboard/internal/siptest"
)

// TestEnumUsersLookAlike sends OPTIONS, INVITE, MESSAGE and REGISTER from a
// stranger (sip:evil@198.51.100.9, from 127.0.0.X) about a registered user
// (bob), a user that exists but is not registered (carol) and one that does
// not exist: for each method the three must get the same status and reason,
// so that nobody learns which users exist. bob's phone answers whatever
// reaches it as a phone would (200, or 486 to an INVITE), which would show.
func TestEnumUsersLookAlike(t *testing.T) {
	v := startVictim(t, "")
	bob := v.registered("bob")
	targets := []string{"bob", "carol", "nobody" + siptest.Rand(2)}
	for i, transport := range []string{"udp", "tcp"} {
		p := v.attacker("evil", attackerIP(80+i), transport)
		for _, method := range []string{"OPTIONS", "INVITE", "MESSAGE", "REGISTER"} {
			got := map[string]string{}
			for _, user := range targets {
				got[user] = enumProbe(t, p, bob, method, user)
			}
			t.Logf("%s over %s: %v", method, transport, got)
			for _, user := range targets[1:] {
				if got[user] != got[targets[0]] {
					t.Errorf("%s over %s tells users apart: %s -> %q, %s -> %q, %s -> %q", method, transport,
						targets[0], got[targets[0]], targets[1], got[targets[1]], targets[2], got[targets[2]])
					break
				}
			}
		}
	}
}

// enumProbe sends one request of method about user from p and returns the
// final status line it got ("no answer" after 6 s), answering for bob's
// phone what reaches it meanwhile.
func enumProbe(t *testing.T, p, bob *siptest.Phone, method, user string) string {
	t.Helper()
	aor := "sip:" + user + "@switchboard.local"
	var m *siptest.Msg
	if method == "REGISTER" {
		m = p.Request("REGISTER", "sip:switchboard.local")
		m.Set("From", "<"+aor+">;tag="+siptest.Rand(4))
		m.Set("To", "<"+aor+">")
		m.Set("Contact", "<sip:"+user+"@"+p.Addr().String()+">")
		m.Set("Call-ID", siptest.Rand(8)+"@enum")
		m.Set("CSeq", "1 REGISTER")
	} else {
		m = p.Request(method, aor)
	}
	switch method {
	case "INVITE":
		m.Set("Content-Type", "application/sdp")
		m.Body = sdp(p, 42000)
	case "MESSAGE":
		m.Set("Content-Type", "text/plain")
		m.Body = "hi"
	}
	p.Send(m)
	deadline := time.Now().Add(6 * time.Second)
	for time.Now().Before(deadline) {
		if msg, ok := p.TryWait(siptest.IsResponseTo(m, 200, 699), 20*time.Millisecond); ok {
			res := msg.(*gosip.Response)
			if method == "INVITE" {
				p.Send(siptest.Ack(m, res))
			}
			return fmt.Sprintf("%d %s", res.StatusCode, res.Reason)
		}
		// bob's phone answers what the switch relays to it.
		if msg, ok := bob.TryWait(siptest.IsRequest(""), 5*time.Millisecond); ok {
			req := msg.(*gosip.Request)
			switch {
			case req.IsAck():
			case req.IsInvite():
				bob.Reply(req, 486, "Busy Here")
			default:
				bob.Reply(req, 200, "OK")
			}
		}
	}
	return "no answer"
}

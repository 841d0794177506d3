package registrar

import (
	"strings"
	"testing"
	"time"

	gosip "github.com/emiago/sipgo/sip"

	"github.com/switchboard/switchboard/internal/natdetect"
	"github.com/switchboard/switchboard/internal/siptest"
)

const testInstance = "<urn:uuid:00000000-0000-1000-8000-000a95a0e128>"

// TestRegisterSplitPortsTrusted is the case in the registrar: a
// REGISTER sent from one port for a Contact on another (SIPp load setups,
// third-party registration), with a Via that matches the source, is not
// taken as NAT: calls go to the Contact.
func TestRegisterSplitPortsTrusted(t *testing.T) {
	for _, tc := range []struct {
		name    string
		rule    natdetect.Rule
		contact string
		nat     bool
	}{
		{"loopback contact on another port", 0, "sip:alice@127.0.0.1:5092", false},
		{"private contact of another host", 0, "sip:alice@10.11.2.2:5060", true},
		{"private contact, detection off", mustRule(t), "sip:alice@10.11.2.2:5060", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{NATDetect: tc.rule})
			alice := h.phone("alice")
			m := alice.Register(3600)
			m.Set("Contact", "<"+tc.contact+">")
			h.mustRegister(alice, m)
			bs := h.r.Location().Lookup("alice")
			if len(bs) != 1 || bs[0].NAT != tc.nat {
				t.Fatalf("bindings %+v: want one with NAT=%v", bs, tc.nat)
			}
			if got := h.r.Location().NATCount(); got != map[bool]int{false: 0, true: 1}[tc.nat] {
				t.Errorf("NATCount %d", got)
			}
		})
	}
}

func mustRule(t *testing.T, tests ...string) natdetect.Rule {
	t.Helper()
	r, err := natdetect.Parse(tests)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestOutboundFlowReplaced registers an RFC 5626 flow over TCP, then the
// same instance and reg-id over a new connection with another Contact URI
// while the first connection is still open: one binding remains, on the
// new flow, and the 200s carry Require: outbound, Flow-Timer and the
// instance and reg-id (RFC 5626 §6). Closing the old connection then
// leaves the new binding alone.
func TestOutboundFlowReplaced(t *testing.T) {
	h := newHarness(t, Config{FlowTimer: 25 * time.Second})
	h.run()
	alice := h.phone("alice")
	flow := func(source, contact string, cseq int) *Binding {
		t.Helper()
		m := alice.Register(3600)
		m.Set("Contact", "<"+contact+`>;reg-id=1;+sip.instance="`+testInstance+`"`)
		m.Set("Supported", "outbound, path")
		via := "SIP/2.0/TCP " + source + ";branch=z9hG4bK" + strings.Repeat("x", cseq) + ";rport"
		m.Set("Via", via)
		res := h.doFrom(source, "TCP", m)
		wantStatus(t, res, 401)
		m = alice.Authenticate(m, res, "MD5")
		m.Set("Via", via+"y")
		res = h.doFrom(source, "TCP", m)
		wantStatus(t, res, 200)
		if v := headerValues(res, "Require"); len(v) != 1 || v[0] != "outbound" {
			t.Errorf("200 Require %q, want outbound", v)
		}
		if v := headerValues(res, "Flow-Timer"); len(v) != 1 || v[0] != "25" {
			t.Errorf("200 Flow-Timer %q, want 25", v)
		}
		if v := headerValues(res, "Supported"); len(v) != 1 || v[0] != "outbound" {
			t.Errorf("200 Supported %q, want outbound", v)
		}
		cs := contacts(res)
		want := "<" + contact + `>;expires=3600;+sip.instance="` + testInstance + `";reg-id=1`
		if len(cs) != 1 || cs[0] != want {
			t.Fatalf("200 lists %q, want [%q]", cs, want)
		}
		bs := h.r.Location().Lookup("alice")
		if len(bs) != 1 {
			t.Fatalf("%d bindings, want 1: %+v", len(bs), bs)
		}
		return &bs[0]
	}
	first := flow("192.0.2.10:40001", "sip:alice@10.0.0.9:5060;transport=tcp", 1)
	if first.RegID != 1 || first.Instance != testInstance || !first.NAT || first.Source.String() != "192.0.2.10:40001" {
		t.Fatalf("first flow binding %+v", first)
	}
	second := flow("192.0.2.10:40002", "sip:alice@10.0.0.9:5070;transport=tcp", 2)
	if second.Source.String() != "192.0.2.10:40002" || second.Contact != "sip:alice@10.0.0.9:5070;transport=tcp" {
		t.Fatalf("after the new flow, binding %+v", second)
	}
	if h.r.HasFlow("TCP", first.Source) || !h.r.HasFlow("TCP", second.Source) {
		t.Errorf("flows: old %v new %v, want only the new one", h.r.HasFlow("TCP", first.Source), h.r.HasFlow("TCP", second.Source))
	}
	h.r.DropFlow("TCP", first.Source)
	if bs := h.r.Location().Lookup("alice"); len(bs) != 1 || bs[0].Source != second.Source {
		t.Fatalf("closing the old connection took the new flow's binding: %+v", bs)
	}

	// Persisted under its new key: a restart (which drops connection
	// bindings) and a UDP flow survive with instance and reg-id.
	m := alice.Register(3600)
	m.Set("Contact", `<sip:alice@10.0.0.9:5080>;reg-id=2;+sip.instance="`+testInstance+`"`)
	res, _ := h.register(alice, m, "MD5")
	wantStatus(t, res, 200)
	h.shutdown()
	h.open(Config{})
	bs := h.r.Location().Lookup("alice")
	if len(bs) != 1 || bs[0].RegID != 2 || bs[0].Instance != testInstance {
		t.Fatalf("after restart: %+v, want the UDP flow with reg-id 2", bs)
	}
}

// TestOutboundRefusals checks RFC 5626 §6's refusals and RFC 3261
// §8.2.2.3's 420 for a Require the registrar does not support.
func TestOutboundRefusals(t *testing.T) {
	h := newHarness(t, Config{})
	alice := h.phone("alice")
	for _, tc := range []struct {
		name    string
		headers map[string]string
		contact string
		want    int
	}{
		{"two flows in one REGISTER", nil,
			`<sip:alice@10.0.0.9:5060>;reg-id=1;+sip.instance="` + testInstance + `", <sip:alice@10.0.0.9:5062>;reg-id=2;+sip.instance="` + testInstance + `"`, 400},
		{"reg-id 0", nil, `<sip:alice@10.0.0.9:5060>;reg-id=0;+sip.instance="` + testInstance + `"`, 400},
		{"unknown Require", map[string]string{"Require": "outbound, 100rel"}, "<sip:alice@10.0.0.9:5060>", 420},
		{"reg-id without instance is plain", nil, "<sip:alice@10.0.0.9:5060>;reg-id=1", 200},
		{"Require outbound", map[string]string{"Require": "outbound"}, `<sip:alice@10.0.0.9:5064>;reg-id=1;+sip.instance="` + testInstance + `"`, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := alice.Register(3600)
			m.Set("Contact", tc.contact)
			for k, v := range tc.headers {
				m.Set(k, v)
			}
			res, _ := h.register(alice, m, "MD5")
			wantStatus(t, res, tc.want)
			if tc.want == 420 {
				if v := headerValues(res, "Unsupported"); len(v) != 1 || v[0] != "100rel" {
					t.Errorf("420 Unsupported %q, want 100rel", v)
				}
			}
		})
	}
	// Through a proxy that does not keep flows (two Vias, no Path;ob): 439.
	m := alice.Register(3600)
	m.Set("Contact", `<sip:alice@10.0.0.9:5060>;reg-id=1;+sip.instance="`+testInstance+`"`)
	viaEdge := func(m *siptest.Msg) *gosip.Response {
		t.Helper()
		res := h.do(alice, m)
		wantStatus(t, res, 401)
		m = alice.Authenticate(m, res, "MD5")
		m.Prepend("Via", "SIP/2.0/UDP 192.0.2.99:5060;branch=z9hG4bKedge"+siptest.Rand(6))
		return h.do(alice, m)
	}
	wantStatus(t, viaEdge(m), 439)
	// The same through an edge proxy that keeps flows (RFC 5626 §5.1).
	m = alice.Retry(m)
	m.Del("Authorization")
	m.Set("Path", "<sip:192.0.2.99;lr;ob>")
	wantStatus(t, viaEdge(m), 200)
}

// TestOutboundTwoFlows registers one instance over two flows (reg-id 1 and
// 2, the same Contact, as RFC 5626 §4.2 has a UA do): both bindings are
// kept and listed, and the proxy's Lookup offers only the one registered
// last, so a request reaches the instance once (§5.3).
func TestOutboundTwoFlows(t *testing.T) {
	h := newHarness(t, Config{})
	alice := h.phone("alice")
	for i, src := range []string{"192.0.2.10:40001", "192.0.2.10:40002"} {
		m := alice.Register(3600)
		m.Set("Contact", `<sip:alice@10.0.0.9:5060;transport=tcp>;reg-id=`+string(rune('1'+i))+`;+sip.instance="`+testInstance+`"`)
		via := "SIP/2.0/TCP " + src + ";branch=z9hG4bKtwo" + src[len(src)-1:] + ";rport"
		m.Set("Via", via)
		res := h.doFrom(src, "TCP", m)
		wantStatus(t, res, 401)
		m = alice.Authenticate(m, res, "MD5")
		m.Set("Via", via+"x")
		res = h.doFrom(src, "TCP", m)
		wantStatus(t, res, 200)
		if n := len(contacts(res)); n != i+1 {
			t.Fatalf("flow %d: 200 lists %d bindings, want %d", i+1, n, i+1)
		}
	}
	if n := len(h.r.Location().Lookup("alice")); n != 2 {
		t.Fatalf("%d bindings, want both flows", n)
	}
	bs, _, err := h.r.Lookup(h.ctx, "alice")
	if err != nil || len(bs) != 1 || bs[0].RegID != 2 || bs[0].Source.String() != "192.0.2.10:40002" {
		t.Fatalf("Lookup %+v, %v: want only the flow registered last (reg-id 2)", bs, err)
	}
}

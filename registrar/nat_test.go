package registrar

import (
	"testing"
	"time"
)

// TestUnreachable checks what the proxy's keep-alives rely on: NATBindings
// lists the UDP bindings behind NAT (not trusted ones, not flows), and
// Unreachable removes one only if the UA has not registered again since it
// was read.
func TestUnreachable(t *testing.T) {
	h := newHarness(t, Config{})
	now := time.Now()
	h.r.now = func() time.Time { return now }
	alice, bob := h.phone("alice"), h.phone("bob")
	behindNAT := func() {
		m := alice.Register(3600)
		m.Set("Contact", "<sip:alice@10.9.9.9:5060>")
		h.mustRegister(alice, m)
	}
	behindNAT()
	h.mustRegister(bob, bob.Register(3600)) // trusted Contact
	m := alice.Register(3600)
	m.Set("Contact", `<sip:alice@10.9.9.9:5062>;reg-id=1;+sip.instance="`+testInstance+`"`)
	h.mustRegister(alice, m) // a flow: its UA keeps it alive

	bs := h.r.NATBindings()
	if len(bs) != 1 || bs[0].Contact != "sip:alice@10.9.9.9:5060" {
		t.Fatalf("NATBindings %+v, want alice's plain binding only", bs)
	}
	if got := h.r.Location().NATCount(); got != 2 {
		t.Errorf("NATCount %d, want 2 (the flow is behind NAT too)", got)
	}
	stale := bs[0]
	now = now.Add(time.Second)
	behindNAT() // registered again meanwhile
	if h.r.Unreachable(stale) {
		t.Fatalf("a binding refreshed after it was read was removed")
	}
	fresh := h.r.NATBindings()[0]
	if !h.r.Unreachable(fresh) {
		t.Fatalf("Unreachable did not remove %+v", fresh)
	}
	if n := len(h.r.NATBindings()); n != 0 {
		t.Errorf("%d NAT bindings left", n)
	}
	if got := h.r.Location().NATCount(); got != 1 {
		t.Errorf("NATCount %d after the removal, want 1", got)
	}
}

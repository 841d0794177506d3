package trunk

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	gosip "github.com/emiago/sipgo/sip"

	"github.com/switchboard/switchboard/internal/sipstatus"
	"github.com/switchboard/switchboard/sip"
)

// classes is a ClassLookup from a map (national for anyone else).
type classes map[string]string

func (c classes) CallingClass(_ context.Context, user string) (string, error) {
	if cl, ok := c[user]; ok {
		return cl, nil
	}
	return ClassNational, nil
}

func newTrunks(t *testing.T, cfg Config) *Trunks {
	t.Helper()
	if cfg.Classes == nil {
		cfg.Classes = classes{"ivan": ClassInternational, "ingrid": ClassInternal}
	}
	cfg.Domain = "switchboard.local"
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	tr, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// request parses an INVITE (or another method) to ruri from user.
func request(t *testing.T, method, ruri, from string, extra ...string) *gosip.Request {
	t.Helper()
	text := method + " " + ruri + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKtest\r\n" +
		"From: <" + from + ">;tag=abc\r\nTo: <" + ruri + ">\r\nCall-ID: c1@test\r\nCSeq: 1 " + method + "\r\n" +
		strings.Join(extra, "") + "Content-Length: 0\r\n\r\n"
	msg, err := gosip.ParseMessage([]byte(text))
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	return msg.(*gosip.Request)
}

// refusal asserts err is a status error of code whose Warning mentions text.
func refusal(t *testing.T, err error, code int, text string) {
	t.Helper()
	var se *sipstatus.Error
	if !errors.As(err, &se) {
		t.Fatalf("got %v, want a %d", err, code)
	}
	if se.Code != code {
		t.Fatalf("status %d (%v), want %d", se.Code, err, code)
	}
	if text == "" {
		return
	}
	for _, h := range se.Headers {
		if strings.EqualFold(h.Name(), "Warning") && strings.HasPrefix(h.Value(), `399 switchboard.local "`) && strings.Contains(h.Value(), text) {
			return
		}
	}
	t.Errorf("%d without a Warning saying %q: %v", code, text, se.Headers)
}

func TestOutboundRoutes(t *testing.T) {
	tr := newTrunks(t, validConfig())
	ctx := context.Background()
	for _, c := range []struct {
		user, ruri string
		number     string
		trunks     string
	}{
		{"alice", "sip:030%201234567@switchboard.local", "+49301234567", "carrier1,carrier2"},
		{"alice", "sip:004930123@switchboard.local", "+4930123", "carrier1,carrier2"},
		{"alice", "sip:+49301234567@elsewhere.example;user=phone", "+49301234567", "carrier1,carrier2"},
		{"alice", "tel:+49301234567", "+49301234567", "carrier1,carrier2"},
		{"ivan", "sip:+441234567@switchboard.local", "+441234567", "carrier2"},
		{"ivan", "sip:0044 1234567@192.0.2.7", "+441234567", "carrier2"}, // straight at a trunk: dial plan all the same
	} {
		req := request(t, "INVITE", strings.ReplaceAll(c.ruri, " ", "%20"), "sip:"+c.user+"@switchboard.local")
		local := strings.Contains(c.ruri, "@switchboard.local")
		oc, err := tr.Outbound(ctx, c.user, req, local)
		if err != nil || oc == nil {
			t.Fatalf("%s → %s: %v, %v", c.user, c.ruri, oc, err)
		}
		var names []string
		for _, l := range oc.Legs {
			names = append(names, l.Trunk)
		}
		if oc.Number != c.number || strings.Join(names, ",") != c.trunks {
			t.Errorf("%s: number %s over %v; want %s over %s", c.ruri, oc.Number, names, c.number, c.trunks)
		}
		oc.Release()
	}
	// Not numbers, or not ours to route: the proxy goes on without trunks.
	for _, c := range []struct {
		ruri  string
		local bool
	}{{"sip:bob@switchboard.local", true}, {"sip:1234@switchboard.local", true}, {"sip:+4930123@elsewhere.example", false}} {
		oc, err := tr.Outbound(ctx, "alice", request(t, "INVITE", c.ruri, "sip:alice@switchboard.local"), c.local)
		if oc != nil || err != nil {
			t.Errorf("%s: %v, %v; want nil, nil", c.ruri, oc, err)
		}
	}
	// A SIP address at a trunk that is no number.
	_, err := tr.Outbound(ctx, "alice", request(t, "INVITE", "sip:support@192.0.2.7", "sip:alice@switchboard.local"), false)
	refusal(t, err, 403, "dial plan")
	// No trunks configured: nothing is routed.
	none := newTrunks(t, Config{})
	if oc, err := none.Outbound(ctx, "alice", request(t, "INVITE", "sip:0301234567@switchboard.local", "sip:alice@x"), true); oc != nil || err != nil {
		t.Errorf("no trunks: %v, %v", oc, err)
	}
}

func TestOutboundLeg(t *testing.T) {
	tr := newTrunks(t, validConfig())
	ctx := context.Background()
	oc, err := tr.Outbound(ctx, "alice", request(t, "INVITE", "sip:0301234567@switchboard.local", "sip:alice@switchboard.local"), true)
	if err != nil {
		t.Fatal(err)
	}
	defer oc.Release()
	l := oc.Legs[0]
	if got := l.URI.String(); got != "sip:+49301234567@sip.carrier.example:5060;user=phone" {
		t.Errorf("Request-URI %s", got)
	}
	if l.Dest != "sip.carrier.example:5060" || l.Transport != "UDP" || l.Username != "u1" || l.Password != "p1" || l.Timeout != DefaultTimeout {
		t.Errorf("leg %+v", l)
	}
	// alice has a number of her own: the carrier is shown it.
	if got := l.Identity.String(); got != "sip:+4930123456@sip.carrier.example" {
		t.Errorf("alice presented as %s", got)
	}
	// dave has none: the trunk's caller_id, else dave as he is.
	oc2, err := tr.Outbound(ctx, "dave", request(t, "INVITE", "sip:0301234567@switchboard.local", "sip:dave@switchboard.local"), true)
	if err != nil {
		t.Fatal(err)
	}
	defer oc2.Release()
	if a, b := oc2.Legs[0].Identity.User, oc2.Legs[1].Identity.User; a != "+4930999" || b != "dave" {
		t.Errorf("dave presented as %s on carrier1, %s on carrier2", a, b)
	}
	// carol shares +4930123457 with bob and may ask for it.
	oc3, err := tr.Outbound(ctx, "carol", request(t, "INVITE", "sip:0301234567@switchboard.local", "sip:carol@switchboard.local",
		"P-Preferred-Identity: <sip:+4930123457@switchboard.local>\r\n"), true)
	if err != nil {
		t.Fatal(err)
	}
	defer oc3.Release()
	if got := oc3.Legs[0].Identity.User; got != "+4930123457" {
		t.Errorf("carol presented as %s", got)
	}
	// max_calls: carrier1 takes 10.
	var rels []func()
	for i := 0; i < 10; i++ {
		rel, ok := l.Acquire()
		if !ok {
			t.Fatalf("call %d refused", i+1)
		}
		rels = append(rels, rel)
	}
	if _, ok := l.Acquire(); ok {
		t.Error("an 11th call over carrier1 (max_calls 10)")
	}
	rels[0]()
	rels[0]() // twice is harmless
	if rel, ok := l.Acquire(); !ok {
		t.Error("a slot freed is not reused")
	} else {
		rel()
	}
	for _, r := range rels[1:] {
		r()
	}
}

func TestOutboundRefusals(t *testing.T) {
	tr := newTrunks(t, validConfig())
	ctx := context.Background()
	call := func(user, number string) (*sip.OutboundCall, error) {
		return tr.Outbound(ctx, user, request(t, "INVITE", "sip:"+number+"@switchboard.local", "sip:"+user+"@switchboard.local"), true)
	}
	_, err := call("ingrid", "0301234567")
	refusal(t, err, 403, "calling class internal")
	_, err = call("alice", "00441234567")
	refusal(t, err, 403, "calling class national")
	for _, u := range []string{"alice", "ivan"} {
		_, err = call(u, "0900123456")
		refusal(t, err, 403, "+49900123456 is a blocked destination")
		_, err = call(u, "+8821234567")
		refusal(t, err, 403, "blocked")
	}
	if oc, err := call("ivan", "00441234567"); err != nil {
		t.Errorf("international caller: %v", err)
	} else {
		oc.Release()
	}
	// No route: a number only an unrouted country has.
	cfg := validConfig()
	cfg.Dialplan.Routes = cfg.Dialplan.Routes[:1]
	tr2 := newTrunks(t, cfg)
	_, err = tr2.Outbound(ctx, "ivan", request(t, "INVITE", "sip:00441234567@switchboard.local", "sip:ivan@switchboard.local"), true)
	refusal(t, err, 404, "no route")
	_, err = tr2.Outbound(ctx, "ivan", request(t, "INVITE", "tel:+", "sip:ivan@switchboard.local"), false)
	refusal(t, err, 484, "")
}

func TestCallsPerUser(t *testing.T) {
	tr := newTrunks(t, validConfig())
	ctx := context.Background()
	call := func(user string) (*sip.OutboundCall, error) {
		return tr.Outbound(ctx, user, request(t, "INVITE", "sip:0301234567@switchboard.local", "sip:"+user+"@switchboard.local"), true)
	}
	a, err := call("alice")
	if err != nil {
		t.Fatal(err)
	}
	b, err := call("alice")
	if err != nil {
		t.Fatal(err)
	}
	_, err = call("alice")
	refusal(t, err, 403, "limit calls_per_user (2) reached")
	if c, err := call("bob"); err != nil {
		t.Errorf("bob refused for alice's calls: %v", err)
	} else {
		c.Release()
	}
	a.Release()
	a.Release() // twice is harmless
	c, err := call("alice")
	if err != nil {
		t.Fatalf("after a call ended: %v", err)
	}
	b.Release()
	c.Release()
}

func TestExternalCallsPerHour(t *testing.T) {
	cfg := validConfig()
	cfg.Limits.ExternalCallsPerHour = 3
	tr := newTrunks(t, cfg)
	now := time.Unix(1_700_000_000, 0)
	tr.users.now = func() time.Time { return now }
	ctx := context.Background()
	call := func() error {
		oc, err := tr.Outbound(ctx, "alice", request(t, "INVITE", "sip:0301234567@switchboard.local", "sip:alice@switchboard.local"), true)
		if err == nil {
			oc.Release()
		}
		return err
	}
	for i := 0; i < 3; i++ {
		if err := call(); err != nil {
			t.Fatalf("call %d: %v", i+1, err)
		}
		now = now.Add(10 * time.Minute)
	}
	refusal(t, call(), 403, "limit external_calls_per_hour (3) reached")
	// A refused call does not count: the window slides from the first call.
	now = now.Add(30*time.Minute + time.Second)
	if err := call(); err != nil {
		t.Errorf("an hour after the first call: %v", err)
	}
	refusal(t, call(), 403, "external_calls_per_hour")
}

func TestInbound(t *testing.T) {
	cfg := validConfig()
	cfg.Trunks[1].MaxCalls = 1
	tr := newTrunks(t, cfg)
	ic, err := tr.Inbound("carrier2", request(t, "INVITE", "sip:+4930123456@192.0.2.1", "sip:+4917012345@192.0.2.7"))
	if err != nil {
		t.Fatal(err)
	}
	if ic.Number != "+4930123456" || strings.Join(ic.Users, ",") != "alice" {
		t.Errorf("inbound %+v", ic)
	}
	// The trunk is full (max_calls 1) until that call ends.
	_, err = tr.Inbound("carrier2", request(t, "INVITE", "sip:+4930123456@192.0.2.1", "sip:+4917012345@192.0.2.7"))
	refusal(t, err, 503, "max_calls")
	ic.Release()
	// Carriers' forms: without '+', and (registration trunks) in To only.
	ic, err = tr.Inbound("carrier2", request(t, "INVITE", "sip:4930123457@192.0.2.1", "sip:x@192.0.2.7"))
	if err != nil || strings.Join(ic.Users, ",") != "bob,carol" {
		t.Fatalf("4930123457: %+v, %v", ic, err)
	}
	ic.Release()
	req := request(t, "INVITE", "sip:u1@192.0.2.1:5060", "sip:x@192.0.2.7")
	req.To().Address.User = "+4930123456"
	if ic, err = tr.Inbound("carrier2", req); err != nil || ic.Users[0] != "alice" {
		t.Fatalf("number in To: %+v, %v", ic, err)
	}
	ic.Release()
	_, err = tr.Inbound("carrier2", request(t, "INVITE", "sip:+4930000000@192.0.2.1", "sip:x@192.0.2.7"))
	refusal(t, err, 404, "")
}

func TestCarrier(t *testing.T) {
	tr := newTrunks(t, validConfig())
	for src, want := range map[string]string{
		"198.51.100.9:5060": "carrier1", "192.0.2.7:5060": "carrier2", "192.0.2.7:40000": "carrier2",
		"192.0.2.8:5060": "", "127.0.0.1:5060": "", "[::ffff:192.0.2.7]:5060": "carrier2",
	} {
		if got := tr.Carrier(netip.MustParseAddrPort(src), "UDP"); got != want {
			t.Errorf("Carrier(%s) = %q, want %q", src, got, want)
		}
	}
}

// TestLimitLoggedOncePerWindow: a limit reached again and again is logged
// once per window per subject; each refusal is counted.
func TestLimitLoggedOncePerWindow(t *testing.T) {
	var buf strings.Builder
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	}), nil))
	cfg := validConfig()
	cfg.Logger = log
	reg := prometheus.NewRegistry()
	cfg.Metrics = reg
	tr := newTrunks(t, cfg)
	now := time.Unix(1_700_000_000, 0)
	tr.rep.now = func() time.Time { return now }
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		_, err := tr.Outbound(ctx, "alice", request(t, "INVITE", "sip:0900123456@switchboard.local", "sip:alice@switchboard.local"), true)
		refusal(t, err, 403, "blocked")
	}
	_, _ = tr.Outbound(ctx, "bob", request(t, "INVITE", "sip:0900123456@switchboard.local", "sip:bob@switchboard.local"), true)
	now = now.Add(reportInterval + time.Second)
	_, _ = tr.Outbound(ctx, "alice", request(t, "INVITE", "sip:0900123456@switchboard.local", "sip:alice@switchboard.local"), true)
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	if n := strings.Count(out, `msg="call limit reached" component=trunk limit=blocked subject=alice`); n != 2 {
		t.Errorf("%d log lines for alice, want 2 (one per window):\n%s", n, out)
	}
	if n := strings.Count(out, "subject=bob"); n != 1 {
		t.Errorf("%d log lines for bob, want 1", n)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got float64
	for _, mf := range mfs {
		if mf.GetName() != "switchboard_trunk_limit_refusals_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "limit" && l.GetValue() == limitBlocked {
					got = m.GetCounter().GetValue()
				}
			}
		}
	}
	if got != 7 {
		t.Errorf("refusals counted %v, want 7", got)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

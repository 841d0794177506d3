package sip

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gosip "github.com/emiago/sipgo/sip"

	"github.com/switchboard/switchboard/internal/fielderr"
	"github.com/switchboard/switchboard/internal/natdetect"
	"github.com/switchboard/switchboard/registrar"
)

// Keep-alive methods (NATConfig.KeepaliveMethod).
const (
	// KeepaliveOptions probes with an OPTIONS request (Kamailio's
	// sipping): the UA answers, so a binding that stops answering can be
	// removed.
	KeepaliveOptions = "options"
	// KeepaliveCRLF probes with a CRLFCRLF datagram (Kamailio's natping
	// with a payload): four bytes that refresh the NAT mapping, but that
	// nothing answers over UDP, so unreachable bindings are never found.
	KeepaliveCRLF = "crlf"
)

// NATConfig is how the switch treats phones behind NAT.
type NATConfig struct {
	// Detect is the evidence that a UA is behind NAT (natdetect.Rule),
	// applied to the Contacts of dialog-forming requests and responses
	// (an alias parameter routes in-dialog requests to the source). The
	// registrar applies the same rule to REGISTERs (registrar.Config).
	// The zero value is natdetect.Default.
	Detect natdetect.Rule
	// KeepaliveInterval is how often each UDP binding behind NAT is
	// probed, from the listener it registered on to its source address,
	// so that its NAT keeps the mapping open for calls. 0 means 25s
	// (under the 30 s UDP timeout of many home routers); negative turns
	// keep-alives off. At least 1s.
	KeepaliveInterval time.Duration
	// KeepaliveMethod is KeepaliveOptions (default) or KeepaliveCRLF.
	KeepaliveMethod string
	// KeepaliveFailures is how many probes in a row may go unanswered
	// before the binding is removed as unreachable (OPTIONS only).
	// Default 3.
	KeepaliveFailures int
}

func (c *NATConfig) setDefaults() {
	if c.KeepaliveInterval == 0 {
		c.KeepaliveInterval = 25 * time.Second
	}
	if c.KeepaliveMethod == "" {
		c.KeepaliveMethod = KeepaliveOptions
	}
	if c.KeepaliveFailures == 0 {
		c.KeepaliveFailures = 3
	}
}

func (c *NATConfig) validate() error {
	switch {
	case c.KeepaliveInterval > 0 && c.KeepaliveInterval < time.Second:
		return fielderr.New("KeepaliveInterval", "%s: must be at least 1s (or off)", c.KeepaliveInterval)
	case c.KeepaliveMethod != KeepaliveOptions && c.KeepaliveMethod != KeepaliveCRLF:
		return fielderr.New("KeepaliveMethod", "%q is not options or crlf", c.KeepaliveMethod)
	case c.KeepaliveFailures < 1:
		return fielderr.New("KeepaliveFailures", "%d: must be at least 1", c.KeepaliveFailures)
	}
	return nil
}

// NATStats counts the switch's NAT keep-alive work.
type NATStats struct {
	KeepalivesSent   uint64 // probes sent
	KeepalivesFailed uint64 // OPTIONS probes that went unanswered for an interval
	Unreachable      uint64 // bindings removed because their probes went unanswered
	STUNAnswered     uint64 // STUN Binding requests answered on SIP UDP ports (RFC 5626 §8.4)
}

// NATStats returns the keep-alive and STUN counters.
func (s *Server) NATStats() NATStats {
	k := s.keeper
	return NATStats{
		KeepalivesSent: k.sent.Load(), KeepalivesFailed: k.failed.Load(),
		Unreachable: k.removed.Load(), STUNAnswered: k.stun.Load(),
	}
}

// keepaliveBranch starts the Via branch of our OPTIONS probes: responses
// to them are recognised by it.
const keepaliveBranch = gosip.RFC3261BranchMagicCookie + "sbka"

// keeper keeps the NAT mappings of UDP bindings behind NAT open (Kamailio
// nathelper's natping/sipping; RFC 5626 §3.5 puts this on the UA, but most
// UAs do nothing of the kind), and removes the bindings whose probes go
// unanswered. One goroutine (run) owns the probing; responses are matched
// from sipgo's goroutines (answer) under mu.
//
// Work is spread over the interval: the bindings are read once per
// interval and split by a hash of their identity into one bucket per
// second, so each binding is probed once per interval, always in the same
// second of it, and each tick sends one bucket.
type keeper struct {
	s        *Server
	interval time.Duration
	options  bool
	failures int

	mu       sync.Mutex
	state    map[string]*probe // by binding
	branches map[string]*probe // unanswered OPTIONS by Via branch

	sent, failed, removed, stun atomic.Uint64
}

// probe is what the keeper knows of one binding.
type probe struct {
	b        registrar.Binding
	branch   string // branch of the OPTIONS unanswered so far ("" when none)
	failures int    // probes unanswered in a row
	round    int    // last round that listed the binding
}

func newKeeper(s *Server, cfg NATConfig) *keeper {
	return &keeper{
		s: s, interval: cfg.KeepaliveInterval, options: cfg.KeepaliveMethod == KeepaliveOptions,
		failures: cfg.KeepaliveFailures, state: map[string]*probe{}, branches: map[string]*probe{},
	}
}

// startKeepaliveLocked starts the keeper's goroutine when keep-alives are
// on; Close stops it.
func (s *Server) startKeepaliveLocked() {
	if s.keeper.interval > 0 {
		s.untilCloseLocked(s.keeper.run)
	}
}

// run probes until stop is closed.
func (k *keeper) run(stop <-chan struct{}) {
	steps := max(1, int(k.interval/time.Second))
	tick := time.NewTicker(k.interval / time.Duration(steps))
	defer tick.Stop()
	var buckets [][]registrar.Binding
	for round, step := 0, 0; ; step = (step + 1) % steps {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		if step == 0 {
			round++
			buckets = k.plan(round, steps)
		}
		k.probeAll(buckets[step])
	}
}

// plan reads the bindings to keep alive for a round and splits them into
// buckets, forgetting the bindings that are gone.
func (k *keeper) plan(round, steps int) [][]registrar.Binding {
	buckets := make([][]registrar.Binding, steps)
	bs := k.s.reg.NATBindings()
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, b := range bs {
		key := bindingKey(b)
		st := k.state[key]
		switch {
		case st == nil:
			st = &probe{b: b}
			k.state[key] = st
		case !st.b.Updated.Equal(b.Updated) || st.b.Source != b.Source:
			// Registered again: a fresh start (a new source has a
			// new mapping).
			st.b, st.failures = b, 0
		}
		st.round = round
		h := fnv.New32a()
		h.Write([]byte(key))
		i := h.Sum32() % uint32(steps)
		buckets[i] = append(buckets[i], b)
	}
	for key, st := range k.state {
		if st.round != round {
			delete(k.branches, st.branch)
			delete(k.state, key)
		}
	}
	return buckets
}

func bindingKey(b registrar.Binding) string { return b.AOR + "\x00" + b.Contact }

// probeAll probes each binding of a bucket, first counting the previous
// probe that went unanswered, and removes those that reached the limit.
func (k *keeper) probeAll(bucket []registrar.Binding) {
	type send struct {
		b      registrar.Binding
		branch string
	}
	var sends []send
	var dead []*probe
	k.mu.Lock()
	for _, b := range bucket {
		st := k.state[bindingKey(b)]
		if st == nil {
			continue
		}
		if st.branch != "" {
			delete(k.branches, st.branch)
			st.branch = ""
			st.failures++
			k.failed.Add(1)
		}
		if st.failures >= k.failures {
			dead = append(dead, st)
			delete(k.state, bindingKey(b))
			continue
		}
		sd := send{b: st.b}
		if k.options {
			sd.branch = keepaliveBranch + gosip.GenerateTagN(16)
			st.branch = sd.branch
			k.branches[sd.branch] = st
		}
		sends = append(sends, sd)
	}
	k.mu.Unlock()
	for _, st := range dead {
		if k.s.reg.Unreachable(st.b) {
			k.removed.Add(1)
			k.s.log.Info("binding removed: keep-alives unanswered", "aor", st.b.AOR, "contact", st.b.Contact,
				"source", st.b.Source.String(), "probes", st.failures, "interval", k.interval)
		}
	}
	for _, sd := range sends {
		if err := k.s.sendKeepalive(sd.b, sd.branch); err != nil {
			k.s.log.Debug("keep-alive not sent", "aor", sd.b.AOR, "source", sd.b.Source.String(), "error", err)
			continue
		}
		k.sent.Add(1)
	}
}

// answer takes a response to one of our OPTIONS probes (any status: the
// UA answered, so its NAT let the probe in) and reports whether it was one.
func (k *keeper) answer(res *gosip.Response) bool {
	v := res.Via()
	if v == nil {
		return false
	}
	br, _ := v.Params.Get("branch")
	if !strings.HasPrefix(br, keepaliveBranch) {
		return false
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if st := k.branches[br]; st != nil {
		delete(k.branches, br)
		st.branch, st.failures = "", 0
	}
	return true
}

// unhandledResponse is sipgo's handler for responses that match no client
// transaction: answers to keep-alive probes, else stray responses to
// forward (forwardStrayResponse).
func (s *Server) unhandledResponse(res *gosip.Response) {
	if s.keeper.answer(res) {
		return
	}
	s.forwardStrayResponse(res)
}

var crlfcrlf = []byte("\r\n\r\n")

// sendKeepalive sends one probe to b's source from the UDP listener b
// registered on: an OPTIONS with branch, or CRLFCRLF when branch is "".
func (s *Server) sendKeepalive(b registrar.Binding, branch string) error {
	if s.isClosed() {
		return errClosed
	}
	conn, out, err := s.udpListenerFor(b.Local, b.Source)
	if err != nil {
		return err
	}
	defer release(conn)
	payload := crlfcrlf
	if branch != "" {
		req, err := keepaliveRequest(b, out, branch)
		if err != nil {
			return err
		}
		payload = []byte(req.String())
	}
	_, err = conn.WriteTo(payload, net.UDPAddrFromAddrPort(b.Source))
	return err
}

// keepaliveRequest is the OPTIONS probe for b (RFC 3261 §11), sent over
// out: to the binding's Contact, from sip:keepalive@<our address>, as
// Kamailio's sipping_from names its pings.
func keepaliveRequest(b registrar.Binding, out iface, branch string) (*gosip.Request, error) {
	var ruri gosip.Uri
	if err := gosip.ParseUri(b.Contact, &ruri); err != nil {
		return nil, fmt.Errorf("contact %q: %w", b.Contact, err)
	}
	req := gosip.NewRequest(gosip.OPTIONS, ruri)
	req.AppendHeader(out.via(branch))
	mf := gosip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	from := &gosip.FromHeader{Address: gosip.Uri{Scheme: "sip", User: "keepalive", Host: out.adv}, Params: gosip.NewParams()}
	from.Params.Add("tag", gosip.GenerateTagN(10))
	req.AppendHeader(from)
	req.AppendHeader(&gosip.ToHeader{Address: ruri, Params: gosip.NewParams()})
	callID := gosip.CallIDHeader(gosip.GenerateTagN(16) + "@" + out.adv)
	req.AppendHeader(&callID)
	req.AppendHeader(&gosip.CSeqHeader{SeqNo: 1, MethodName: gosip.OPTIONS})
	req.AppendHeader(gosip.NewHeader("User-Agent", "switchboard"))
	req.SetBody(nil)
	return req, nil
}

var errNoUDPListener = errors.New("no UDP listener")

// udpListenerFor returns the UDP listener socket at local (where dst's
// REGISTER arrived), else the one dst last sent to (sipgo's pool remembers
// which listener each UDP source arrived on, for what passes through
// sipgo), else the first that reaches dst's family, with its interface as
// advertised to dst. The caller gives the connection back with release.
func (s *Server) udpListenerFor(local, dst netip.AddrPort) (*gosip.UDPConnection, iface, error) {
	tl := s.ua.TransportLayer()
	if local.IsValid() {
		if c, err := tl.GetConnection("udp", local.String()); err == nil {
			if uc, ok := c.(*gosip.UDPConnection); ok {
				if i, ok := s.udpIface(uc.PacketAddr, dst.Addr()); ok {
					return uc, i, nil
				}
			}
			release(c)
		}
	}
	if c, err := tl.GetConnection("udp", dst.String()); err == nil {
		if uc, ok := c.(*gosip.UDPConnection); ok {
			if i, ok := s.udpIface(uc.PacketAddr, dst.Addr()); ok {
				return uc, i, nil
			}
		}
		release(c)
	}
	i, ok := s.ifaceFor("udp", dst.String())
	if !ok {
		return nil, iface{}, errNoUDPListener
	}
	c, err := tl.GetConnection("udp", i.laddr.String())
	if err != nil {
		return nil, iface{}, fmt.Errorf("udp listener %s: %w", i.laddr.String(), err)
	}
	uc, ok := c.(*gosip.UDPConnection)
	if !ok {
		release(c)
		return nil, iface{}, errNoUDPListener
	}
	return uc, i, nil
}

// release gives back the reference a connection pool lookup took (a
// listener's socket is never closed by it).
func release(c gosip.Connection) { _, _ = c.TryClose() }

// udpIface returns the UDP interface whose socket is laddr (sipgo's name
// for it), advertised to dst.
func (s *Server) udpIface(laddr string, dst netip.Addr) (iface, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, i := range s.ifaces {
		if i.transport == "udp" && i.laddr.String() == laddr {
			return i.forFamily(dst.Unmap()), true
		}
	}
	return iface{}, false
}

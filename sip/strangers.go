package sip

import (
	"errors"
	"net/netip"
	"sync"
	"time"

	gosip "github.com/emiago/sipgo/sip"
	"golang.org/x/time/rate"
)

// errStranger is the reason a request from a party that is not a local user
// is refused while Config.ExternalCallers is off.
var errStranger = errors.New("requests from parties that are not local users are not accepted (security.external_callers)")

// errOverload is the reason for a 503 when the transaction cap is reached.
var errOverload = errors.New("too many transactions in progress")

// strangers limits what parties that are not local users may start when
// Config.ExternalCallers admits them: new requests per second per source IP
// and concurrent requests in progress (calls being set up, each holding
// relay ports) per source IP.
type strangers struct {
	rate  rate.Limit
	burst int
	max   int

	mu      sync.Mutex
	sources sourceTable[strangerEntry]
}

type strangerEntry struct {
	lim    *rate.Limiter
	active int
	seen   time.Time
}

// maxStrangerEntries bounds the table; past it the least useful entries
// (idle ones) are dropped, and while it stays full new sources are refused.
const maxStrangerEntries = 1 << 15

func newStrangers(perSecond float64, maxActive int) *strangers {
	st := &strangers{rate: rate.Limit(perSecond), burst: 5, max: maxActive}
	st.sources = newSourceTable(maxStrangerEntries,
		func(time.Time) *strangerEntry { return &strangerEntry{lim: rate.NewLimiter(st.rate, st.burst)} },
		func(e *strangerEntry, now time.Time) bool { return e.active == 0 && now.Sub(e.seen) > 10*time.Second })
	return st
}

// admit reserves a place for one request from src, or returns the status
// error to refuse it with. The caller calls release when the request is done.
func (st *strangers) admit(src netip.AddrPort) (release func(), err error) {
	ip := src.Addr().Unmap()
	now := time.Now()
	st.mu.Lock()
	defer st.mu.Unlock()
	e := st.sources.entry(ip, now)
	if e == nil {
		return nil, status(503, "Service Unavailable", errOverload, gosip.NewHeader("Retry-After", "30"))
	}
	e.seen = now
	if !e.lim.AllowN(now, 1) {
		return nil, status(503, "Service Unavailable", errors.New("too many requests from this source"), gosip.NewHeader("Retry-After", "5"))
	}
	if e.active >= st.max {
		return nil, status(486, "Busy Here", errors.New("too many calls in progress from this source"))
	}
	e.active++
	var once sync.Once
	return func() {
		once.Do(func() {
			st.mu.Lock()
			e.active--
			st.mu.Unlock()
		})
	}, nil
}

// sweep forgets sources with nothing in progress that were last seen long
// enough ago for their rate bucket to be full again.
func (st *strangers) sweep() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.sources.sweep(time.Now())
}

// admitStranger decides on an out-of-dialog request from a party that is
// neither a local user nor a trunk (known false). With
// Config.ExternalCallers off it is refused with 403 whatever it asks for,
// so that neither calls nor the answers to them tell a stranger which
// users exist; otherwise it is limited per source. A request that claims
// to come from a trunk (its From names the carrier) but does not come from
// the trunk's addresses is a stranger like any other. The returned release
// must be called when the request is done.
func (s *Server) admitStranger(req *gosip.Request, src netip.AddrPort, known bool) (func(), error) {
	if known {
		return func() {}, nil
	}
	if !s.cfg.ExternalCallers {
		s.Stats.Strangers.Add(1)
		return nil, status(403, "Forbidden", errStranger)
	}
	release, err := s.strangers.admit(src)
	if err != nil {
		s.Stats.Strangers.Add(1)
		return nil, err
	}
	return release, nil
}

package registrar

import (
	"context"
	"database/sql"
	"net/netip"
	"sort"
	"time"

	"github.com/switchboard/switchboard/internal/sqldb"
)

// What the operations console (package admin) reads of the registrar and
// asks of it: every registration, the bans of the Guard and lifting one.

// All returns copies of every unexpired binding, by AOR then contact.
func (l *Location) All() []Binding {
	now := l.now()
	l.mu.RLock()
	out := make([]Binding, 0, l.count)
	for _, list := range l.aors {
		for _, b := range list {
			if b.Expires.After(now) {
				out = append(out, *b)
			}
		}
	}
	l.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return bindingLess(&out[i], &out[j]) })
	return out
}

// bindingLess is All's order: by AOR, then contact.
func bindingLess(a, b *Binding) bool {
	if a.AOR != b.AOR {
		return a.AOR < b.AOR
	}
	return a.Contact < b.Contact
}

// Head returns how many bindings are in force and copies of the first n of
// them in All's order, without copying the others (the console's live view
// asks every second, and the location table may hold a million).
func (l *Location) Head(n int) (total int, first []Binding) {
	now := l.now()
	less := bindingLess
	// h is a max-heap of the n smallest seen so far: h[0] is the largest.
	h := make([]*Binding, 0, min(n, 1024))
	down := func(i int) {
		for {
			c := 2*i + 1
			if c >= len(h) {
				return
			}
			if c+1 < len(h) && less(h[c], h[c+1]) {
				c++
			}
			if !less(h[i], h[c]) {
				return
			}
			h[i], h[c] = h[c], h[i]
			i = c
		}
	}
	l.mu.RLock()
	for _, list := range l.aors {
		for _, b := range list {
			if !b.Expires.After(now) {
				continue
			}
			total++
			switch {
			case n <= 0:
			case len(h) < n:
				h = append(h, b)
				for i := len(h) - 1; i > 0 && less(h[(i-1)/2], h[i]); i = (i - 1) / 2 {
					h[i], h[(i-1)/2] = h[(i-1)/2], h[i]
				}
			case less(b, h[0]):
				h[0] = b
				down(0)
			}
		}
	}
	first = make([]Binding, len(h))
	for i, b := range h {
		first[i] = *b
	}
	l.mu.RUnlock()
	sort.Slice(first, func(i, j int) bool { return less(&first[i], &first[j]) })
	return total, first
}

// StoredBindings reads the unexpired bindings from the database, for
// readers such as the CLI while the switch is not running. Bindings made
// over connections are among them only while their switch runs.
func StoredBindings(ctx context.Context, db *sql.DB) ([]Binding, error) {
	if err := sqldb.Migrate(ctx, db, "bindings", bindingSchema); err != nil {
		return nil, err
	}
	return sqldb.Collect(ctx, db, "list bindings", func(rows *sql.Rows) (Binding, error) {
		var b Binding
		var exp, upd int64
		var src string
		var nat int
		err := rows.Scan(&b.AOR, &b.Contact, &exp, &src, &b.Transport, &nat, &b.UserAgent, &upd)
		b.Expires, b.NAT, b.Updated = time.Unix(exp, 0), nat != 0, time.Unix(upd, 0)
		b.Source, _ = netip.ParseAddrPort(src)
		return b, err
	}, `SELECT aor, contact, expires, source, transport, nat, user_agent, updated FROM bindings
		WHERE expires > ? ORDER BY aor, contact`, time.Now().Unix())
}

// Ban is one refusal of the Guard in force.
type Ban struct {
	// Kind is "source" (an IP address refused for every user) or "user"
	// (a user name refused from sources not known to it).
	Kind string `json:"kind"`
	// Key is the IP address or the user name.
	Key   string    `json:"key"`
	Until time.Time `json:"until"`
	// Failures is the count of failures that led to the ban.
	Failures int `json:"failures"`
}

// Bans returns the bans in force, sources first.
func (g *Guard) Bans() []Ban {
	if g == nil {
		return nil
	}
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []Ban
	for ip, e := range g.sources.m {
		if now.Before(e.until) {
			out = append(out, Ban{Kind: "source", Key: ip.String(), Until: e.until, Failures: e.failures})
		}
	}
	for user, e := range g.users.m {
		if now.Before(e.until) {
			out = append(out, Ban{Kind: "user", Key: user, Until: e.until, Failures: e.failures})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return out[i].Kind == "source"
		}
		return out[i].Key < out[j].Key
	})
	return out
}

// Lift ends the ban of key, an IP address or a user name, and clears its
// failures; it reports whether there was a ban.
func (g *Guard) Lift(key string) bool {
	if g == nil {
		return false
	}
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if ip, err := netip.ParseAddr(key); err == nil {
		ip = ip.Unmap()
		e := g.sources.m[ip]
		if e == nil || !now.Before(e.until) {
			return false
		}
		delete(g.sources.m, ip)
		return true
	}
	e := g.users.m[key]
	if e == nil || !now.Before(e.until) {
		return false
	}
	delete(g.users.m, key)
	return true
}

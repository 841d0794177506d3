package registrar

import (
	"context"
	"database/sql"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/google/btree"

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

// Head returns the number of bindings held (Count) and copies of the first
// n bindings in force in All's order. It walks the AORs in order (the
// Location's index of them) and stops after n, so that its cost does not
// grow with the table: the console's live view asks every second, and the
// table may hold a million. Like Kamailio's usrloc statistics, the number
// counts bindings that expired in the last moments until the purge (every
// 10 s) takes them out; the bindings returned are never expired ones.
func (l *Location) Head(n int) (total int, first []Binding) {
	now := l.now()
	l.mu.RLock()
	defer l.mu.RUnlock()
	total = l.count
	if n <= 0 {
		return total, nil
	}
	first = make([]Binding, 0, min(n, l.count))
	l.order.Ascend(func(aor string) bool {
		start := len(first)
		for _, b := range l.aors[aor] {
			if b.Expires.After(now) {
				first = append(first, *b)
			}
		}
		if len(first)-start > 1 {
			slices.SortFunc(first[start:], func(a, b Binding) int { return strings.Compare(a.Contact, b.Contact) })
		}
		return len(first) < n
	})
	return total, first[:min(n, len(first))]
}

// newAOROrder returns the Location's ordered index of AORs.
func newAOROrder() *btree.BTreeG[string] {
	// Degree 16: nodes of up to 31 strings (~500 bytes), as google/btree
	// suggests for in-memory trees.
	return btree.NewOrderedG[string](16)
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

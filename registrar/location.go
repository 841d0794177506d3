package registrar

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/btree"

	"github.com/switchboard/switchboard/internal/sqldb"
)

// Binding maps an address-of-record to one contact of a registered UA
// (RFC 3261 §10.3), together with how the UA was actually reached.
type Binding struct {
	AOR     string    // the user name; the AOR is sip:AOR@domain
	Contact string    // the Contact URI as the UA gave it
	Q       float64   // q-value, 0..1; 1 when the UA gave none
	Expires time.Time // when the binding lapses
	CallID  string
	CSeq    uint32
	// Source is where the REGISTER came from; Transport is how (UDP, TCP,
	// TLS, WS, WSS). A UA behind NAT, or on a connection, is reached there.
	Source    netip.AddrPort
	Transport string
	// Local is the listener the REGISTER arrived on, when known (the
	// proxy gives it as the request's destination): a UA behind NAT is
	// reached from there, the address its NAT mapping is for.
	Local netip.AddrPort
	// NAT is true when the REGISTER showed evidence of NAT (Config.NATDetect):
	// the UA is reached at Source, not at its Contact, and a UDP binding is
	// kept alive by the proxy's probes.
	NAT       bool
	UserAgent string
	Updated   time.Time
	// Instance and RegID are the UA's +sip.instance and reg-id (RFC 5626
	// §4.2) when the binding is a flow: one binding per AOR, instance and
	// reg-id, replaced when the UA registers over a new flow. RegID is 0
	// for a binding that is not a flow (RFC 3261 rules apply to it).
	Instance string
	RegID    int
}

// id names a binding within its AOR: its Contact, and for a flow its
// instance and reg-id (the primary key of the bindings table).
type bindingID struct {
	contact, instance string
	regID             int
}

func (b *Binding) id() bindingID { return bindingID{b.Contact, b.Instance, b.RegID} }

// ConnectionBound reports whether the binding can only be reached over the
// connection it registered on (TCP, TLS, WebSocket): such a binding ends when
// that connection closes.
func (b *Binding) ConnectionBound() bool {
	switch strings.ToUpper(b.Transport) {
	case "TCP", "TLS", "WS", "WSS":
		return true
	}
	return false
}

var bindingSchema = []string{
	`CREATE TABLE bindings (
		aor TEXT NOT NULL,
		contact TEXT NOT NULL,
		q INTEGER NOT NULL,
		expires INTEGER NOT NULL,
		call_id TEXT NOT NULL,
		cseq INTEGER NOT NULL,
		source TEXT NOT NULL,
		transport TEXT NOT NULL,
		nat INTEGER NOT NULL,
		user_agent TEXT NOT NULL,
		updated INTEGER NOT NULL,
		PRIMARY KEY (aor, contact)
	);
	CREATE INDEX bindings_expires ON bindings (expires);`,
	// RFC 5626 flows: a UA may register the same Contact over several
	// flows (one per reg-id), so instance and reg-id join the key.
	`ALTER TABLE bindings RENAME TO bindings_v1;
	CREATE TABLE bindings (
		aor TEXT NOT NULL,
		contact TEXT NOT NULL,
		q INTEGER NOT NULL,
		expires INTEGER NOT NULL,
		call_id TEXT NOT NULL,
		cseq INTEGER NOT NULL,
		source TEXT NOT NULL,
		transport TEXT NOT NULL,
		nat INTEGER NOT NULL,
		user_agent TEXT NOT NULL,
		updated INTEGER NOT NULL,
		instance TEXT NOT NULL DEFAULT '',
		reg_id INTEGER NOT NULL DEFAULT 0,
		local TEXT NOT NULL DEFAULT '',
		PRIMARY KEY (aor, contact, instance, reg_id)
	);
	INSERT INTO bindings (aor, contact, q, expires, call_id, cseq, source, transport, nat, user_agent, updated)
		SELECT aor, contact, q, expires, call_id, cseq, source, transport, nat, user_agent, updated FROM bindings_v1;
	DROP TABLE bindings_v1;
	CREATE INDEX bindings_expires ON bindings (expires);`,
}

type flowKey struct {
	transport string
	source    netip.AddrPort
}

// Location is the location service: bindings in memory, written behind to
// SQL in batched transactions by Run.
type Location struct {
	db  *sql.DB
	log *slog.Logger
	now func() time.Time

	mu   sync.RWMutex
	aors map[string][]*Binding
	// order holds the keys of aors in order, so that the console's live
	// view (Head) reads the first registrations without going through a
	// table that may hold a million. It changes only when an AOR gets its
	// first binding or loses its last: a re-registration does not touch it.
	order *btree.BTreeG[string]
	flows map[flowKey]map[*Binding]struct{}
	count int
	nat   int // bindings with NAT set

	writer *sqldb.BatchWriter
}

// NewLocation migrates the schema, drops stored bindings that expired or were
// bound to a connection (connections do not survive a restart), and loads the
// rest.
func NewLocation(ctx context.Context, db *sql.DB, log *slog.Logger) (*Location, error) {
	if err := sqldb.Migrate(ctx, db, "bindings", bindingSchema); err != nil {
		return nil, err
	}
	l := &Location{
		db: db, log: log, now: time.Now,
		aors:   make(map[string][]*Binding),
		order:  newAOROrder(),
		flows:  make(map[flowKey]map[*Binding]struct{}),
		writer: sqldb.NewBatchWriter(db, "bindings", 65536, log),
	}
	now := l.now()
	if _, err := db.ExecContext(ctx,
		`DELETE FROM bindings WHERE expires <= ? OR transport IN ('TCP', 'TLS', 'WS', 'WSS')`, now.Unix()); err != nil {
		return nil, fmt.Errorf("purge bindings: %w", err)
	}
	rows, err := db.QueryContext(ctx, `SELECT aor, contact, q, expires, call_id, cseq, source, transport, nat, user_agent, updated, instance, reg_id, local FROM bindings`)
	if err != nil {
		return nil, fmt.Errorf("load bindings: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var b Binding
		var q, exp, cseq, upd int64
		var src, local string
		var nat int
		if err := rows.Scan(&b.AOR, &b.Contact, &q, &exp, &b.CallID, &cseq, &src, &b.Transport, &nat, &b.UserAgent, &upd,
			&b.Instance, &b.RegID, &local); err != nil {
			return nil, fmt.Errorf("load bindings: %w", err)
		}
		b.Q, b.Expires, b.CSeq, b.NAT, b.Updated = float64(q)/1000, time.Unix(exp, 0), uint32(cseq), nat != 0, time.Unix(upd, 0)
		b.Source, _ = netip.ParseAddrPort(src)
		b.Local, _ = netip.ParseAddrPort(local)
		l.insertLocked(&b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load bindings: %w", err)
	}
	log.Info("bindings loaded", "count", l.count)
	return l, nil
}

// Lookup returns copies of the unexpired bindings of aor, highest q first.
func (l *Location) Lookup(aor string) []Binding {
	now := l.now()
	l.mu.RLock()
	bs := l.aors[aor]
	out := make([]Binding, 0, len(bs))
	for _, b := range bs {
		if b.Expires.After(now) {
			out = append(out, *b)
		}
	}
	l.mu.RUnlock()
	if len(out) > 1 {
		slices.SortStableFunc(out, func(a, b Binding) int { return cmp.Compare(b.Q, a.Q) })
	}
	return out
}

// Count returns the number of bindings held.
func (l *Location) Count() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.count
}

// NATCount returns the number of bindings held that are behind NAT.
func (l *Location) NATCount() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.nat
}

func natBindings(bs []*Binding) int {
	n := 0
	for _, b := range bs {
		if b.NAT {
			n++
		}
	}
	return n
}

// update applies fn to the bindings of aor under the lock. fn returns the new
// list, the bindings added or replaced (persisted) and those taken out (deleted,
// unless replaced by a changed binding of the same contact).
func (l *Location) update(aor string, fn func(cur []*Binding) (next []*Binding, changed []*Binding, removed []*Binding, err error)) error {
	l.mu.Lock()
	cur := l.aors[aor]
	next, changed, removed, err := fn(cur)
	if err != nil {
		l.mu.Unlock()
		return err
	}
	for _, b := range removed {
		l.unindexLocked(b)
	}
	for _, b := range changed {
		l.indexLocked(b)
	}
	l.count += len(next) - len(cur)
	l.nat += natBindings(next) - natBindings(cur)
	switch {
	case len(next) == 0:
		if len(cur) > 0 {
			l.order.Delete(aor)
		}
		delete(l.aors, aor)
	default:
		if len(cur) == 0 {
			l.order.ReplaceOrInsert(aor)
		}
		l.aors[aor] = next
	}
	ops := make([]sqldb.Op, 0, len(changed)+len(removed))
	for _, b := range removed {
		replaced := false
		for _, c := range changed {
			replaced = replaced || c.id() == b.id()
		}
		if !replaced {
			ops = append(ops, deleteBinding(b.AOR, b.id()))
		}
	}
	for _, b := range changed {
		ops = append(ops, putBinding(*b))
	}
	// Queued under the lock so that the database sees changes to one AOR in
	// the order they were made.
	for _, op := range ops {
		l.writer.Enqueue(op)
	}
	l.mu.Unlock()
	return nil
}

func (l *Location) insertLocked(b *Binding) {
	cur := l.aors[b.AOR]
	if len(cur) == 0 {
		l.order.ReplaceOrInsert(b.AOR)
	}
	l.aors[b.AOR] = append(cur, b)
	l.indexLocked(b)
	l.count++
	if b.NAT {
		l.nat++
	}
}

func (l *Location) indexLocked(b *Binding) {
	if !b.ConnectionBound() {
		return
	}
	k := flowKey{strings.ToUpper(b.Transport), b.Source}
	m := l.flows[k]
	if m == nil {
		m = make(map[*Binding]struct{})
		l.flows[k] = m
	}
	m[b] = struct{}{}
}

func (l *Location) unindexLocked(b *Binding) {
	k := flowKey{strings.ToUpper(b.Transport), b.Source}
	if m := l.flows[k]; m != nil {
		delete(m, b)
		if len(m) == 0 {
			delete(l.flows, k)
		}
	}
}

// HasFlow reports whether a binding was registered over the connection from
// source on transport: the switch reaches that UA over it, so it must stay
// open however quiet it is (CRLF keep-alives, RFC 5626 §3.5.1, may be all it carries).
func (l *Location) HasFlow(transport string, source netip.AddrPort) bool {
	k := flowKey{strings.ToUpper(transport), source}
	l.mu.RLock()
	defer l.mu.RUnlock()
	return len(l.flows[k]) > 0
}

// DropFlow removes every binding registered over the connection from source
// on transport, because that connection closed (RFC 5626 §5.3: a flow that
// fails takes its bindings with it).
func (l *Location) DropFlow(transport string, source netip.AddrPort) int {
	k := flowKey{strings.ToUpper(transport), source}
	l.mu.RLock()
	victims := make([]*Binding, 0, len(l.flows[k]))
	for b := range l.flows[k] {
		victims = append(victims, b)
	}
	l.mu.RUnlock()
	for _, v := range victims {
		// The change below cannot fail: update's error is its own.
		_ = l.update(v.AOR, func(cur []*Binding) ([]*Binding, []*Binding, []*Binding, error) {
			next := make([]*Binding, 0, len(cur))
			var removed []*Binding
			for _, b := range cur {
				if b == v {
					removed = append(removed, b)
					continue
				}
				next = append(next, b)
			}
			return next, nil, removed, nil
		})
	}
	return len(victims)
}

// purgeExpired removes bindings whose time has passed.
func (l *Location) purgeExpired() {
	now := l.now()
	var aors []string
	l.mu.RLock()
	for aor, bs := range l.aors {
		for _, b := range bs {
			if !b.Expires.After(now) {
				aors = append(aors, aor)
				break
			}
		}
	}
	l.mu.RUnlock()
	for _, aor := range aors {
		_ = l.update(aor, func(cur []*Binding) ([]*Binding, []*Binding, []*Binding, error) {
			next := make([]*Binding, 0, len(cur))
			var removed []*Binding
			for _, b := range cur {
				if b.Expires.After(now) {
					next = append(next, b)
				} else {
					removed = append(removed, b)
				}
			}
			return next, nil, removed, nil
		})
	}
}

// Run writes binding changes to SQL in batched transactions and purges
// expired bindings, until ctx ends; then it writes what is still queued and
// returns. The caller owns the goroutine that runs it.
func (l *Location) Run(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.writer.Run(ctx)
	}()
	purge := time.NewTicker(10 * time.Second)
	defer purge.Stop()
	for {
		select {
		case <-purge.C:
			l.purgeExpired()
		case <-ctx.Done():
			<-done
			return
		}
	}
}

const upsertBinding = `INSERT INTO bindings (aor, contact, q, expires, call_id, cseq, source, transport, nat, user_agent, updated, instance, reg_id, local)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
	ON CONFLICT (aor, contact, instance, reg_id) DO UPDATE SET q = excluded.q, expires = excluded.expires, call_id = excluded.call_id,
	cseq = excluded.cseq, source = excluded.source, transport = excluded.transport, nat = excluded.nat,
	user_agent = excluded.user_agent, updated = excluded.updated, local = excluded.local`

func putBinding(b Binding) sqldb.Op {
	return func(ctx context.Context, tx *sql.Tx) error {
		nat := 0
		if b.NAT {
			nat = 1
		}
		_, err := tx.ExecContext(ctx, upsertBinding, b.AOR, b.Contact, int64(b.Q*1000), b.Expires.Unix(), b.CallID,
			int64(b.CSeq), b.Source.String(), b.Transport, nat, b.UserAgent, b.Updated.Unix(), b.Instance, b.RegID, localString(b.Local))
		return err
	}
}

func deleteBinding(aor string, id bindingID) sqldb.Op {
	return func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM bindings WHERE aor = ? AND contact = ? AND instance = ? AND reg_id = ?`,
			aor, id.contact, id.instance, id.regID)
		return err
	}
}

// localString is the stored form of Binding.Local: "" when unknown.
func localString(a netip.AddrPort) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

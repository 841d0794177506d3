package registrar

import "strings"

// NATBindings returns copies of the unexpired UDP bindings behind NAT
// that the proxy keeps alive with its own probes (Kamailio nathelper's
// natping): RFC 5626 flows are left out, since their UAs keep their flows
// alive themselves (§4.4), as are bindings on connections.
func (r *Registrar) NATBindings() []Binding { return r.loc.natUDPBindings() }

// Unreachable removes b because its keep-alive probes went unanswered —
// unless the UA registered again since b was read (a newer Updated, or
// another source), which shows it is reachable. It reports whether b was
// removed; the caller logs why.
func (r *Registrar) Unreachable(b Binding) bool {
	return r.loc.removeIfUnchanged(b)
}

func (l *Location) natUDPBindings() []Binding {
	now := l.now()
	l.mu.RLock()
	defer l.mu.RUnlock()
	out := make([]Binding, 0, l.nat)
	for _, bs := range l.aors {
		for _, b := range bs {
			if b.NAT && b.RegID == 0 && strings.EqualFold(b.Transport, "UDP") && b.Expires.After(now) {
				out = append(out, *b)
			}
		}
	}
	return out
}

// removeIfUnchanged removes the binding of v's AOR with v's id if it has
// not been updated since v was copied.
func (l *Location) removeIfUnchanged(v Binding) bool {
	found := false
	// update's error is fn's own, and fn returns none.
	_ = l.update(v.AOR, func(cur []*Binding) ([]*Binding, []*Binding, []*Binding, error) {
		next := make([]*Binding, 0, len(cur))
		var removed []*Binding
		for _, b := range cur {
			if !found && b.id() == v.id() && b.Updated.Equal(v.Updated) && b.Source == v.Source {
				found = true
				removed = append(removed, b)
				continue
			}
			next = append(next, b)
		}
		return next, nil, removed, nil
	})
	return found
}

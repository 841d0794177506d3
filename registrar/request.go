package registrar

import (
	"net/netip"
	"strings"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard/switchboard/internal/siphdr"
)

// Request is what the registrar reads of a REGISTER (RFC 3261 §10.3): from
// a message sipgo parsed (RequestOf), or from the datagram's bytes on the
// SIP fast path, which reads these headers without sipgo's parser (sipgo's
// parse of a REGISTER with credentials was ~11 % of the CPU of a
// registration). Header values are as sipgo's parser gives them: trimmed,
// one per header line (a comma-separated Contact line is several
// Contacts).
type Request struct {
	// Method is the request's method (REGISTER).
	Method string
	// ID names the request as siphdr.RequestID hashes it: the nonce of a
	// challenge is salted with it, so that a retransmission gets the same.
	ID siphdr.ID
	// AOR is the To URI's user; HasTo is false when there is no To.
	AOR   string
	HasTo bool
	// Source is where the request came from, Local the listener it came
	// to (invalid when not known), Transport its transport (upper case).
	Source    netip.AddrPort
	Local     netip.AddrPort
	Transport string
	// Via is the top Via (its sent-by is NAT evidence), nil when there is
	// none; Vias is the number of Via values.
	Via  *sip.ViaHeader
	Vias int
	// UserAgent is the User-Agent value ("" when none).
	UserAgent string
	// Expires is the Expires value, when HasExpires.
	Expires    string
	HasExpires bool
	// Contacts are the Contact values (*sip.ContactHeader, as sipgo's
	// header parser gives them).
	Contacts []sip.Header
	// Authorization, Require, Path and Supported are those headers'
	// values, in order.
	Authorization []string
	Require       []string
	Path          []string
	Supported     []string
}

// RequestOf is what the registrar reads of req.
func RequestOf(req *sip.Request) *Request {
	q := &Request{Method: string(req.Method), ID: siphdr.IDOf(req, ""), Transport: strings.ToUpper(req.Transport()), Via: req.Via()}
	q.Source, _ = netip.ParseAddrPort(req.Source())
	q.Local, _ = netip.ParseAddrPort(req.Destination())
	hasUA := false
	if to := req.To(); to != nil {
		q.AOR, q.HasTo = to.Address.User, true
	}
	for _, h := range req.Headers() {
		switch h := h.(type) {
		case *sip.ViaHeader:
			q.Vias++
		case *sip.ContactHeader:
			q.Contacts = append(q.Contacts, h)
		default:
			name, v := h.Name(), h.Value()
			switch {
			case strings.EqualFold(name, "User-Agent"):
				if !hasUA {
					q.UserAgent, hasUA = v, true
				}
			case strings.EqualFold(name, "Expires"):
				if !q.HasExpires {
					q.Expires, q.HasExpires = v, true
				}
			case strings.EqualFold(name, "Contact") || strings.EqualFold(name, "m"):
				q.Contacts = append(q.Contacts, h) // not parsed: refused
			case strings.EqualFold(name, "Authorization"):
				q.Authorization = append(q.Authorization, v)
			case strings.EqualFold(name, "Require"):
				q.Require = append(q.Require, v)
			case strings.EqualFold(name, "Path"):
				q.Path = append(q.Path, v)
			case strings.EqualFold(name, "Supported") || strings.EqualFold(name, "k"):
				q.Supported = append(q.Supported, v)
			}
		}
	}
	return q
}

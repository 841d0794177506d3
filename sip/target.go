package sip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	gosip "github.com/emiago/sipgo/sip"
	"github.com/switchboard/switchboard/registrar"
)

// targets returns where an out-of-dialog request goes: its pre-loaded
// route, the contacts of a local user, or (for our own users only) the
// foreign Request-URI.
func (s *Server) targets(ctx context.Context, req *gosip.Request, local bool, authUser string) ([]target, error) {
	var targets []target
	switch {
	case req.Route() != nil:
		// A pre-loaded route (RFC 3261 §16.4) is only followed for our own users.
		if authUser == "" {
			return nil, status(403, "Forbidden", errors.New("pre-loaded route from a foreign user"))
		}
		targets = []target{routeTarget(req)}
	case local:
		if req.Recipient.User == "" {
			return nil, status(404, "Not Found", errors.New("no user in Request-URI"))
		}
		return s.userTargets(ctx, req.Recipient.User, authUser == "")
	default:
		if authUser == "" {
			return nil, status(403, "Forbidden", fmt.Errorf("relaying to %s denied", req.Recipient.Host))
		}
		targets = []target{uriTarget(req.Recipient)}
	}
	return targets, nil
}

// userTargets returns the registered contacts of a local user. For a
// stranger a user that does not exist answers as one that is not
// registered (480): no user lists.
func (s *Server) userTargets(ctx context.Context, user string, stranger bool) ([]target, error) {
	bindings, known, err := s.reg.Lookup(ctx, user)
	if err != nil {
		return nil, err
	}
	if !known && stranger {
		return nil, status(480, "Temporarily Unavailable", fmt.Errorf("no user %q", user))
	}
	if !known {
		return nil, status(404, "Not Found", fmt.Errorf("%w %q", errUnknownUser, user))
	}
	if len(bindings) == 0 {
		return nil, status(480, "Temporarily Unavailable", fmt.Errorf("%q is not registered", user))
	}
	var targets []target
	loops := 0
	for _, b := range bindings {
		t, err := bindingTarget(b)
		if err != nil {
			s.log.Warn("unusable binding", "aor", b.AOR, "contact", b.Contact, "error", err)
			continue
		}
		if s.isOwnAddress(t.dest) {
			// A contact that names the switch itself would only come
			// back here (RFC 3261 §16.3 step 4).
			loops++
			continue
		}
		targets = append(targets, t)
	}
	if len(targets) == 0 {
		if loops > 0 {
			return nil, status(482, "Loop Detected", errors.New("every contact points at the switch"))
		}
		return nil, status(480, "Temporarily Unavailable", errNoTarget)
	}
	return targets, nil
}

// routeTarget sends to the top Route (a loose router, RFC 3261 §16.12).
func routeTarget(req *gosip.Request) target {
	t := uriTarget(req.Route().Address)
	t.uri = req.Recipient
	return t
}

// dialogTarget is where an in-dialog request goes once our own Route
// entries are gone: the next Route, or the Request-URI — at the address its
// alias parameter names when that UA is behind NAT.
func dialogTarget(req *gosip.Request) target {
	if req.Route() != nil {
		return routeTarget(req)
	}
	if t, ok := aliasTarget(&req.Recipient); ok {
		return t
	}
	return uriTarget(req.Recipient)
}

// target is one destination of a forwarded request.
type target struct {
	uri       gosip.Uri // the new Request-URI
	dest      string    // host:port to send to
	transport string    // UDP, TCP, TLS, WS
	nat       bool      // the target is behind NAT (reached at its source)
}

// bindingTarget turns a registered contact into a destination: the Contact
// URI becomes the Request-URI, and the UA is reached where its REGISTER came
// from when it is behind NAT or on a connection.
func bindingTarget(b registrar.Binding) (target, error) {
	var u gosip.Uri
	if err := gosip.ParseUri(b.Contact, &u); err != nil {
		return target{}, err
	}
	if b.NAT || b.ConnectionBound() {
		return target{uri: u, dest: b.Source.String(), transport: strings.ToUpper(b.Transport), nat: b.NAT}, nil
	}
	return uriTarget(u), nil
}

// uriTarget sends to the host and port of u itself (RFC 3263 without DNS
// SRV: sipgo resolves A records).
func uriTarget(u gosip.Uri) target {
	tr := "UDP"
	if v, ok := u.UriParams.Get("transport"); ok && v != "" {
		tr = strings.ToUpper(v)
	}
	if u.IsEncrypted() && tr == "TCP" {
		tr = "TLS"
	}
	port := u.Port
	if port == 0 {
		port = gosip.DefaultPort(tr)
	}
	return target{uri: u, dest: net.JoinHostPort(strings.Trim(u.Host, "[]"), strconv.Itoa(port)), transport: tr}
}

// aliasParam is the Contact URI parameter that carries where a UA behind NAT
// was really seen (Kamailio's set_contact_alias): in-dialog requests to that
// Contact are sent to the alias address.
const aliasParam = "alias"

// aliasTarget returns the destination in a Request-URI's alias parameter,
// removing the parameter.
func aliasTarget(u *gosip.Uri) (target, bool) {
	v, ok := u.UriParams.Get(aliasParam)
	if !ok {
		return target{}, false
	}
	parts := strings.Split(v, "~")
	if len(parts) != 3 {
		return target{}, false
	}
	ip, err := netip.ParseAddr(parts[0])
	if err != nil {
		return target{}, false
	}
	port, err := strconv.ParseUint(parts[1], 10, 16)
	if err != nil {
		return target{}, false
	}
	u.UriParams.Remove(aliasParam)
	return target{uri: *u, dest: netip.AddrPortFrom(ip, uint16(port)).String(), transport: strings.ToUpper(parts[2])}, true
}

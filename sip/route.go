package sip

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/netip"
	"strconv"
	"strings"

	gosip "github.com/emiago/sipgo/sip"

	"github.com/switchboard/switchboard/registrar"
)

// branchPrefix marks the branch parameters of our Vias: the RFC 3261 magic
// cookie, then "sb" and the loop-detection hash (RFC 3261 §16.6 step 8).
const branchPrefix = gosip.RFC3261BranchMagicCookie + "sb"

// target is one destination of a forwarded request.
type target struct {
	uri       gosip.Uri // the new Request-URI
	dest      string    // host:port to send to
	transport string    // UDP, TCP, TLS, WS
	nat       bool      // the target is behind NAT (reached at its source)
}

// isLocalHost reports whether host names this switch: the domain or one of
// the addresses it listens on.
func (s *Server) isLocalHost(host string) bool {
	if strings.EqualFold(host, s.cfg.Domain) {
		return true
	}
	ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
	if err != nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.localIPs[ip.Unmap()]
}

// isLocalURI reports whether u is addressed to this switch (host and, when
// given, port).
func (s *Server) isLocalURI(u gosip.Uri) bool {
	if !s.isLocalHost(u.Host) {
		return false
	}
	if u.Port == 0 || strings.EqualFold(u.Host, s.cfg.Domain) {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, i := range s.ifaces {
		if i.port == u.Port {
			return true
		}
	}
	return false
}

// popOwnRoutes removes the Route entries that name this switch from the top
// of the request (RFC 3261 §16.4; two when we double record-routed). It
// reports whether there were any, and whether one of them carries a valid
// signature of the request's dialog (see dialogParam).
func (s *Server) popOwnRoutes(req *gosip.Request) (popped, signed bool) {
	for i := 0; i < 2; i++ {
		r := req.Route()
		if r == nil || !s.isLocalURI(r.Address) {
			break
		}
		if tok, ok := r.Address.UriParams.Get(dialogParam); ok && req.CallID() != nil && s.dialogSigned(req, tok) {
			signed = true
		}
		removeTopHeader(req, "Route")
		popped = true
	}
	return popped, signed
}

// removeTopHeader removes the first value of a header that may carry
// several (sipgo's RemoveHeader removes only the first).
func removeTopHeader(msg interface{ RemoveHeader(string) bool }, name string) {
	msg.RemoveHeader(name)
}

// isOwnAddress reports whether host:port is one of the switch's listeners.
func (s *Server) isOwnAddress(dest string) bool {
	ap, err := netip.ParseAddrPort(dest)
	if err != nil {
		return false
	}
	if !s.isLocalHost(ap.Addr().Unmap().String()) {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, i := range s.ifaces {
		if uint16(i.port) == ap.Port() {
			return true
		}
	}
	return false
}

// ifaceFor returns the interface to send over transport.
func (s *Server) ifaceFor(transport string) (iface, bool) {
	t := strings.ToLower(transport)
	if t == "wss" {
		t = "ws"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, i := range s.ifaces {
		if i.transport == t {
			return i, true
		}
	}
	return iface{}, false
}

func (i iface) uri() gosip.Uri {
	u := gosip.Uri{Scheme: "sip", Host: i.adv, Port: i.port}
	u.UriParams = gosip.NewParams()
	u.UriParams.Add("transport", i.transport)
	u.UriParams.Add("lr", "")
	return u
}

// via returns our Via for a request sent over i (RFC 3261 §16.6 step 8),
// asking for rport (RFC 3581) so responses come back through NAT.
func (i iface) via(branch string) *gosip.ViaHeader {
	v := &gosip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: strings.ToUpper(i.transport),
		Host: i.adv, Port: i.port, Params: gosip.NewParams()}
	v.Params.Add("branch", branch)
	v.Params.Add("rport", "")
	return v
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

// addAlias appends ;alias=ip~port~transport to a Contact URI when the
// sender cannot be reached at the Contact itself.
func addAlias(msg interface{ Contact() *gosip.ContactHeader }, source, transport string) {
	c := msg.Contact()
	if c == nil || c.Address.Wildcard {
		return
	}
	src, err := netip.ParseAddrPort(source)
	if err != nil {
		return
	}
	if !reachedElsewhere(c.Address, src, transport) {
		return
	}
	if c.Address.UriParams == nil {
		c.Address.UriParams = gosip.NewParams()
	}
	c.Address.UriParams.Add(aliasParam, src.Addr().Unmap().String()+"~"+strconv.Itoa(int(src.Port()))+"~"+strings.ToLower(transport))
}

// reachedElsewhere reports whether a UA whose message came from src over
// transport must be reached there rather than at its Contact.
func reachedElsewhere(u gosip.Uri, src netip.AddrPort, transport string) bool {
	switch strings.ToUpper(transport) {
	case "TCP", "TLS", "WS", "WSS":
		return true // only the connection it came on reaches it
	}
	ip, err := netip.ParseAddr(strings.Trim(u.Host, "[]"))
	if err != nil {
		return true
	}
	port := u.Port
	if port == 0 {
		port = 5060
	}
	return ip.Unmap() != src.Addr().Unmap() || uint16(port) != src.Port()
}

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

// loopHash is the loop-detection part of our branch parameter: a hash of
// what a request looked like when it reached us (RFC 3261 §16.6 step 8).
// prevVia is the Via below ours (the top Via as we received it).
func loopHash(req *gosip.Request, ruri string, prevVia string) string {
	h := sha256.New()
	w := func(s string) { h.Write([]byte(s)); h.Write([]byte{0}) }
	w(ruri)
	if f := req.From(); f != nil {
		t, _ := f.Params.Get("tag")
		w(t)
	}
	if t := req.To(); t != nil {
		tag, _ := t.Params.Get("tag")
		w(tag)
	}
	if c := req.CallID(); c != nil {
		w(c.Value())
	}
	if c := req.CSeq(); c != nil {
		w(strconv.FormatUint(uint64(c.SeqNo), 10))
	}
	w(prevVia)
	for _, r := range req.GetHeaders("Proxy-Require") {
		w(r.Value())
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// signedToken returns a random token followed by a MAC of it under the
// server's secret: the unique part of our branch parameters, which lets
// forwardStrayResponse tell responses to our own requests from forgeries.
func (s *Server) signedToken() string {
	r := gosip.GenerateTagN(10)
	return r + s.tokenMAC(r)
}

func (s *Server) tokenMAC(r string) string {
	m := hmac.New(sha256.New, s.secret[:])
	m.Write([]byte(r))
	return hex.EncodeToString(m.Sum(nil)[:4])
}

// ourBranch reports whether a branch parameter was made by this server.
func (s *Server) ourBranch(br string) bool {
	rest, ok := strings.CutPrefix(br, branchPrefix)
	if !ok {
		return false
	}
	_, tok, ok := strings.Cut(rest, ".")
	if !ok || len(tok) < 18 {
		return false
	}
	r, mac := tok[:10], tok[10:18]
	return hmac.Equal([]byte(mac), []byte(s.tokenMAC(r)))
}

// isLoop reports whether the request already passed through us looking the
// same (RFC 3261 §16.3 step 4): a Via of ours whose loop hash matches the
// request as it is now. A request that comes back changed is a spiral.
func (s *Server) isLoop(req *gosip.Request) bool {
	vias := req.GetHeaders("Via")
	for i, h := range vias {
		v, ok := h.(*gosip.ViaHeader)
		if !ok {
			continue
		}
		br, _ := v.Params.Get("branch")
		if !strings.HasPrefix(br, branchPrefix) || !s.isLocalHost(v.Host) {
			continue
		}
		hash, _, _ := strings.Cut(strings.TrimPrefix(br, branchPrefix), ".")
		prev := ""
		if i+1 < len(vias) {
			prev = vias[i+1].Value()
		}
		if hash == loopHash(req, req.Recipient.String(), prev) {
			return true
		}
	}
	return false
}

package registrar

import (
	"errors"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// RFC 5626 (SIP Outbound) at the registrar. The switch is registrar and
// edge proxy in one: a REGISTER that reaches it with a single Via came
// straight from the UA, so the flow it arrived on (its transport and
// source, recorded in the Binding) is the flow requests for that binding go
// back over. No flow token in a Path or Record-Route is needed for that:
// the binding holds the flow, and in-dialog requests find it through the
// Contact's alias parameter (see package sip).

// Supported option tags a REGISTER may require (RFC 3261 §8.2.2.3).
var supportedTags = map[string]bool{"outbound": true, "path": true}

// regIDMax is the largest reg-id RFC 5626 §4.2 allows (1 to 2^31-1).
const regIDMax = 1<<31 - 1

// outboundParams reads a Contact's +sip.instance and reg-id (RFC 5626
// §4.2). reg-id without +sip.instance is ignored (§6).
func outboundParams(ch *sip.ContactHeader) (instance string, regID int, err error) {
	if v, ok := ch.Params.Get("+sip.instance"); ok {
		instance = strings.Trim(v, `"`)
	}
	if instance == "" {
		return "", 0, nil
	}
	if v, ok := ch.Params.Get("reg-id"); ok {
		n, perr := strconv.Atoi(v)
		if perr != nil || n < 1 || n > regIDMax {
			return "", 0, statusErr(400, "Bad Request", errors.New("bad reg-id "+strconv.Quote(v)))
		}
		regID = n
	}
	if len(instance) > 256 {
		return "", 0, statusErr(400, "Bad Request", errors.New("+sip.instance too long"))
	}
	return instance, regID, nil
}

// checkOutbound applies RFC 5626 §6 to a REGISTER whose contacts carry
// reg-id: at most one such contact (400), and the first hop — the switch
// itself when the REGISTER has a single Via, else an edge proxy that put
// ";ob" in the top Path — must support outbound (439 otherwise). It also
// refuses option tags in Require that the registrar does not support
// (RFC 3261 §8.2.2.3: 420).
func checkOutbound(q *Request, contacts []contactReq) error {
	var unsupported []string
	for _, v := range q.Require {
		for _, tag := range strings.Split(v, ",") {
			if tag = strings.ToLower(strings.TrimSpace(tag)); tag != "" && !supportedTags[tag] {
				unsupported = append(unsupported, tag)
			}
		}
	}
	if len(unsupported) > 0 {
		return statusErr(420, "Bad Extension", nil, sip.NewHeader("Unsupported", strings.Join(unsupported, ", ")))
	}
	flows := 0
	for _, c := range contacts {
		if c.regID > 0 {
			flows++
		}
	}
	if flows == 0 {
		return nil
	}
	if flows > 1 {
		return statusErr(400, "Bad Request", errors.New("more than one Contact with reg-id (RFC 5626 §6)"))
	}
	if q.Vias > 1 && !pathSupportsOutbound(q) {
		return statusErr(439, "First Hop Lacks Outbound Support", nil)
	}
	return nil
}

// pathSupportsOutbound reports whether the top Path URI carries the "ob"
// parameter: the edge proxy that added it keeps flows (RFC 5626 §5.1).
func pathSupportsOutbound(q *Request) bool {
	if len(q.Path) == 0 {
		return false
	}
	v := q.Path[0]
	if i := strings.IndexByte(v, ','); i >= 0 {
		v = v[:i]
	}
	v = strings.ToLower(v)
	return strings.Contains(v, ";ob>") || strings.Contains(v, ";ob;") || strings.HasSuffix(strings.TrimSpace(v), ";ob")
}

// outboundHeaders adds to a 2xx for a REGISTER what RFC 5626 asks: with a
// flow binding accepted, Require: outbound (§6) and the Flow-Timer telling
// the UA how often to send keep-alives (§4.4.1); Supported: outbound
// whenever the UA said it supports it.
func (r *Registrar) outboundHeaders(q *Request, hdrs []sip.Header, flows bool) []sip.Header {
	if flows {
		hdrs = append(hdrs, sip.NewHeader("Require", "outbound"))
		if r.cfg.FlowTimer > 0 {
			hdrs = append(hdrs, sip.NewHeader("Flow-Timer", strconv.Itoa(int(r.cfg.FlowTimer.Seconds()))))
		}
	}
	for _, v := range q.Supported {
		if hasTag(v, "outbound") {
			return append(hdrs, sip.NewHeader("Supported", "outbound"))
		}
	}
	return hdrs
}

func hasTag(list, tag string) bool {
	for _, t := range strings.Split(list, ",") {
		if strings.EqualFold(strings.TrimSpace(t), tag) {
			return true
		}
	}
	return false
}

// sameFlowBinding reports whether b is the binding a contact with this
// instance and reg-id replaces (RFC 5626 §6: one binding per AOR, instance
// and reg-id; a REGISTER over a new flow replaces the old flow's).
func sameFlowBinding(b *Binding, instance string, regID int) bool {
	return regID > 0 && b.RegID == regID && b.Instance == instance
}

// oneFlowPerInstance keeps, of the flow bindings of each instance, the one
// updated last, in place; other bindings are kept as they are.
func oneFlowPerInstance(bs []Binding) []Binding {
	latest := map[string]int{} // instance -> index in bs
	for i, b := range bs {
		if b.RegID == 0 {
			continue
		}
		if j, ok := latest[b.Instance]; !ok || b.Updated.After(bs[j].Updated) {
			latest[b.Instance] = i
		}
	}
	out := make([]Binding, 0, len(bs))
	for i, b := range bs {
		if b.RegID == 0 || latest[b.Instance] == i {
			out = append(out, b)
		}
	}
	return out
}

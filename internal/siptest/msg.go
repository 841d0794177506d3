package siptest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	gosip "github.com/emiago/sipgo/sip"
)

// Msg is a SIP message as text: a start line, headers in order, and a body.
// Its String form is what goes on the wire; Content-Length is added when the
// message has none (a test that wants a wrong one sets it).
type Msg struct {
	Start   string
	Headers []Header
	Body    string
}

// Header is one header line.
type Header struct {
	Name, Value string
}

// Get returns the first value of the header name (case-insensitive), or "".
func (m *Msg) Get(name string) string {
	for _, h := range m.Headers {
		if strings.EqualFold(h.Name, name) {
			return h.Value
		}
	}
	return ""
}

// Values returns every value of the header name, in order.
func (m *Msg) Values(name string) []string {
	var out []string
	for _, h := range m.Headers {
		if strings.EqualFold(h.Name, name) {
			out = append(out, h.Value)
		}
	}
	return out
}

// Set replaces every value of name with value, keeping the position of the
// first one (or appending).
func (m *Msg) Set(name, value string) *Msg {
	for i, h := range m.Headers {
		if strings.EqualFold(h.Name, name) {
			m.Headers[i].Value = value
			m.del(name, i+1)
			return m
		}
	}
	return m.Add(name, value)
}

// Add appends a header line.
func (m *Msg) Add(name, value string) *Msg {
	m.Headers = append(m.Headers, Header{name, value})
	return m
}

// Prepend puts a header line first.
func (m *Msg) Prepend(name, value string) *Msg {
	m.Headers = append([]Header{{name, value}}, m.Headers...)
	return m
}

// Del removes every value of name.
func (m *Msg) Del(name string) *Msg {
	m.del(name, 0)
	return m
}

func (m *Msg) del(name string, from int) {
	out := m.Headers[:from]
	for _, h := range m.Headers[from:] {
		if !strings.EqualFold(h.Name, name) {
			out = append(out, h)
		}
	}
	m.Headers = out
}

// Clone returns a deep copy.
func (m *Msg) Clone() *Msg {
	c := *m
	c.Headers = append([]Header(nil), m.Headers...)
	return &c
}

// Method returns the method of a request's start line.
func (m *Msg) Method() string {
	meth, _, _ := strings.Cut(m.Start, " ")
	return meth
}

// RequestURI returns the Request-URI of a request's start line.
func (m *Msg) RequestURI() string {
	f := strings.Fields(m.Start)
	if len(f) < 2 {
		return ""
	}
	return f[1]
}

// CSeq returns the sequence number of the CSeq header.
func (m *Msg) CSeq() int {
	n, _ := strconv.Atoi(strings.Fields(m.Get("CSeq") + " 0")[0])
	return n
}

// Branch returns the branch parameter of the top Via.
func (m *Msg) Branch() string {
	return param(m.Get("Via"), "branch")
}

// String renders the message with CRLF line ends.
func (m *Msg) String() string {
	var b strings.Builder
	b.WriteString(m.Start)
	b.WriteString("\r\n")
	hasCL := false
	for _, h := range m.Headers {
		if strings.EqualFold(h.Name, "Content-Length") || h.Name == "l" {
			hasCL = true
		}
		b.WriteString(h.Name)
		b.WriteString(": ")
		b.WriteString(h.Value)
		b.WriteString("\r\n")
	}
	if !hasCL {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(m.Body))
	}
	b.WriteString("\r\n")
	b.WriteString(m.Body)
	return b.String()
}

// param returns the value of ;name=value in a header value (outside <>).
func param(v, name string) string {
	if i := strings.LastIndexByte(v, '>'); i >= 0 {
		v = v[i+1:]
	}
	for _, p := range strings.Split(v, ";")[1:] {
		k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.Trim(strings.TrimSpace(val), `"`)
		}
	}
	return ""
}

// Param returns the value of the parameter name of a header value such as
// `<sip:a@b>;tag=x` or `SIP/2.0/UDP h;branch=y` (parameters after the URI).
func Param(headerValue, name string) string { return param(headerValue, name) }

// NewBranch returns a fresh RFC 3261 branch parameter.
func NewBranch() string { return gosip.RFC3261BranchMagicCookie + "t" + Rand(8) }

// Rand returns n random bytes as hex.
func Rand(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Parse parses SIP text with sipgo's parser.
func Parse(text string) (gosip.Message, error) {
	return gosip.NewParser().ParseSIP([]byte(text))
}

// ParseRequest parses SIP text that must be a request and gives it a
// transport and source address, as sipgo's transport layer does for what it
// receives.
func ParseRequest(text, transport, source string) (*gosip.Request, error) {
	msg, err := Parse(text)
	if err != nil {
		return nil, err
	}
	req, ok := msg.(*gosip.Request)
	if !ok {
		return nil, fmt.Errorf("not a request: %q", strings.SplitN(text, "\r\n", 2)[0])
	}
	req.SetTransport(transport)
	req.SetSource(source)
	return req, nil
}

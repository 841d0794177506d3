package siptest

import (
	"fmt"
	"strings"

	gosip "github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// Credentials are what a phone answers digest challenges with.
type Credentials struct {
	User, Password string
	// Count is the nonce count (nc) to send; 0 means 1.
	Count int
	// Cnonce is the client nonce; empty means a random one.
	Cnonce string
}

// DigestValue computes the Authorization / Proxy-Authorization value for a
// request with method and Request-URI uri, answering the challenge value
// (a WWW-Authenticate or Proxy-Authenticate header value).
func DigestValue(challenge, method, uri string, c Credentials) (string, error) {
	chal, err := digest.ParseChallenge(challenge)
	if err != nil {
		return "", fmt.Errorf("parse challenge %q: %w", challenge, err)
	}
	cnonce := c.Cnonce
	if cnonce == "" {
		cnonce = Rand(8)
	}
	cred, err := digest.Digest(chal, digest.Options{
		Method: method, URI: uri, Username: c.User, Password: c.Password, Count: c.Count, Cnonce: cnonce,
	})
	if err != nil {
		return "", err
	}
	return cred.String(), nil
}

// Challenge returns the challenge header value of res (WWW-Authenticate for
// a 401, Proxy-Authenticate for a 407) for the digest algorithm alg ("MD5",
// "SHA-256"), or "" when there is none.
func Challenge(res *gosip.Response, alg string) string {
	for _, name := range []string{"WWW-Authenticate", "Proxy-Authenticate"} {
		for _, h := range res.GetHeaders(name) {
			v := h.Value()
			chal, err := digest.ParseChallenge(v)
			if err != nil {
				continue
			}
			a := chal.Algorithm
			if a == "" {
				a = "MD5"
			}
			if strings.EqualFold(a, alg) {
				return v
			}
		}
	}
	return ""
}

// Authorize adds to m the credentials answering the challenge in res
// (Authorization for a 401, Proxy-Authorization for a 407) for algorithm alg.
func Authorize(m *Msg, res *gosip.Response, alg string, c Credentials) error {
	chal := Challenge(res, alg)
	if chal == "" {
		return fmt.Errorf("no %s challenge in %d response", alg, res.StatusCode)
	}
	v, err := DigestValue(chal, m.Method(), m.RequestURI(), c)
	if err != nil {
		return err
	}
	name := "Authorization"
	if res.StatusCode == 407 {
		name = "Proxy-Authorization"
	}
	m.Add(name, v)
	return nil
}

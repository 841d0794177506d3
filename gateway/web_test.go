package gateway_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/gateway"
)

func TestWebPhoneServed(t *testing.T) {
	e := newEnv(t, nil)
	for path, want := range map[string]string{
		"/":          `<button id="call" type="submit" class="go">Call</button>`,
		"/phone.js":  "insertDTMF",
		"/phone.css": ".keypad",
	} {
		res, err := http.Get(e.http.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Errorf("%s: %d, missing %q", path, res.StatusCode, want)
		}
		if strings.Contains(string(body), "http://") || strings.Contains(string(body), "https://") {
			t.Errorf("%s refers to an external resource", path)
		}
	}
	res, err := http.Get(e.http.URL + "/nope")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 404 {
		t.Errorf("/nope: %d", res.StatusCode)
	}
}

// The page carries the HTTPS port it links to when opened in an insecure
// context, and no port when the switch serves no HTTPS.
func TestWebPhoneHTTPSPort(t *testing.T) {
	for port, want := range map[int]string{8443: `<html lang="en" data-https-port="8443">`, 0: `<html lang="en">`} {
		e := newEnv(t, func(c *gateway.Config) { c.HTTPSPort = port })
		res, err := http.Get(e.http.URL + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !strings.Contains(string(body), want) || !strings.Contains(string(body), `id="insecure-link"`) {
			t.Errorf("HTTPS port %d: %d, missing %q:\n%.300s", port, res.StatusCode, want, body)
		}
		if ct := res.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Errorf("HTTPS port %d: Content-Type %q", port, ct)
		}
	}
}

package gateway_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
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

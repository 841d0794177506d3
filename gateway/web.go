package gateway

import (
	"bytes"
	"embed"
	"io/fs"
	"net/http"
	"strconv"
	"time"
)

// webFiles is the web phone: plain HTML, CSS and JavaScript, no external
// resources, so it works offline.
//
//go:embed web
var webFiles embed.FS

// webHandler serves the web phone's files; anything else is 404. The page
// carries httpsPort (when not zero) as the data-https-port attribute of its
// <html> element: opened in an insecure context, it links there.
func webHandler(httpsPort int) http.Handler {
	sub, _ := fs.Sub(webFiles, "web")
	files := http.FileServer(http.FS(sub))
	index, _ := fs.ReadFile(sub, "index.html")
	if httpsPort > 0 {
		index = bytes.Replace(index, []byte(`<html lang="en">`),
			[]byte(`<html lang="en" data-https-port="`+strconv.Itoa(httpsPort)+`">`), 1)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/", "/phone.js", "/phone.css":
		case "/favicon.ico":
			w.WriteHeader(http.StatusNoContent)
			return
		default:
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", "default-src 'self'; connect-src 'self' ws: wss:; media-src 'self' blob: mediastream:; img-src 'self' data:")
		h.Set("Referrer-Policy", "no-referrer")
		if r.URL.Path == "/" {
			h.Set("Content-Type", "text/html; charset=utf-8")
			http.ServeContent(w, r, "index.html", time.Time{}, bytes.NewReader(index))
			return
		}
		files.ServeHTTP(w, r)
	})
}

package gateway

import (
	"embed"
	"io/fs"
	"net/http"
)

// uiFiles is the usage page: static files, no build step, no CDN. The page reads the admin
// API with a viewer token it keeps in sessionStorage; the token never travels in a URL.
//
//go:embed ui
var uiFiles embed.FS

// uiHandler serves the usage page under /ui/.
func uiHandler() http.Handler {
	sub, err := fs.Sub(uiFiles, "ui")
	if err != nil {
		panic("gateway: missing embedded ui: " + err.Error()) // a programmer error
	}
	files := http.StripPrefix("/ui/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; "+
			"connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}

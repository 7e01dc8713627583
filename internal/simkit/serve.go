package simkit

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
)

// Listener is a fake served on a loopback port, the way httptest.Server serves a handler;
// each fake's Server embeds it next to the fake itself.
type Listener struct {
	URL string
	srv *httptest.Server
}

// Serve starts h on 127.0.0.1 (never another interface, whatever httptest's flags say).
func Serve(h http.Handler) *Listener {
	srv := httptest.NewUnstartedServer(h)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("simkit: listen on loopback: %v", err))
	}
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	return &Listener{URL: srv.URL, srv: srv}
}

// Close shuts the server down.
func (l *Listener) Close() { l.srv.Close() }

// Client is an HTTP client for the server.
func (l *Listener) Client() *http.Client { return l.srv.Client() }

// Package login runs the OAuth authorization-code flow for `leadsync auth login`: a loopback
// callback server (RFC 8252), a random state checked on return, PKCE (S256) where the
// vendor accepts it, and the vendor's own AuthCodeURL and Exchange functions.
package login

import (
	"bufio"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
)

// DefaultTimeout bounds the whole login when Config.Timeout is zero.
const DefaultTimeout = 5 * time.Minute

// answerGrace bounds the wait for the browser's page once the login has its outcome.
const answerGrace = 2 * time.Second

// Config is one login. AuthCodeURL and Exchange are the vendor package's functions.
type Config struct {
	// AuthCodeURL builds the vendor's authorization URL. pkceChallenge is "" unless PKCE is set.
	AuthCodeURL func(state, redirectURI, pkceChallenge string) string
	// Exchange redeems the code. pkceVerifier is "" unless PKCE is set.
	Exchange func(ctx context.Context, code, redirectURI, pkceVerifier string) (*oauth2.Token, error)
	// PKCE sends an S256 code challenge (only for vendors that accept one).
	PKCE bool
	// RedirectURI is the exact URI registered with the vendor, on a loopback host
	// (http://127.0.0.1:8765/callback). Port 0 or none picks a free port. Default
	// http://127.0.0.1:0/callback.
	RedirectURI string
	// Open opens the URL in a browser (see OpenBrowser); nil only prints it.
	Open func(url string) error
	// Paste (optional) is read for the address the browser was redirected to, pasted by a
	// person whose browser runs on another machine (a headless server): its code is taken
	// as if the callback had arrived. The loopback callback is served all the same.
	Paste io.Reader
	// Out is where the URL and progress are printed. Default os.Stderr.
	Out io.Writer
	// Timeout bounds the wait for the user. Default 5 min.
	Timeout time.Duration
	Logger  *slog.Logger
}

// ErrStateMismatch is answered to a callback whose state is not ours (a forged or stale
// request); the login keeps waiting for the real one.
var ErrStateMismatch = errors.New("login: callback state does not match")

// Run performs the flow and returns the vendor's token (to give to store.Save).
func Run(ctx context.Context, cfg Config) (*oauth2.Token, error) {
	if cfg.AuthCodeURL == nil || cfg.Exchange == nil {
		return nil, errors.New("login: AuthCodeURL and Exchange are required")
	}
	out := cmp.Or[io.Writer](cfg.Out, os.Stderr)
	log := cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithTimeout(ctx, cmp.Or(cfg.Timeout, DefaultTimeout))
	defer cancel()

	ln, redirect, err := listen(cmp.Or(cfg.RedirectURI, "http://127.0.0.1:0/callback"))
	if err != nil {
		return nil, err
	}
	state := randomString(32)
	var verifier, challenge string
	if cfg.PKCE {
		verifier = oauth2.GenerateVerifier()
		challenge = oauth2.S256ChallengeFromVerifier(verifier)
	}

	callbacks := make(chan callback)
	// over ends the login for every handler still running: the token is the caller's to
	// save at once, and no stray callback may hold it up.
	over := make(chan struct{})
	// answered is closed once the accepted callback's page is written, so closing the
	// server does not cut it off.
	answered := make(chan struct{})
	var taken atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc(redirect.Path, func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(state)) != 1 {
			log.Warn("ignored an authorization callback with a wrong state")
			page(w, http.StatusBadRequest, "This authorization response does not belong to the running login (state mismatch).")
			return
		}
		if !taken.CompareAndSwap(false, true) {
			page(w, http.StatusConflict, "This login already received its authorization; this tab can be closed.")
			return
		}
		cb := newCallback(q)
		select {
		case callbacks <- cb:
			defer close(answered)
		case <-r.Context().Done():
			taken.Store(false) // the browser left before the login saw it: wait for another
			return
		case <-over:
			page(w, http.StatusGone, "This login is over; run `leadsync auth login` again.")
			return
		}
		var res error
		select {
		case res = <-cb.done:
		case <-r.Context().Done():
			return
		}
		if res != nil {
			page(w, http.StatusBadRequest, "Authorization failed: "+res.Error())
			return
		}
		page(w, http.StatusOK, "leadsync is authorized. You can close this tab.")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	received := false // a handler owes answered
	defer func() {
		close(over)
		if received {
			// The browser's page is a few hundred bytes written at once; the bound is for a
			// client that stopped reading.
			select {
			case <-answered:
			case <-time.After(answerGrace):
			}
		}
		// Close, not Shutdown: a browser's idle or speculative connection must not delay
		// the caller, who saves the grant next.
		_ = srv.Close()
	}()

	authURL := cfg.AuthCodeURL(state, redirect.String(), challenge)
	fmt.Fprintf(out, "Open this URL in a browser to authorize leadsync (waiting on %s):\n\n  %s\n\n", redirect, authURL)
	if cfg.Paste != nil {
		fmt.Fprintf(out, "If the browser runs on another machine, it ends on a page that does not load (%s?code=...):\n"+
			"paste that page's whole address here and press Enter.\n", redirect)
		go readPasted(cfg.Paste, state, out, log, &taken, callbacks, over)
	}
	if cfg.Open != nil {
		if err := cfg.Open(authURL); err != nil {
			fmt.Fprintf(out, "(could not open a browser: %v; open the URL yourself)\n", err)
		}
	}

	select {
	case cb := <-callbacks:
		received = !cb.pasted
		if cb.err != nil {
			cb.done <- cb.err
			return nil, cb.err
		}
		tok, err := cfg.Exchange(ctx, cb.code, redirect.String(), verifier)
		if err == nil && (tok == nil || tok.AccessToken == "") {
			err = errors.New("the token endpoint returned no access token")
		}
		if err != nil {
			err = fmt.Errorf("login: exchange the authorization code: %w", err)
		}
		cb.done <- err
		if err != nil {
			return nil, err
		}
		fmt.Fprintln(out, "Authorized.")
		return tok, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("login: no authorization received: %w", ctx.Err())
	}
}

// callback is an authorization response: the loopback request's, or a pasted address's.
type callback struct {
	code   string
	err    error
	done   chan error // the exchange's outcome, for the browser page
	pasted bool       // no browser page waits for done
}

func newCallback(q url.Values) callback {
	cb := callback{code: q.Get("code"), done: make(chan error, 1)}
	if e := q.Get("error"); e != "" {
		cb.err = fmt.Errorf("login: the vendor refused the authorization: %s %s", clip(e), clip(q.Get("error_description")))
	} else if cb.code == "" {
		cb.err = errors.New("login: the callback carried no code")
	}
	return cb
}

// readPasted reads pasted redirect addresses, one per line, until one carries this login's
// state; its code (or the vendor's error) goes to callbacks as a loopback callback's would.
func readPasted(r io.Reader, state string, out io.Writer, log *slog.Logger, taken *atomic.Bool, callbacks chan<- callback, over <-chan struct{}) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		u, err := url.Parse(line)
		if err != nil {
			fmt.Fprintln(out, "That is not an address; paste the whole address the browser shows.")
			continue
		}
		q := u.Query()
		if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(state)) != 1 {
			log.Warn("ignored a pasted authorization response with a wrong state")
			fmt.Fprintln(out, "That address does not belong to this login (state mismatch); paste the one the vendor redirected to.")
			continue
		}
		if !taken.CompareAndSwap(false, true) {
			return // the loopback callback came first
		}
		cb := newCallback(q)
		cb.pasted = true
		select {
		case callbacks <- cb:
		case <-over:
		}
		return
	}
}

// listen binds the redirect URI's loopback address and returns the exact redirect URI.
func listen(raw string) (net.Listener, *url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.RawQuery != "" || u.Fragment != "" {
		return nil, nil, fmt.Errorf("login: redirect URI %q: want http://127.0.0.1[:port]/path", raw)
	}
	host := u.Hostname()
	bind := host
	switch host {
	case "127.0.0.1", "::1":
	case "localhost":
		bind = "127.0.0.1"
	default:
		return nil, nil, fmt.Errorf("login: redirect URI %q must be on a loopback host", raw)
	}
	port := cmp.Or(u.Port(), "0")
	ln, err := net.Listen("tcp", net.JoinHostPort(bind, port))
	if err != nil {
		return nil, nil, fmt.Errorf("login: listen for the callback: %w", err)
	}
	if port == "0" {
		u.Host = net.JoinHostPort(host, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	}
	if u.Path == "" {
		u.Path = "/"
	}
	return ln, u, nil
}

// page writes a complete response and flushes it, so it reaches the browser even when the
// server is closed right after.
func page(w http.ResponseWriter, status int, msg string) {
	body := fmt.Sprintf("<!doctype html><title>leadsync</title><p>%s</p>\n", html.EscapeString(msg))
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
}

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

// OpenBrowser opens url with $BROWSER (a command, given the URL, as gh, git and Python's
// webbrowser read it), else the desktop's browser (xdg-open, open, or rundll32).
func OpenBrowser(url string) error {
	var cmd *exec.Cmd
	if b := strings.Fields(os.Getenv("BROWSER")); len(b) > 0 {
		cmd = exec.Command(b[0], append(b[1:], url)...)
		if err := cmd.Start(); err != nil {
			return err
		}
		go func() { _ = cmd.Wait() }()
		return nil
	}
	switch runtime.GOOS {
	case "darwin":
		cmd = exec.Command("open", url)
	case "windows":
		cmd = exec.Command("rundll32", "url.dll,FileProtocolHandler", url)
	default:
		cmd = exec.Command("xdg-open", url)
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() { _ = cmd.Wait() }()
	return nil
}

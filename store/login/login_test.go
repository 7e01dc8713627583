package login_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/leadsync/leadsync/store/internal/tokensrv"
	"github.com/leadsync/leadsync/store/login"
)

type testBundle struct {
	srv *tokensrv.Server
	cli *tokensrv.Client
	out *strings.Builder
	mu  sync.Mutex
	// what the flow passed to the vendor functions
	authRedirect, challenge, exchRedirect, verifier string
	pages                                           []string
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	srv := tokensrv.New(tokensrv.Options{})
	t.Cleanup(srv.Close)
	return &testBundle{srv: srv, cli: srv.Client(time.Now), out: &strings.Builder{}}
}

// config records what the flow hands the vendor functions; the "browser" follows the
// auto-approving authorization page back to the loopback callback.
func (tb *testBundle) config(browser func(string) error) login.Config {
	return login.Config{
		AuthCodeURL: func(state, redirect, challenge string) string {
			tb.authRedirect, tb.challenge = redirect, challenge
			return tb.cli.AuthCodeURL(state, redirect, challenge)
		},
		Exchange: func(ctx context.Context, code, redirect, verifier string) (*oauth2.Token, error) {
			tb.exchRedirect, tb.verifier = redirect, verifier
			return tb.cli.Exchange(ctx, code, redirect, verifier)
		},
		PKCE:    true,
		Open:    browser,
		Out:     &lockedWriter{w: tb.out, mu: &tb.mu},
		Timeout: 30 * time.Second,
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// browser visits the URL in the background, as a real one would, and records the final page.
func (tb *testBundle) browser(t *testing.T) func(string) error {
	return func(u string) error {
		go func() {
			resp, err := http.Get(u)
			if err != nil {
				t.Errorf("browser: %v", err)
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			tb.mu.Lock()
			tb.pages = append(tb.pages, strconv.Itoa(resp.StatusCode)+" "+string(body))
			tb.mu.Unlock()
		}()
		return nil
	}
}

func TestLoginEndToEndWithPKCE(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	tok, err := login.Run(context.Background(), tb.config(tb.browser(t)))
	if err != nil {
		t.Fatal(err)
	}
	if st, _, err := tb.cli.Call(context.Background(), tok.AccessToken, ""); err != nil || st != http.StatusOK {
		t.Fatalf("the token from the login is rejected: %d %v", st, err)
	}
	if tok.RefreshToken == "" {
		t.Error("no refresh token")
	}
	if tb.challenge == "" || oauth2.S256ChallengeFromVerifier(tb.verifier) != tb.challenge {
		t.Error("PKCE challenge does not match the verifier sent to Exchange")
	}
	if tb.authRedirect != tb.exchRedirect || !strings.HasPrefix(tb.authRedirect, "http://127.0.0.1:") ||
		!strings.HasSuffix(tb.authRedirect, "/callback") {
		t.Errorf("redirect URIs: authorize %q, exchange %q", tb.authRedirect, tb.exchRedirect)
	}
	if !strings.Contains(tb.out.String(), "/authorize?") {
		t.Errorf("the URL was not printed: %q", tb.out.String())
	}
	waitFor(t, func() bool {
		tb.mu.Lock()
		defer tb.mu.Unlock()
		return len(tb.pages) == 1
	})
	if !strings.HasPrefix(tb.pages[0], "200 ") || !strings.Contains(tb.pages[0], "authorized") {
		t.Errorf("browser page: %q", tb.pages[0])
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestLoginRejectsWrongStateAndKeepsWaiting(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	cfg := tb.config(nil)
	cfg.PKCE = false
	cfg.Open = func(u string) error {
		// A forged callback arrives first; it must be refused without ending the login.
		au, _ := url.Parse(u)
		redirect := au.Query().Get("redirect_uri")
		resp, err := http.Get(redirect + "?code=forged&state=not-ours")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("forged callback answered %d", resp.StatusCode)
		}
		return tb.browser(t)(u)
	}
	tok, err := login.Run(context.Background(), cfg)
	if err != nil || tok.AccessToken == "" {
		t.Fatalf("login after a forged callback: %v", err)
	}
	if tb.challenge != "" || tb.verifier != "" {
		t.Error("PKCE sent to a vendor that does not take it")
	}
}

func TestLoginFixedRedirectURI(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cfg := tb.config(tb.browser(t))
	cfg.RedirectURI = "http://127.0.0.1:" + strconv.Itoa(port) + "/oauth/cb"
	if _, err := login.Run(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if tb.authRedirect != cfg.RedirectURI || tb.exchRedirect != cfg.RedirectURI {
		t.Errorf("redirect URI not exact: %q / %q", tb.authRedirect, tb.exchRedirect)
	}
	cfg.RedirectURI = "http://example.com/cb"
	if _, err := login.Run(context.Background(), cfg); err == nil {
		t.Error("a non-loopback redirect URI was accepted")
	}
}

func TestLoginVendorRefusal(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	cfg := tb.config(nil)
	cfg.Open = func(u string) error {
		au, _ := url.Parse(u)
		q := au.Query()
		go func() {
			resp, err := http.Get(q.Get("redirect_uri") + "?error=access_denied&state=" + url.QueryEscape(q.Get("state")))
			if err == nil {
				resp.Body.Close()
			}
		}()
		return nil
	}
	_, err := login.Run(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "access_denied") {
		t.Fatalf("err = %v", err)
	}
}

func TestLoginTimeout(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	cfg := tb.config(nil)
	cfg.Open = nil
	cfg.Timeout = 100 * time.Millisecond // nobody opens the URL
	_, err := login.Run(context.Background(), cfg)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
}

// A second callback (a double click, a browser retry) arrives while the first one's code is
// being exchanged. It is answered at once instead of holding the login, and neither it nor
// an idle browser connection delays handing the token to the caller, who saves it.
func TestStrayCallbackDoesNotHoldTheLogin(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	cfg := tb.config(nil)
	var stray string
	var idle net.Conn
	t.Cleanup(func() {
		if idle != nil {
			idle.Close()
		}
	})
	cfg.Open = func(u string) error {
		au, _ := url.Parse(u)
		q := au.Query()
		stray = q.Get("redirect_uri") + "?code=again&state=" + url.QueryEscape(q.Get("state"))
		var err error
		// A browser's speculative connection that never sends a request.
		if idle, err = net.Dial("tcp", strings.TrimPrefix(strings.SplitN(q.Get("redirect_uri"), "/callback", 2)[0], "http://")); err != nil {
			return err
		}
		return tb.browser(t)(u)
	}
	exchange := cfg.Exchange
	var strayStatus int
	var strayErr error
	cfg.Exchange = func(ctx context.Context, code, redirect, verifier string) (*oauth2.Token, error) {
		c := &http.Client{Timeout: 3 * time.Second} // far longer than an answer takes
		resp, err := c.Get(stray)
		if err == nil {
			resp.Body.Close()
			strayStatus = resp.StatusCode
		}
		strayErr = err
		return exchange(ctx, code, redirect, verifier)
	}
	tok, err := login.Run(context.Background(), cfg)
	if err != nil || tok.AccessToken == "" {
		t.Fatalf("login: %v", err)
	}
	if strayErr != nil || strayStatus < 400 {
		t.Fatalf("the second callback was held or accepted: status %d, err %v", strayStatus, strayErr)
	}
	// The login is over: the callback server no longer holds the idle connection open.
	_ = idle.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := idle.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the callback server still holds a connection after the login returned: %v", err)
	}
	waitFor(t, func() bool {
		tb.mu.Lock()
		defer tb.mu.Unlock()
		return len(tb.pages) == 1
	})
	if !strings.HasPrefix(tb.pages[0], "200 ") {
		t.Errorf("the browser's page: %q", tb.pages[0])
	}
}

// On a headless server the browser runs elsewhere: its last address, the redirect it could
// not load, is pasted back. Lines that are not this login's answer are refused with a word,
// and the one that is completes the login without any loopback callback.
func TestLoginPastedRedirect(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	pr, pw := io.Pipe()
	defer pw.Close()
	cfg := tb.config(func(u string) error {
		go func() {
			// The remote browser: it follows the authorization page but cannot reach the
			// loopback address it is sent to, so it stops there.
			hc := &http.Client{CheckRedirect: func(req *http.Request, _ []*http.Request) error {
				if req.URL.Hostname() == "127.0.0.1" && req.URL.Path == "/callback" {
					return http.ErrUseLastResponse
				}
				return nil
			}}
			resp, err := hc.Get(u)
			if err != nil {
				t.Errorf("browser: %v", err)
				return
			}
			resp.Body.Close()
			redirected := resp.Header.Get("Location")
			wrong, _ := url.Parse(redirected)
			q := wrong.Query()
			q.Set("state", "forged")
			wrong.RawQuery = q.Encode()
			_, _ = io.WriteString(pw, "\nnot a url %%\n"+wrong.String()+"\n"+redirected+"\n")
		}()
		return nil
	})
	cfg.Paste = pr
	tok, err := login.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if st, _, err := tb.cli.Call(context.Background(), tok.AccessToken, ""); err != nil || st != http.StatusOK {
		t.Fatalf("the token from the pasted login is rejected: %d %v", st, err)
	}
	out := tb.out.String()
	for _, want := range []string{"paste that page's whole address", "That is not an address", "does not belong to this login"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

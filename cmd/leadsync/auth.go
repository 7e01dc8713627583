package main

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/leadsync/leadsync/internal/app"
	"github.com/leadsync/leadsync/internal/vendors"
	"github.com/leadsync/leadsync/store"
	"github.com/leadsync/leadsync/store/login"
)

func authLogin(ctx context.Context, f *flags, name string, noBrowser bool, timeout time.Duration, stdout, stderr io.Writer) (int, error) {
	a, c, code, err := openConn(ctx, f, name)
	if err != nil {
		return code, err
	}
	defer a.Close()
	if c.Static {
		return exitUsage, staticLoginError(c)
	}
	// --no-browser: a headless server. The URL is opened on another machine, and the address
	// its browser is sent back to (which does not load there) is pasted on stdin.
	open, paste := login.OpenBrowser, io.Reader(nil)
	if noBrowser {
		open, paste = nil, os.Stdin
	}
	if err := a.Login(ctx, c, open, paste, stderr, timeout); err != nil {
		return exitFailed, err
	}
	fmt.Fprintf(stdout, "connection %s authorized; its tokens are stored encrypted\n", name)
	return exitOK, nil
}

// staticLoginError: a connection of static tokens has nothing to authorize.
func staticLoginError(c *app.Conn) error {
	return usageError{fmt.Sprintf("connection %s authenticates with static tokens from its secrets (%s auth), "+
		"not OAuth: there is nothing to log in; put the token in its secret (`leadsync auth status` shows its state)",
		c.Config.Name, c.Config.Source)}
}

// openConn wires leadsync for the connection named name, without the warehouse (only the
// token store is needed). A name the configuration does not enable is a usage error, before
// anything is opened. Close the App when done.
func openConn(ctx context.Context, f *flags, name string) (*app.App, *app.Conn, int, error) {
	cfg, err := f.loadWithKey()
	if err != nil {
		return nil, nil, exitUsage, err
	}
	if err := checkConnection(cfg, name); err != nil {
		return nil, nil, exitUsage, err
	}
	a, err := app.Open(ctx, cfg, newLogger(cfg, f.stderr), app.Options{NoSink: true, Version: buildVersion().String()})
	if err != nil {
		return nil, nil, exitFailed, err
	}
	c, err := a.Conn(name)
	if err != nil {
		a.Close()
		return nil, nil, exitUsage, err
	}
	return a, c, exitOK, nil
}

func authPassword(ctx context.Context, f *flags, name, pwFile string, stdout, stderr io.Writer) (int, error) {
	a, c, code, err := openConn(ctx, f, name)
	if err != nil {
		return code, err
	}
	defer a.Close()
	if c.Static {
		return exitUsage, staticLoginError(c)
	}
	if _, ok := c.Vendor.(vendors.PasswordGranter); !ok {
		return exitUsage, usageError{fmt.Sprintf("connection %s (%s) has no password grant: use `leadsync auth login %s`", name, c.Config.Source, name)}
	}
	pw, err := readPassword(pwFile, c, stderr)
	if err != nil {
		return exitUsage, err
	}
	if err := a.PasswordLogin(ctx, c, pw); err != nil {
		return exitFailed, err
	}
	user, _, _ := c.Config.PasswordGrant()
	fmt.Fprintf(stdout, "connection %s authorized as %s; its tokens are stored encrypted\n", name, user)
	return exitOK, nil
}

// readPassword reads from a file, the configured secret, or a no-echo prompt — never argv.
func readPassword(file string, c *app.Conn, prompt io.Writer) (string, error) {
	user, configured, ok := c.Config.PasswordGrant()
	switch {
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", usageError{fmt.Sprintf("--password-file: %v", err)}
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	case ok:
		return configured.Resolve()
	case term.IsTerminal(int(os.Stdin.Fd())):
		fmt.Fprintf(prompt, "password for %s: ", user)
		b, err := term.ReadPassword(int(os.Stdin.Fd()))
		fmt.Fprintln(prompt)
		return string(b), err
	}
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil && line == "" {
		return "", usageError{"no password: give --password-file, set the connection's password, or type it at the prompt"}
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// The `auth status --json` document: one entry per grant and per static-token connection.
type (
	authStatusDoc struct {
		Grants []grantDoc `json:"grants"`
	}
	grantDoc struct {
		Connection    string    `json:"connection"`
		Source        string    `json:"source,omitempty"` // "" for a connection no longer configured
		Auth          string    `json:"auth"`             // oauth | static
		Subject       string    `json:"subject,omitempty"`
		Scopes        []string  `json:"scopes"`
		ExpiresAt     time.Time `json:"expires_at,omitzero"`
		LastRefreshAt time.Time `json:"last_refresh_at,omitzero"`
		SavedAt       time.Time `json:"saved_at,omitzero"`
		State         string    `json:"state"` // ok | needs_reauth | needs_rotation
		Reason        string    `json:"reason,omitempty"`
		Fix           string    `json:"fix,omitempty"`
	}
)

func authStatus(ctx context.Context, f *flags, asJSON bool, stdout io.Writer) (int, error) {
	a, err := openApp(ctx, f, app.Options{NoSink: true})
	if err != nil {
		return exitFailed, err
	}
	defer a.Close()
	doc, err := authStatusOf(ctx, a)
	if err != nil {
		return exitFailed, err
	}
	if asJSON {
		return exitOK, writeJSON(stdout, doc)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONNECTION\tSUBJECT\tSCOPES\tEXPIRES\tLAST REFRESH\tSTATE")
	for _, g := range doc.Grants {
		state := "ok"
		switch g.State {
		case "needs_reauth":
			state = fmt.Sprintf("NEEDS RE-AUTH (%s): %s", g.Reason, g.Fix)
		case "needs_rotation":
			state = "NEEDS ROTATION: " + g.Fix
		}
		subject, scopes, expires, refresh := cmp.Or(g.Subject, "-"), cmp.Or(strings.Join(g.Scopes, " "), "-"), when(g.ExpiresAt), when(g.LastRefreshAt)
		if g.Auth == "static" {
			subject, expires = "(static tokens)", "never"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", g.Connection, subject, scopes, expires, refresh, state)
	}
	return exitOK, tw.Flush()
}

// authStatusOf lists the stored grants, then the connections that use static tokens.
func authStatusOf(ctx context.Context, a *app.App) (authStatusDoc, error) {
	doc := authStatusDoc{Grants: []grantDoc{}}
	st, err := a.Store.Status(ctx)
	if err != nil {
		return doc, err
	}
	sourceOf := map[string]string{}
	for _, c := range a.Config.Connections {
		sourceOf[c.Name] = c.Source
	}
	for _, g := range st {
		d := grantDoc{Connection: g.Connection, Source: sourceOf[g.Connection], Auth: "oauth", Subject: g.Subject,
			Scopes: append([]string{}, g.Scopes...), ExpiresAt: g.Expiry, LastRefreshAt: g.LastRefreshAt, SavedAt: g.SavedAt, State: "ok"}
		if g.NeedsReauth {
			d.State, d.Reason, d.Fix = "needs_reauth", g.Reason, "leadsync auth login "+g.Connection
		}
		doc.Grants = append(doc.Grants, d)
	}
	rejected, err := a.Store.StaticRejections(ctx)
	if err != nil {
		return doc, err
	}
	for _, c := range a.Conns {
		if !c.Static {
			continue
		}
		d := grantDoc{Connection: c.Config.Name, Source: c.Config.Source, Auth: "static", Scopes: []string{}, State: "ok"}
		for _, r := range rejected {
			if r.Connection == c.Config.Name {
				d.State, d.Fix = "needs_rotation", app.NeedsRotationText(r)
			}
		}
		doc.Grants = append(doc.Grants, d)
	}
	return doc, nil
}

// when is a time for people: local, with its zone, so that it reads the same in a log.
func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05 MST")
}

func authForget(ctx context.Context, f *flags, name string, stdout io.Writer) (int, error) {
	// Any name: the tokens of a connection since removed from the configuration may go too.
	a, err := openApp(ctx, f, app.Options{NoSink: true})
	if err != nil {
		return exitFailed, err
	}
	defer a.Close()
	if err := a.Store.Forget(ctx, name); err != nil {
		return exitFailed, err
	}
	fmt.Fprintf(stdout, "tokens of connection %s deleted\n", name)
	return exitOK, nil
}

func authRotateKey(ctx context.Context, f *flags, newKey string, stdout io.Writer) (int, error) {
	if newKey == "" {
		return exitUsage, usageError{"auth rotate-key: --new-key FILE is required"}
	}
	b, err := os.ReadFile(newKey)
	if err != nil {
		return exitUsage, usageError{fmt.Sprintf("--new-key: %v", err)}
	}
	key, err := store.ParseKey(b)
	if err != nil {
		return exitUsage, usageError{fmt.Sprintf("--new-key %s: %v", newKey, err)}
	}
	a, err := openApp(ctx, f, app.Options{NoSink: true})
	if err != nil {
		return exitFailed, err
	}
	defer a.Close()
	if err := a.Store.RotateKey(ctx, key); err != nil {
		return exitFailed, err
	}
	fmt.Fprintf(stdout, "every token is now encrypted with the key in %s.\nPoint token_store.key_file (or the token-key credential) at it before the next start; the old key no longer opens the store.\n", newKey)
	return exitOK, nil
}

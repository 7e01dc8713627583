package leadconnector

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/httpx"
)

// streamDef is one stream of the source: what it writes, the OAuth scopes its own
// endpoint needs (beyond the listing and minting that every stream relies on), and how it
// reads a location. Each stream's file registers its own in an init function.
type streamDef struct {
	sources.Stream
	// Order places the stream among the others: the worker syncs them in that order.
	Order int
	// Scope is the scope of the stream's endpoint (e.g. "opportunities.readonly").
	Scope string
	read  func(s *Source, ctx context.Context, acct sources.Account, cur sources.Cursor, opts sources.ReadOptions) iter.Seq2[sources.Page, error]
}

var (
	streamsMu  sync.Mutex
	streamDefs []streamDef
)

// registerStream adds a stream; a name registered twice panics (a programming error).
func registerStream(d streamDef) {
	streamsMu.Lock()
	defer streamsMu.Unlock()
	for _, e := range streamDefs {
		if e.Name == d.Name {
			panic("leadconnector: stream " + d.Name + " registered twice")
		}
	}
	streamDefs = append(streamDefs, d)
	slices.SortStableFunc(streamDefs, func(a, b streamDef) int { return cmp.Compare(a.Order, b.Order) })
}

// streamDef returns the registered stream called name.
func lookupStream(name string) (streamDef, bool) {
	streamsMu.Lock()
	defer streamsMu.Unlock()
	for _, d := range streamDefs {
		if d.Name == name {
			return d, true
		}
	}
	return streamDef{}, false
}

// Streams implements sources.Source: every registered stream, in order.
func (s *Source) Streams() []sources.Stream {
	streamsMu.Lock()
	defer streamsMu.Unlock()
	out := make([]sources.Stream, len(streamDefs))
	for i, d := range streamDefs {
		out[i] = d.Stream
	}
	return out
}

var _ sources.ScopeNeeder = (*Source)(nil)

// NeededScopes implements sources.ScopeNeeder: every stream is read with location tokens
// that the Company grant mints (oauth.write) for the installed locations it lists
// (oauth.readonly), plus the scope of the stream's own endpoint. Private Integration Tokens
// have no grant.
func (s *Source) NeededScopes(stream string) []string {
	d, ok := lookupStream(stream)
	if len(s.cfg.Locations) > 0 || !ok {
		return nil
	}
	scopes := []string{d.Scope, "oauth.readonly", "oauth.write"}
	slices.Sort(scopes)
	return scopes
}

// Read implements sources.Source.
func (s *Source) Read(ctx context.Context, acct sources.Account, stream string, cur sources.Cursor, opts sources.ReadOptions) iter.Seq2[sources.Page, error] {
	d, ok := lookupStream(stream)
	if !ok {
		return func(yield func(sources.Page, error) bool) {
			yield(sources.Page{}, fmt.Errorf("leadconnector: no stream %q", stream))
		}
	}
	return d.read(s, ctx, acct, cur, opts)
}

// streamError maps the error of a stream's request: a 403 anywhere in err's chain (the
// request's, or the location token mint's) restricts the stream; the vendor's 401 "not
// authorized for this scope" on one of the stream's own endpoints is a missing scope (a
// scope the mint lacks fails the account like any other error); the rest is wrapped with the
// account.
func (s *Source) streamError(acct sources.Account, stream string, err error, endpoints ...string) error {
	for e := err; e != nil; e = errors.Unwrap(e) {
		he, ok := e.(*httpx.Error)
		if !ok {
			continue
		}
		switch {
		case he.Status == http.StatusForbidden:
			return &sources.RestrictedError{Vendor: sources.LeadConnector, AccountID: acct.ID, Stream: stream,
				HIPAA: acct.HIPAAProtected, Message: he.Message}
		case he.Status == http.StatusUnauthorized && isScopeMessage(he.Message) && slices.Contains(endpoints, he.Endpoint):
			d, _ := lookupStream(stream)
			return &sources.MissingScopeError{Vendor: sources.LeadConnector, AccountID: acct.ID, Stream: stream,
				Scope: d.Scope, Message: he.Message}
		}
	}
	return fmt.Errorf("location %s: stream %s: %w", acct.ID, stream, err)
}

// isScopeMessage is the vendor's 401 for a token without the endpoint's scope ("The token
// is not authorized for this scope."), not its 401 for the wrong token class ("This
// authClass type is not allowed to access this scope.").
func isScopeMessage(msg string) bool {
	return strings.Contains(strings.ToLower(msg), "not authorized for this scope")
}

// locationGet is a GET of one of a location's resources with the location's token, charged
// to the location's bucket; decode reads the body (httpx retries a malformed one).
func (s *Source) locationGet(ctx context.Context, acct sources.Account, creds sources.Credentials, path, endpoint string,
	q url.Values, decode func(body []byte) error) error {
	_, err := s.api.Decode(ctx, httpx.Request{Method: http.MethodGet, Path: path, Endpoint: endpoint, Query: q,
		Header: s.cfg.versionHeader(), Bucket: locationBucket(acct.ID), Auth: creds}, decode)
	return err
}

package leadconnector

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/leadsync/leadsync/sources"
)

func TestEndlessInstalledLocationsEndWithinTheBudget(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		next   func(token string) string // the nextPageToken answered to pageToken
		stopAt int
	}{
		{"fresh tokens", func(tok string) string { return tok + "x" }, 6},
		// Not an immediate repeat: a→b→a.
		{"cycle", func(tok string) string { return map[string]string{"": "a", "a": "b", "b": "a"}[tok] }, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var requests atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := requests.Add(1)
				tok := r.URL.Query().Get("pageToken")
				_, _ = fmt.Fprintf(w, `{"items":[{"_id":"L%d","name":"n"}],"pagination":{"hasNextPage":true,"nextPageToken":%q}}`, n, tc.next(tok))
			}))
			t.Cleanup(srv.Close)
			tokens := &memTokens{now: time.Now, accounts: map[string]*memAccount{},
				grant: &oauth2.Token{AccessToken: "lc_at_company", Expiry: time.Now().Add(time.Hour)}}
			src, err := New(Config{BaseURL: srv.URL, AppID: "app", CompanyID: "C", MaxPages: 5}, tokens)
			if err != nil {
				t.Fatal(err)
			}
			var last error
			for _, err := range src.Accounts(context.Background()) {
				last = err
			}
			if !errors.Is(last, sources.ErrEndlessPaging) || !strings.Contains(last.Error(), "installed-locations") ||
				!strings.Contains(last.Error(), fmt.Sprintf("page %d:", tc.stopAt)) || requests.Load() != int64(tc.stopAt) {
				t.Fatalf("%d requests: %v", requests.Load(), last)
			}
		})
	}
}

func TestBadContactsAreQuarantinedAndThePassGoesOn(t *testing.T) {
	t.Parallel()
	deep := strings.Repeat("[", 20000) + strings.Repeat("]", 20000)
	var searches atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth/location-token", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"accessToken":"lc_at_loc","expiresIn":86399,"locationId":"L"}`))
	})
	mux.HandleFunc("POST /contacts/search", func(w http.ResponseWriter, r *http.Request) {
		searches.Add(1)
		_, _ = w.Write([]byte(`{"contacts":[{"id":"a","email":"a@example.com","dateUpdated":"2026-01-01T00:00:00.000Z"},` +
			`{"id":null,"email":"b@example.com"},{"id":"c","tags":{"x":1},"phone":5551234},` + deep + `,` +
			`{"id":"e","dateUpdated":"2026-01-02T00:00:00.000Z"}],"total":5}`))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	tokens := &memTokens{now: time.Now, accounts: map[string]*memAccount{},
		grant: &oauth2.Token{AccessToken: "lc_at_company", Expiry: time.Now().Add(time.Hour)}}
	src, err := New(Config{BaseURL: srv.URL, AppID: "app", CompanyID: "C"}, tokens)
	if err != nil {
		t.Fatal(err)
	}
	var pages []sources.Page
	for p, err := range src.Read(context.Background(), sources.Account{ID: "L"}, StreamContacts, "", sources.ReadOptions{}) {
		if err != nil {
			t.Fatalf("the pass failed: %v", err)
		}
		pages = append(pages, p)
	}
	if len(pages) != 1 || len(pages[0].Leads) != 2 || len(pages[0].Rejected) != 3 || searches.Load() != 1 {
		t.Fatalf("%d pages, %d searches; want one page of 2 leads and 3 rejected after one search", len(pages), searches.Load())
	}
	for i, want := range []struct{ id, reason string }{{"", "no id"}, {"c", "want a list of strings"}, {"", "nested deeper than 512"}} {
		r := pages[0].Rejected[i]
		if r.ID != want.id || !strings.Contains(r.Reason, want.reason) || strings.Contains(r.Reason, "example.com") || strings.Contains(r.Reason, "555") {
			t.Errorf("rejected %d: %v, want %q %q", i, r, want.id, want.reason)
		}
	}
}

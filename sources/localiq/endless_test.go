package localiq_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/localiq"
)

// endless serves a vendor that always says more: page n of identities and of interactions
// holds fresh records, or the same ones every time when repeat is set.
func endless(t *testing.T, repeat bool, maxPages int) (*localiq.Source, *atomic.Int64) {
	t.Helper()
	var requests atomic.Int64
	mux := http.NewServeMux()
	page := func(r *http.Request) int {
		requests.Add(1)
		if repeat {
			return 1
		}
		n, _ := strconv.Atoi(r.URL.Query().Get("page"))
		return n
	}
	mux.HandleFunc("GET /identities/v3", func(w http.ResponseWriter, r *http.Request) {
		n := page(r)
		advs := []map[string]any{}
		for i := range 2 {
			advs = append(advs, map[string]any{"gmaid": fmt.Sprintf("USA_%d_%d", n, i), "active_state": 2})
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"authorized_advertisers": advs, "advertiser_count": 0})
	})
	mux.HandleFunc("GET /crm/contact_interactions", func(w http.ResponseWriter, r *http.Request) {
		n := page(r)
		_ = json.NewEncoder(w).Encode(map[string]any{"page": n, "total_pages": n + 1,
			"contact_interactions": []map[string]any{{"id": n, "event_type": "call"}}})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	creds := &memCreds{tok: &oauth2.Token{AccessToken: "liq_at", Expiry: time.Now().Add(time.Hour)}}
	src, err := localiq.New(localiq.Config{BaseURL: srv.URL, User: "u@example.com", AccountsPageSize: 2, MaxPages: maxPages,
		RateLimit: 1000}, memTokens{creds})
	if err != nil {
		t.Fatal(err)
	}
	return src, &requests
}

func TestEndlessListingsEndWithinTheBudget(t *testing.T) {
	t.Parallel()
	for _, repeat := range []bool{false, true} {
		t.Run(fmt.Sprintf("repeat=%v", repeat), func(t *testing.T) {
			t.Parallel()
			stopAt := 6 // the page past the budget of 5
			if repeat {
				stopAt = 2 // the page that holds nothing new
			}
			src, requests := endless(t, repeat, 5)
			var err error
			for _, e := range src.Accounts(context.Background()) {
				err = e
			}
			if !errors.Is(err, sources.ErrEndlessPaging) || !strings.Contains(err.Error(), "identities/v3") ||
				!strings.Contains(err.Error(), fmt.Sprintf("page %d:", stopAt)) {
				t.Fatalf("advertisers: %v", err)
			}
			n := requests.Load()
			err = nil
			acct := sources.Account{Source: sources.LocaliQ, ID: "USA_1"}
			for _, e := range src.Read(context.Background(), acct, localiq.StreamInteractions, "", sources.ReadOptions{}) {
				err = e
			}
			if !errors.Is(err, sources.ErrEndlessPaging) || !strings.Contains(err.Error(), "interactions") {
				t.Fatalf("interactions: %v", err)
			}
			if got := requests.Load() - n; got > int64(stopAt) {
				t.Fatalf("%d interactions requests for a budget of 5 pages", got)
			}
		})
	}
}

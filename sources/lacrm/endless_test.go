package lacrm_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/time/rate"

	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/httpx"
	"github.com/leadsync/leadsync/sources/lacrm"
)

type staticTokens struct{}

func (staticTokens) Grant() sources.Credentials                         { return staticTokens{} }
func (staticTokens) Account(string, sources.Minter) sources.Credentials { return staticTokens{} }
func (staticTokens) Token(context.Context) (*oauth2.Token, error) {
	return &oauth2.Token{AccessToken: "lacrm_at", Expiry: time.Now().Add(time.Hour)}, nil
}
func (staticTokens) Invalidate(*oauth2.Token) {}

// endlessLACRM is a vendor whose GetContacts always has more results: fresh contacts on
// every page, or the same page again when repeat is set.
func endlessLACRM(t *testing.T, repeat bool, cfg lacrm.Config, opts ...lacrm.Option) (*lacrm.Source, *atomic.Int64) {
	t.Helper()
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := requests.Add(1)
		if repeat {
			n = 1
		}
		var req struct{ Function string }
		_ = json.NewDecoder(r.Body).Decode(&req)
		if req.Function != "GetContacts" {
			_, _ = w.Write([]byte(`[]`))
			return
		}
		_, _ = fmt.Fprintf(w, `{"HasMoreResults":true,"Results":[{"ContactId":"%d","LastUpdate":"2026-01-01T00:00:00Z"}]}`, n)
	}))
	t.Cleanup(srv.Close)
	cfg.BaseURL, cfg.AccountID = srv.URL+"/v2/", "1"
	cfg.HTTP = srv.Client()
	src, err := lacrm.New(cfg, staticTokens{}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return src, &requests
}

func TestEndlessPagesEndWithinTheBudget(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		repeat bool
		stopAt int
	}{{false, 6}, {true, 2}} {
		t.Run(fmt.Sprintf("repeat=%v", tc.repeat), func(t *testing.T) {
			t.Parallel()
			src, requests := endlessLACRM(t, tc.repeat, lacrm.Config{MaxPages: 5, RateLimit: rate.Inf})
			var err error
			pages := 0
			for _, e := range readAll(src, context.Background(), sources.Account{ID: "1"}, "", sources.ReadOptions{Full: true}) {
				if err = e; err == nil {
					pages++
				}
			}
			if !errors.Is(err, sources.ErrEndlessPaging) || !strings.Contains(err.Error(), "GetContacts") ||
				!strings.Contains(err.Error(), fmt.Sprintf("page %d:", tc.stopAt)) {
				t.Fatalf("after %d pages: %v", pages, err)
			}
			if n := requests.Load(); n != int64(tc.stopAt) { // the pages (GetPipelines is pipeline_items')
				t.Fatalf("%d requests", n)
			}
		})
	}
}

func TestSoftStopInterruptsPagingWhileRateLimited(t *testing.T) {
	t.Parallel()
	waiting := make(chan struct{}, 1)
	// One request per hour: the second page waits on the limiter until the stop.
	src, _ := endlessLACRM(t, false, lacrm.Config{RateLimit: rate.Every(time.Hour), RateBurst: 1},
		lacrm.WithHTTPX(func(c *httpx.Config) {
			c.Sleep = func(ctx context.Context, d time.Duration) error {
				waiting <- struct{}{}
				<-ctx.Done()
				return ctx.Err()
			}
		}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		var err error
		for _, e := range readAll(src, ctx, sources.Account{ID: "1"}, "", sources.ReadOptions{}) {
			err = e
		}
		done <- err
	}()
	<-waiting
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("stopped listing ended with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the listing did not stop")
	}
}

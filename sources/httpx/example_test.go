package httpx_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"time"

	"golang.org/x/time/rate"

	"github.com/leadsync/leadsync/sources/httpx"
)

// A vendor source builds one Client per connection and names a bucket per rate-limited
// resource; Wait429 encodes the vendor's throttling rule.
func Example() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("page") == "2" {
			w.WriteHeader(http.StatusForbidden)
			_, _ = io.WriteString(w, `{"name":"not_authorized","message":"You are not permitted to perform this action."}`)
			return
		}
		_, _ = io.WriteString(w, `{"contact_interactions":[{"id":1}]}`)
	}))
	defer srv.Close()

	c := httpx.New(httpx.Config{
		Vendor:  "localiq",
		BaseURL: srv.URL,
		Limit:   func(string) (rate.Limit, int) { return 20, 20 }, // 20 requests/s
		Wait429: func(_ http.Header, now time.Time) time.Duration {
			return now.Truncate(time.Second).Add(time.Second).Sub(now) // until the next whole second
		},
	})
	stats := &httpx.Stats{}
	ctx := httpx.WithStats(context.Background(), stats)

	var page struct {
		ContactInteractions []struct{ ID int } `json:"contact_interactions"`
	}
	req := httpx.Request{Path: "crm/contact_interactions", Endpoint: "crm/contact_interactions",
		Query: url.Values{"page": {"1"}}, Bucket: "client"}
	if err := c.JSON(ctx, req, &page); err != nil {
		fmt.Println(err)
	}
	fmt.Println(len(page.ContactInteractions), "interaction(s)")

	req.Query = url.Values{"page": {"2"}}
	err := c.JSON(ctx, req, &page)
	fmt.Println(httpx.StatusOf(err), err)
	fmt.Println(stats.Requests.Load(), "requests")
	// Output:
	// 1 interaction(s)
	// 403 localiq: GET crm/contact_interactions: 403 not_authorized: You are not permitted to perform this action. (1 attempt)
	// 2 requests
}

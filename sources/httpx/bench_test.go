package httpx

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// BenchmarkDoOverhead measures what Client.Do adds to a plain net/http round trip on
// loopback (limiter, headers, stats, body limit), as a ratio against the plain round trip
// measured in the same run, interleaved so drift hits both alike.
func BenchmarkDoOverhead(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"contacts":[{"id":"a","firstName":"x"}],"total":1}`)
	}))
	defer srv.Close()
	transport := func() *http.Client {
		return &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	raw := transport()
	c := New(Config{Vendor: "bench", BaseURL: srv.URL, HTTP: transport(),
		Limit: func(string) (rate.Limit, int) { return rate.Inf, 1 }})
	ctx := WithStats(context.Background(), &Stats{})
	req := Request{Path: "contacts", Endpoint: "contacts", Bucket: "loc:1", Header: http.Header{"Version": {"2021-07-28"}}}

	viaClient := func() {
		if _, err := c.Do(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	viaRaw := func() {
		hr, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/contacts", nil)
		hr.Header.Set("Version", "2021-07-28")
		resp, err := raw.Do(hr)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.ReadAll(resp.Body)
		_ = resp.Body.Close()
	}
	const chunks, perChunk = 40, 25 // 1,000 requests each way per op
	for range perChunk {            // warm both connection pools and code paths
		viaClient()
		viaRaw()
	}
	var tClient, tRaw time.Duration
	b.ResetTimer()
	for b.Loop() {
		for range chunks {
			t0 := time.Now()
			for range perChunk {
				viaClient()
			}
			t1 := time.Now()
			for range perChunk {
				viaRaw()
			}
			tClient += t1.Sub(t0)
			tRaw += time.Since(t1)
		}
	}
	n := float64(b.N * chunks * perChunk)
	b.ReportMetric(float64(tClient.Nanoseconds())/n, "client-ns/req")
	b.ReportMetric(float64(tRaw.Nanoseconds())/n, "raw-ns/req")
	b.ReportMetric(float64(tClient-tRaw)/n, "overhead-ns/req")
	b.ReportMetric(float64(tClient)/float64(tRaw), "x-raw")
}

type cannedTransport struct{}

func (cannedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode: 200, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Request: r,
		Header: http.Header{"Content-Type": {"application/json"}},
		Body:   io.NopCloser(strings.NewReader(`{"contacts":[{"id":"a","firstName":"x"}],"total":1}`)),
	}, nil
}

// BenchmarkDoInMemory isolates the client's own CPU cost per request (no network), as a
// ratio against a plain http.Client over the same canned transport.
func BenchmarkDoInMemory(b *testing.B) {
	raw := &http.Client{Transport: cannedTransport{}}
	c := New(Config{Vendor: "bench", BaseURL: "http://crm.invalid", HTTP: &http.Client{Transport: cannedTransport{}},
		Limit: func(string) (rate.Limit, int) { return rate.Inf, 1 }})
	ctx := WithStats(context.Background(), &Stats{})
	req := Request{Path: "contacts", Endpoint: "contacts", Bucket: "loc:1", Header: http.Header{"Version": {"2021-07-28"}}}
	const n = 2000
	var tClient, tRaw time.Duration
	for b.Loop() {
		t0 := time.Now()
		for range n {
			if _, err := c.Do(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
		t1 := time.Now()
		for range n {
			hr, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://crm.invalid/contacts", nil)
			hr.Header.Set("Version", "2021-07-28")
			resp, err := raw.Do(hr)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.ReadAll(resp.Body)
			_ = resp.Body.Close()
		}
		tClient += t1.Sub(t0)
		tRaw += time.Since(t1)
	}
	total := float64(b.N * n)
	b.ReportMetric(float64(tClient.Nanoseconds())/total, "client-ns/req")
	b.ReportMetric(float64(tRaw.Nanoseconds())/total, "raw-ns/req")
	b.ReportMetric(float64(tClient-tRaw)/total, "overhead-ns/req")
	b.ReportMetric(float64(tClient)/float64(tRaw), "x-raw")
}

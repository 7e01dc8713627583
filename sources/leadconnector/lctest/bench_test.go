package lctest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"testing"
)

// BenchmarkContactSearchPage100 measures how many searchAfter pages of 100 contacts the fake
// serves per second on loopback through a real HTTP client (decode included).
func BenchmarkContactSearchPage100(b *testing.B) {
	srv := NewServer(Options{Seed: 1, Locations: 1, ContactsPerLocation: 5000})
	defer srv.Close()
	srv.SetLimits(1<<30, DefaultInterval, 1<<30) // measure serving, not throttling
	p := srv.Authorize("")
	loc := srv.LocationIDs()[0]
	form := url.Values{"companyId": {srv.CompanyID()}, "locationId": {loc}}
	req, _ := http.NewRequest("POST", srv.URL+"/oauth/location-token", bytes.NewBufferString(form.Encode()))
	req.Header.Set("Version", V3)
	req.Header.Set("Authorization", "Bearer "+p.Access)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"accessToken"`
	}
	if err := json.NewDecoder(res.Body).Decode(&tok); err != nil {
		b.Fatal(err)
	}
	res.Body.Close()

	client := &http.Client{}
	var after []any
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		body := map[string]any{"locationId": loc, "pageLimit": 100,
			"sort": []any{map[string]any{"field": "dateUpdated", "direction": "asc"}}}
		if after != nil {
			body["searchAfter"] = after
		}
		raw, _ := json.Marshal(body)
		req, _ := http.NewRequest("POST", srv.URL+"/contacts/search", bytes.NewReader(raw))
		req.Header.Set("Version", V3)
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		req.Header.Set("Content-Type", "application/json")
		res, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		var page struct {
			Contacts []struct {
				SearchAfter []any `json:"searchAfter"`
			} `json:"contacts"`
		}
		err = json.NewDecoder(res.Body).Decode(&page)
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if err != nil || res.StatusCode != 200 {
			b.Fatalf("page %d: %d %v", i, res.StatusCode, err)
		}
		if len(page.Contacts) < 100 {
			after = nil // wrap around
		} else {
			after = page.Contacts[len(page.Contacts)-1].SearchAfter
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pages/s")
}

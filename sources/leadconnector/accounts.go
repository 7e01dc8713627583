package leadconnector

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"log/slog"
	"net/url"
	"strconv"

	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/httpx"
)

// installedPageSize is the largest page the installed-locations endpoints allow.
const installedPageSize = 100

// locationJSON is one installed location, the same in both versions.
type locationJSON struct {
	ID          flexString `json:"_id"`
	Name        flexString `json:"name"`
	IsInstalled *bool      `json:"isInstalled"`
	InstalledAt flexString `json:"installedAt"`
}

// installedPage is the envelope of a page of either version: v3 items + pagination, or
// 2021 locations + count.
type installedPage struct {
	Count      *int `json:"count"`
	Pagination *struct {
		HasNextPage   bool       `json:"hasNextPage"`
		NextPageToken flexString `json:"nextPageToken"`
	} `json:"pagination"`
}

// installedResult is a decoded page: the accounts, the v3 next page token ("" when done),
// how many locations the page held, the 2021 total (-1 unknown), the PageGuard keys of its
// entries, and the indexes of the entries that are not locations (skipped).
type installedResult struct {
	accts []sources.Account
	next  string
	n     int
	total int
	keys  []string
	bad   []int
}

// decodeInstalled parses an installed-locations page of either version into accounts of
// companyID. An entry that is not a location is skipped, not fatal: one bad entry must not
// hide every location of the agency.
func decodeInstalled(body []byte, companyID string) (installedResult, error) {
	env, recs, found, err := sources.SplitRecords(body, "items")
	if err == nil && !found {
		env, recs, _, err = sources.SplitRecords(body, "locations")
	}
	if err != nil {
		return installedResult{}, fmt.Errorf("decode installed locations: %w", err)
	}
	var p installedPage
	if err := json.Unmarshal(env, &p); err != nil {
		return installedResult{}, fmt.Errorf("decode installed locations: %w", err)
	}
	res := installedResult{total: -1, n: len(recs)}
	if p.Count != nil {
		res.total = *p.Count
	}
	for i, r := range recs {
		var l locationJSON
		if r.TooDeep() || json.Unmarshal(r.Raw, &l) != nil || l.ID == "" {
			res.bad = append(res.bad, i)
			res.keys = append(res.keys, r.Key(""))
			continue
		}
		res.keys = append(res.keys, r.Key(string(l.ID)))
		if l.IsInstalled != nil && !*l.IsInstalled {
			continue
		}
		a := sources.Account{Source: sources.LeadConnector, ID: string(l.ID), Name: string(l.Name), Active: true,
			Meta: map[string]string{"company_id": companyID}}
		if l.InstalledAt != "" {
			a.Meta["installed_at"] = string(l.InstalledAt)
		}
		res.accts = append(res.accts, a)
	}
	if p.Pagination != nil && p.Pagination.HasNextPage {
		res.next = string(p.Pagination.NextPageToken)
	}
	return res, nil
}

// Accounts lists the locations the app is installed on: pageToken paging in v3, skip/limit
// in 2021-07-28. With Private Integration Tokens, they are the configured locations.
func (s *Source) Accounts(ctx context.Context) iter.Seq2[sources.Account, error] {
	return func(yield func(sources.Account, error) bool) {
		if len(s.cfg.Locations) > 0 {
			// Private Integration Tokens: an agency PIT cannot list installed locations
			// (highlevel-api-docs#226), so the configuration names them.
			for _, l := range s.cfg.Locations {
				a := sources.Account{Source: sources.LeadConnector, ID: l.ID, Name: l.Name, Active: true,
					Meta: map[string]string{"auth": AuthPrivateIntegration}}
				if !yield(a, nil) {
					return
				}
			}
			return
		}
		company, err := s.companyID(ctx)
		if err != nil {
			yield(sources.Account{}, err)
			return
		}
		v3 := s.cfg.APIVersion == V3
		path, endpoint := "/oauth/installed-locations", "oauth/installed-locations"
		if !v3 {
			path, endpoint = "/oauth/installedLocations", "oauth/installedLocations"
		}
		guard := sources.PageGuard{What: "leadconnector: list installed locations (" + endpoint + ")", Max: s.cfg.MaxPages}
		seen := map[string]bool{}
		token, skip := "", 0
		for page := 1; ; page++ {
			q := url.Values{"companyId": {company}, "appId": {s.cfg.AppID}, "isInstalled": {"true"}}
			if v3 {
				q.Set("pageSize", strconv.Itoa(installedPageSize))
				if token != "" {
					q.Set("pageToken", token)
				}
			} else {
				q.Set("skip", strconv.Itoa(skip))
				q.Set("limit", strconv.Itoa(installedPageSize))
			}
			// Decode, not Do: a truncated or malformed page is retried like a dropped one.
			var res installedResult
			_, err := s.api.Decode(ctx, httpx.Request{Path: path, Endpoint: endpoint, Query: q,
				Header: s.cfg.versionHeader(), Bucket: bucketCompany, Auth: s.tokens.Grant()}, func(body []byte) (err error) {
				res, err = decodeInstalled(body, company)
				return err
			})
			if err != nil {
				yield(sources.Account{}, fmt.Errorf("leadconnector: list installed locations (page %d): %w", page, err))
				return
			}
			for _, i := range res.bad {
				s.cfg.Logger.WarnContext(ctx, "leadconnector: skipping an installed-locations entry that is not a location",
					slog.Int("page", page), slog.Int("index", i))
			}
			if err := guard.Check(res.next, res.keys); err != nil {
				yield(sources.Account{}, err)
				return
			}
			for _, a := range res.accts {
				if seen[a.ID] { // a listing that shifted between pages
					continue
				}
				seen[a.ID] = true
				if !yield(a, nil) {
					return
				}
			}
			if v3 {
				if res.next == "" {
					return
				}
				token = res.next
				continue
			}
			// 2021: an empty page, or the count reached, ends the listing (the server may
			// cap limit below what we asked, so a short page alone does not).
			skip += res.n
			if res.n == 0 || (res.total >= 0 && skip >= res.total) {
				return
			}
		}
	}
}

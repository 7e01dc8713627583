package leadconnector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/url"
	"strconv"

	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/httpx"
)

// installedPageSize is the largest page the installed-locations endpoints allow.
const installedPageSize = 100

// maxInstalledPages bounds a listing whose paging never ends.
const maxInstalledPages = 10000

// locationJSON is one installed location, the same in both versions.
type locationJSON struct {
	ID          flexString `json:"_id"`
	Name        flexString `json:"name"`
	IsInstalled *bool      `json:"isInstalled"`
	InstalledAt flexString `json:"installedAt"`
}

// installedPage is one page of either version: v3 items + pagination, or 2021 locations +
// count.
type installedPage struct {
	Items      []locationJSON `json:"items"`
	Locations  []locationJSON `json:"locations"`
	Count      *int           `json:"count"`
	Pagination *struct {
		HasNextPage   bool       `json:"hasNextPage"`
		NextPageToken flexString `json:"nextPageToken"`
	} `json:"pagination"`
}

// installedResult is a decoded page: the accounts, the v3 next page token ("" when done),
// how many locations the page held and the 2021 total (-1 unknown).
type installedResult struct {
	accts []sources.Account
	next  string
	n     int
	total int
}

// decodeInstalled parses an installed-locations page of either version into accounts of
// companyID.
func decodeInstalled(body []byte, companyID string) (installedResult, error) {
	var p installedPage
	if err := json.Unmarshal(body, &p); err != nil {
		return installedResult{}, fmt.Errorf("decode installed locations: %w", err)
	}
	res := installedResult{total: -1}
	if p.Count != nil {
		res.total = *p.Count
	}
	list := p.Items
	if list == nil {
		list = p.Locations
	}
	for _, l := range list {
		if l.ID == "" {
			return installedResult{}, errors.New("decode installed locations: a location without _id")
		}
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
	res.n = len(list)
	return res, nil
}

// Accounts lists the locations the app is installed on: pageToken paging in v3, skip/limit
// in 2021-07-28.
func (s *Source) Accounts(ctx context.Context) iter.Seq2[sources.Account, error] {
	return func(yield func(sources.Account, error) bool) {
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
		seen := map[string]bool{}
		token, skip := "", 0
		for range maxInstalledPages {
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
			// JSON, not Do: a truncated or malformed page is retried like a dropped one.
			var body json.RawMessage
			err := s.api.JSON(ctx, httpx.Request{Path: path, Endpoint: endpoint, Query: q,
				Header: s.cfg.versionHeader(), Bucket: bucketCompany, Auth: s.tokens.Grant()}, &body)
			if err != nil {
				yield(sources.Account{}, fmt.Errorf("leadconnector: list installed locations: %w", err))
				return
			}
			page, err := decodeInstalled(body, company)
			if err != nil {
				yield(sources.Account{}, fmt.Errorf("leadconnector: %w", err))
				return
			}
			for _, a := range page.accts {
				if seen[a.ID] { // a listing that shifted between pages
					continue
				}
				seen[a.ID] = true
				if !yield(a, nil) {
					return
				}
			}
			if v3 {
				if page.next == "" {
					return
				}
				if page.next == token {
					yield(sources.Account{}, errors.New("leadconnector: list installed locations: the page token did not advance"))
					return
				}
				token = page.next
				continue
			}
			// 2021: an empty page, or the count reached, ends the listing (the server may
			// cap limit below what we asked, so a short page alone does not).
			skip += page.n
			if page.n == 0 || (page.total >= 0 && skip >= page.total) {
				return
			}
		}
		yield(sources.Account{}, errors.New("leadconnector: list installed locations: too many pages"))
	}
}

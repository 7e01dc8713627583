package lctest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"time"
)

// MaxPageLimit is the largest pageLimit the sandbox accepts (the documented safe value).
const MaxPageLimit = 100

// maxPagedRecords is where page-number paging stops.
const maxPagedRecords = 10000

type searchRequest struct {
	LocationID  any               `json:"locationId"`
	PageLimit   any               `json:"pageLimit"`
	Page        *int              `json:"page"`
	SearchAfter []json.RawMessage `json:"searchAfter"`
	Filters     []searchFilter    `json:"filters"`
	Sort        []searchSort      `json:"sort"`
	Query       string            `json:"query"`
}

type searchFilter struct {
	Field    string          `json:"field"`
	Operator string          `json:"operator"`
	Value    json.RawMessage `json:"value"`
}

type searchSort struct {
	Field     string `json:"field"`
	Direction string `json:"direction"`
}

// timeRange is a range filter on dateAdded or dateUpdated; zero bounds are open.
type timeRange struct {
	byAdded          bool
	gte, gt, lte, lt time.Time
	hasGte, hasGt    bool
	hasLte, hasLt    bool
}

func (tr timeRange) match(v *version) bool {
	t := sortTime(v, tr.byAdded)
	return (!tr.hasGte || !t.Before(tr.gte)) && (!tr.hasGt || t.After(tr.gt)) &&
		(!tr.hasLte || !t.After(tr.lte)) && (!tr.hasLt || t.Before(tr.lt))
}

// parseBound accepts an ISO-8601 time or epoch milliseconds.
func parseBound(raw json.RawMessage) (time.Time, bool) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		t, err := time.Parse(time.RFC3339Nano, s)
		return t, err == nil
	}
	var ms int64
	if json.Unmarshal(raw, &ms) == nil {
		return time.UnixMilli(ms), true
	}
	return time.Time{}, false
}

func parseRange(i int, f searchFilter) (timeRange, string) {
	bad := fmt.Sprintf("filters.%d: unsupported filter %q %q", i, f.Field, f.Operator)
	if (f.Field != "dateUpdated" && f.Field != "dateAdded") || f.Operator != "range" {
		return timeRange{}, bad
	}
	var val map[string]json.RawMessage
	if json.Unmarshal(f.Value, &val) != nil || len(val) == 0 {
		return timeRange{}, fmt.Sprintf("filters.%d.value must be an object with gt, gte, lt or lte", i)
	}
	tr := timeRange{byAdded: f.Field == "dateAdded"}
	for k, raw := range val {
		t, ok := parseBound(raw)
		if !ok {
			return timeRange{}, fmt.Sprintf("filters.%d.value.%s must be an ISO-8601 date", i, k)
		}
		switch k {
		case "gte":
			tr.gte, tr.hasGte = t, true
		case "gt":
			tr.gt, tr.hasGt = t, true
		case "lte":
			tr.lte, tr.hasLte = t, true
		case "lt":
			tr.lt, tr.hasLt = t, true
		default:
			return timeRange{}, fmt.Sprintf("filters.%d.value.%s is not a range operator", i, k)
		}
	}
	return tr, ""
}

// handleSearch is POST /contacts/search: filters, sort by (date, id) and searchAfter paging.
func (f *Fake) handleSearch(w http.ResponseWriter, r *http.Request, c *call) {
	var req searchRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	if err != nil {
		writeError(w, c.q, http.StatusBadRequest, "Invalid JSON body")
		return
	}
	var msgs []string
	locID, _ := req.LocationID.(string)
	if locID == "" {
		msgs = append(msgs, "locationId should not be empty", "locationId must be a string")
	}
	limitF, isNum := req.PageLimit.(float64)
	limit := int(limitF)
	switch {
	case req.PageLimit == nil:
		msgs = append(msgs, "pageLimit should not be empty", "pageLimit must be a number conforming to the specified constraints")
	case !isNum || float64(limit) != limitF || limit < 1:
		msgs = append(msgs, "pageLimit must not be less than 1", "pageLimit must be a number conforming to the specified constraints")
	case limit > MaxPageLimit:
		msgs = append(msgs, fmt.Sprintf("pageLimit must not be greater than %d", MaxPageLimit))
	}
	var ranges []timeRange
	for i, flt := range req.Filters {
		tr, msg := parseRange(i, flt)
		if msg != "" {
			msgs = append(msgs, msg)
			continue
		}
		ranges = append(ranges, tr)
	}
	byAdded, desc := true, true // the vendor's default order: newest added first
	if len(req.Sort) > 0 {
		s := req.Sort[0]
		byAdded = s.Field == "dateAdded"
		desc = s.Direction == "desc"
		if (s.Field != "dateAdded" && s.Field != "dateUpdated") || (s.Direction != "asc" && s.Direction != "desc") {
			msgs = append(msgs, "sort.0 must sort dateAdded or dateUpdated asc or desc")
		}
	}
	var after *version
	if req.SearchAfter != nil {
		var ms int64
		var id string
		if len(req.SearchAfter) != 2 || json.Unmarshal(req.SearchAfter[0], &ms) != nil || json.Unmarshal(req.SearchAfter[1], &id) != nil {
			msgs = append(msgs, "searchAfter must be an array of [sortValue, id]")
		} else {
			t := time.UnixMilli(ms).UTC()
			after = &version{Data: contactData{ID: id, added: t, updated: t}}
		}
	}
	offset := 0
	if req.Page != nil && after == nil {
		if *req.Page < 1 {
			msgs = append(msgs, "page must not be less than 1")
		} else {
			offset = (*req.Page - 1) * limit
		}
	}
	if len(msgs) > 0 {
		write422(w, c.q, msgs...)
		return
	}
	if offset+limit > maxPagedRecords {
		writeError(w, c.q, http.StatusBadRequest, fmt.Sprintf("Page-number paging is limited to %d records; use searchAfter", maxPagedRecords))
		return
	}

	f.mu.Lock()
	l := f.byID[locID]
	if l == nil || l.Forbidden || c.location != locID {
		f.mu.Unlock()
		writeError(w, c.q, http.StatusForbidden, MsgNoLocation)
		return
	}
	idx := l.index(f.clock.Now(), f.lag, byAdded) // immutable once built: safe to read unlocked
	f.mu.Unlock()

	match := func(v *version) bool {
		for _, tr := range ranges {
			if !tr.match(v) {
				return false
			}
		}
		return true
	}
	total := 0
	for _, v := range idx {
		if match(v) {
			total++
		}
	}
	page := make([]*version, 0, limit)
	collect := func(v *version) bool {
		if !match(v) {
			return true
		}
		if offset > 0 {
			offset--
			return true
		}
		page = append(page, v)
		return len(page) < limit
	}
	cmpAfter := func(v *version) int { return compareVersions(v, after, byAdded) }
	if desc {
		end := len(idx)
		if after != nil {
			end, _ = slices.BinarySearchFunc(idx, after, func(v, a *version) int { return compareVersions(v, a, byAdded) })
		}
		for i := end - 1; i >= 0 && collect(idx[i]); i-- {
		}
	} else {
		start := 0
		if after != nil {
			start = sort.Search(len(idx), func(i int) bool { return cmpAfter(idx[i]) > 0 })
		}
		for i := start; i < len(idx) && collect(idx[i]); i++ {
		}
	}

	var buf bytes.Buffer
	buf.Grow(len(page)*1200 + 64)
	buf.WriteString(`{"contacts":[`)
	for i, v := range page {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(v.json)
		buf.WriteString(`,"searchAfter":[`)
		buf.WriteString(strconv.FormatInt(sortTime(v, byAdded).UnixMilli(), 10))
		buf.WriteString(`,`)
		buf.WriteString(strconv.Quote(v.Data.ID))
		buf.WriteString(`]}`)
	}
	buf.WriteString(`],"total":`)
	buf.WriteString(strconv.Itoa(total))
	buf.WriteString(`}`)
	c.q.write(w.Header())
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
}

package leadconnector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/httpx"
)

// cursor is the position in a location's contacts, ordered by (dateUpdated, id).
// Watermark is the newest dateUpdated committed; After is the searchAfter of the last
// contact committed while a pass is under way, and absent once the pass reached the end.
type cursor struct {
	Watermark string            `json:"watermark,omitempty"` // RFC 3339, UTC, milliseconds
	After     []json.RawMessage `json:"after,omitempty"`     // [sortValueMillis, "id"]
}

const isoMillis = "2006-01-02T15:04:05.000Z"

func parseCursor(c sources.Cursor) (wm time.Time, after []json.RawMessage, err error) {
	if c == "" {
		return time.Time{}, nil, nil
	}
	var cur cursor
	if err := json.Unmarshal([]byte(c), &cur); err != nil {
		return time.Time{}, nil, fmt.Errorf("leadconnector: unreadable cursor: %w", err)
	}
	if cur.Watermark != "" {
		if wm, err = time.Parse(time.RFC3339Nano, cur.Watermark); err != nil {
			return time.Time{}, nil, fmt.Errorf("leadconnector: cursor watermark: %w", err)
		}
	}
	if cur.After != nil && len(cur.After) != 2 {
		return time.Time{}, nil, errors.New("leadconnector: cursor after must be [sortValue, id]")
	}
	return wm.UTC(), cur.After, nil
}

func encodeCursor(wm time.Time, after []json.RawMessage) sources.Cursor {
	c := cursor{After: after}
	if !wm.IsZero() {
		c.Watermark = wm.UTC().Format(isoMillis)
	}
	b, _ := json.Marshal(c) // strings and valid raw JSON only
	return sources.Cursor(b)
}

type searchFilter struct {
	Field    string            `json:"field"`
	Operator string            `json:"operator"`
	Value    map[string]string `json:"value"`
}

type searchSort struct {
	Field     string `json:"field"`
	Direction string `json:"direction"`
}

type searchBody struct {
	LocationID  string            `json:"locationId"`
	PageLimit   int               `json:"pageLimit"`
	Filters     []searchFilter    `json:"filters,omitempty"`
	Sort        []searchSort      `json:"sort"`
	SearchAfter []json.RawMessage `json:"searchAfter,omitempty"`
}

// StreamContacts is each location's contacts.
const StreamContacts = "contacts"

func init() {
	registerStream(streamDef{Stream: sources.Stream{Name: StreamContacts, Mode: sources.Incremental, Table: sources.TableLeads},
		Order: 0, Scope: "contacts.readonly", read: (*Source).contacts})
}

// contacts pages a location's contacts by dateUpdated ascending. A full pass or an empty cursor
// starts at the backfill start; an incremental pass re-reads Lookback before the watermark
// (the search index lags writes) and resumes after the cursor's searchAfter when a pass was
// interrupted. A 403 ends the sequence with a *sources.RestrictedError.
func (s *Source) contacts(ctx context.Context, acct sources.Account, cur sources.Cursor, opts sources.ReadOptions) iter.Seq2[sources.Page, error] {
	return func(yield func(sources.Page, error) bool) {
		if acct.ID == "" {
			yield(sources.Page{}, errors.New("leadconnector: leads of an account without id"))
			return
		}
		wm, after, err := parseCursor(cur)
		if err != nil {
			yield(sources.Page{}, err)
			return
		}
		start := s.cfg.BackfillStart
		if !opts.Since.IsZero() && (opts.Full || cur == "") {
			start = opts.Since
		}
		from := start
		if opts.Full || cur == "" {
			wm, after = time.Time{}, nil
		} else if !wm.IsZero() && wm.Add(-s.cfg.Lookback).After(start) {
			from = wm.Add(-s.cfg.Lookback)
		}
		body := searchBody{LocationID: acct.ID, PageLimit: s.cfg.PageSize,
			Sort: []searchSort{{Field: "dateUpdated", Direction: "asc"}}}
		if !from.IsZero() {
			body.Filters = []searchFilter{{Field: "dateUpdated", Operator: "range",
				Value: map[string]string{"gte": from.UTC().Format(isoMillis)}}}
		}
		creds := s.tokens.Account(acct.ID, s.minter(acct.ID))
		// searchAfter is keyset paging on (dateUpdated, id), so a full pass is complete: an
		// edit moves a contact later in the order, never back before the position reached,
		// and a delete shifts nothing. What changes after the last page belongs to the next
		// pass.
		guard := sources.PageGuard{What: "leadconnector: contacts/search for location " + acct.ID, Max: s.cfg.MaxPages}
		if after != nil {
			_ = guard.Check(afterKey(after), nil) // resuming: that cursor was handed out already
		}
		for {
			body.SearchAfter = after
			page, err := s.search(ctx, acct, creds, body)
			if err != nil {
				yield(sources.Page{}, s.leadsError(acct, err))
				return
			}
			// A dateUpdated in the future (a bad record) must not carry the watermark past
			// contacts still to come.
			horizon := s.cfg.Clock().Add(time.Hour)
			for _, l := range page.leads {
				if l.UpdatedAt.After(wm) && !l.UpdatedAt.After(horizon) {
					wm = l.UpdatedAt
				}
			}
			for _, r := range page.rejected {
				s.cfg.Logger.WarnContext(ctx, "leadconnector: quarantined a contact", slog.String("location", acct.ID), slog.Any("rejected", r))
			}
			done := page.n < s.cfg.PageSize
			next := page.last
			cursorKey := ""
			if done {
				next = nil // the pass is complete: the next one starts from the watermark
			} else {
				cursorKey = afterKey(next)
			}
			if err := guard.Check(cursorKey, page.keys); err != nil {
				yield(sources.Page{}, err)
				return
			}
			if !yield(sources.Page{Leads: page.leads, Rejected: page.rejected, Next: encodeCursor(wm, next)}, nil) || done {
				return
			}
			after = next
		}
	}
}

// afterKey is a searchAfter as text, for the loop guard and its error message.
func afterKey(after []json.RawMessage) string {
	parts := make([]string, len(after))
	for i, p := range after {
		parts[i] = string(p)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// search posts one search request and returns the decoded page. The caller's httpx.Stats
// count its requests (token minting and retries included).
func (s *Source) search(ctx context.Context, acct sources.Account, creds sources.Credentials, body searchBody) (searchPage, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return searchPage{}, fmt.Errorf("leadconnector: encode search: %w", err)
	}
	var page searchPage // a malformed body is retried by httpx
	_, err = s.api.Decode(ctx, httpx.Request{Method: http.MethodPost, Path: "/contacts/search",
		Endpoint: "contacts/search", Header: s.cfg.versionHeader(), Body: b, ContentType: "application/json",
		Bucket: locationBucket(acct.ID), Auth: creds}, func(body []byte) (err error) {
		page, err = decodeSearchPage(body, acct)
		return err
	})
	return page, err
}

// leadsError turns a 403 anywhere in err's chain (the search, or the location token mint)
// into the typed restriction; other errors are wrapped with the account.
func (s *Source) leadsError(acct sources.Account, err error) error {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if he, ok := e.(*httpx.Error); ok && he.Status == http.StatusForbidden {
			return &sources.RestrictedError{Vendor: sources.LeadConnector, AccountID: acct.ID, Stream: StreamContacts,
				HIPAA: acct.HIPAAProtected, Message: he.Message, Fields: sources.PIIFields}
		}
	}
	return fmt.Errorf("location %s: %w", acct.ID, err)
}

// contactJSON is what the source reads of a contact; Raw keeps the whole of it.
type contactJSON struct {
	ID                    flexString        `json:"id"`
	FirstName             flexString        `json:"firstName"`
	LastName              flexString        `json:"lastName"`
	Email                 flexString        `json:"email"`
	Phone                 flexString        `json:"phone"`
	CompanyName           flexString        `json:"companyName"`
	Type                  flexString        `json:"type"`
	Source                flexString        `json:"source"`
	Tags                  flexStrings       `json:"tags"`
	DateAdded             flexTime          `json:"dateAdded"`
	DateUpdated           flexTime          `json:"dateUpdated"`
	AttributionSource     json.RawMessage   `json:"attributionSource"`
	LastAttributionSource json.RawMessage   `json:"lastAttributionSource"`
	SearchAfter           []json.RawMessage `json:"searchAfter"`
}

type attributionJSON struct {
	SessionSource flexString `json:"sessionSource"`
	UTMSource     flexString `json:"utmSource"`
	Campaign      flexString `json:"campaign"`
	UTMCampaign   flexString `json:"utmCampaign"`
}

// attribution reads an attribution object leniently: anything else counts as absent.
func attribution(raw json.RawMessage) attributionJSON {
	var a attributionJSON
	_ = json.Unmarshal(raw, &a)
	return a
}

// searchPage is a decoded search answer: its leads and quarantined contacts, how many
// contacts it held, their PageGuard keys, and the searchAfter to continue after it.
type searchPage struct {
	leads    []sources.Lead
	rejected []sources.Rejected
	n        int
	keys     []string
	last     []json.RawMessage
}

// decodeSearchPage maps a search answer to leads, quarantining the contacts that cannot be
// one, and returns the last contact's searchAfter (built from dateUpdated and id when the
// vendor left it out; a quarantined contact's own is used when readable).
func decodeSearchPage(body []byte, acct sources.Account) (searchPage, error) {
	_, recs, _, err := sources.SplitRecords(body, "contacts")
	if err != nil {
		return searchPage{}, fmt.Errorf("decode search page: %w", err)
	}
	p := searchPage{n: len(recs), leads: make([]sources.Lead, 0, len(recs))}
	for _, r := range recs {
		l, reason := decodeContact(r, acct)
		p.keys = append(p.keys, r.Key(l.ID))
		if reason != "" {
			p.rejected = append(p.rejected, r.Reject(l.ID, reason))
			var sa struct {
				SearchAfter []json.RawMessage `json:"searchAfter"`
			}
			if !r.TooDeep() && json.Unmarshal(r.Raw, &sa) == nil && len(sa.SearchAfter) == 2 {
				p.last = sa.SearchAfter
			}
			continue
		}
		p.leads = append(p.leads, l.Lead)
		p.last = l.searchAfter
	}
	return p, nil
}

// contactLead is a decoded contact and where the search continues after it.
type contactLead struct {
	sources.Lead
	searchAfter []json.RawMessage
}

// decodeContact maps one contact, or says why it cannot (a reason without PII).
func decodeContact(r sources.Record, acct sources.Account) (contactLead, string) {
	switch {
	case r.TooDeep():
		return contactLead{}, sources.TooDeepReason
	case len(r.Raw) == 0 || r.Raw[0] != '{':
		return contactLead{}, "not a JSON object"
	}
	var c contactJSON
	if err := json.Unmarshal(r.Raw, &c); err != nil {
		var id struct {
			ID flexString `json:"id"`
		}
		_ = json.Unmarshal(r.Raw, &id)
		return contactLead{Lead: sources.Lead{ID: string(id.ID)}}, sources.DecodeReason(err)
	}
	if c.ID == "" {
		return contactLead{}, "no id"
	}
	l := contactLead{Lead: toLead(c, r.Raw, acct), searchAfter: c.SearchAfter}
	if len(l.searchAfter) != 2 {
		l.searchAfter = []json.RawMessage{json.RawMessage(strconv.FormatInt(l.UpdatedAt.UnixMilli(), 10)), mustJSON(l.ID)}
	}
	return l, ""
}

func mustJSON(s string) json.RawMessage {
	b, _ := json.Marshal(s) // a string always encodes
	return b
}

// toLead maps a contact: Status from type, Channel from the first-touch attribution's
// session source (else its utm source, else the contact's source), Campaign from the
// first-touch attribution (else the last-touch one).
func toLead(c contactJSON, raw json.RawMessage, acct sources.Account) sources.Lead {
	first, lastTouch := attribution(c.AttributionSource), attribution(c.LastAttributionSource)
	l := sources.Lead{
		Source: sources.LeadConnector, AccountID: acct.ID, ID: string(c.ID), Kind: sources.KindContact,
		Status:    strings.ToLower(strings.TrimSpace(string(c.Type))),
		FirstName: string(c.FirstName), LastName: string(c.LastName), Email: string(c.Email),
		Phone: string(c.Phone), Company: string(c.CompanyName),
		Channel:   firstNonEmpty(first.SessionSource, first.UTMSource, c.Source),
		Campaign:  firstNonEmpty(first.Campaign, first.UTMCampaign, lastTouch.Campaign, lastTouch.UTMCampaign),
		Tags:      []string(c.Tags),
		CreatedAt: time.Time(c.DateAdded).UTC(),
		UpdatedAt: time.Time(c.DateUpdated).UTC(),
		Raw:       raw,
		HIPAA:     acct.HIPAAProtected,
	}
	if l.Tags == nil {
		l.Tags = []string{}
	}
	if time.Time(c.DateUpdated).IsZero() {
		l.UpdatedAt = l.CreatedAt
	}
	return l
}

func firstNonEmpty(vals ...flexString) string {
	for _, v := range vals {
		if s := strings.TrimSpace(string(v)); s != "" {
			return s
		}
	}
	return ""
}

// flexString is sources.FlexString: strings, numbers and booleans as text, null as "" (the
// vendor's types drift: phones as numbers, ids as numbers in old records).
type flexString = sources.FlexString

// flexStrings reads an array of scalars, a single string, or null.
type flexStrings []string

func (f *flexStrings) UnmarshalJSON(b []byte) error {
	var list []flexString
	if err := json.Unmarshal(b, &list); err == nil {
		out := make([]string, 0, len(list))
		for _, s := range list {
			if s != "" {
				out = append(out, string(s))
			}
		}
		*f = out
		return nil
	}
	var one flexString
	if err := json.Unmarshal(b, &one); err != nil {
		return errors.New("want a list of strings")
	}
	*f = nil
	if one != "" {
		*f = []string{string(one)}
	}
	return nil
}

// flexTime reads an ISO-8601 time or epoch milliseconds; null or "" is the zero time.
type flexTime time.Time

func (f *flexTime) UnmarshalJSON(b []byte) error {
	var s flexString
	if err := s.UnmarshalJSON(b); err != nil {
		return err
	}
	str := strings.TrimSpace(string(s))
	if str == "" || str == "true" || str == "false" {
		*f = flexTime{}
		return nil
	}
	if ms, err := strconv.ParseInt(str, 10, 64); err == nil {
		*f = flexTime(time.UnixMilli(ms).UTC())
		return nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, str); err == nil {
			*f = flexTime(t.UTC())
			return nil
		}
	}
	return errors.New("unreadable time")
}

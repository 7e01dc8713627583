package leadconnector

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/leadsync/leadsync/sources"
)

// StreamOpportunities is each location's opportunities, into the deals table.
const StreamOpportunities = "opportunities"

// scopeOpportunities is the scope of the opportunities endpoints (search, pipelines, lost
// reasons), per ../shared/vendor-docs/leadconnector/opportunities.json.
const scopeOpportunities = "opportunities.readonly"

func init() {
	registerStream(streamDef{Stream: sources.Stream{Name: StreamOpportunities, Mode: sources.FullRefresh, Table: sources.TableDeals},
		Order: 10, Scope: scopeOpportunities, read: (*Source).opportunities})
}

// oppCursor is the position of a pass over a location's opportunities: the vendor's
// startAfter (the last opportunity's createdAt, epoch milliseconds, as the vendor wrote it)
// and startAfterId. The empty cursor starts a pass; a pass ends with the empty cursor.
type oppCursor struct {
	StartAfter   string `json:"start_after"`
	StartAfterID string `json:"start_after_id"`
}

func (c oppCursor) zero() bool { return c == oppCursor{} }

// key is the position as text, for the loop guard and its error message.
func (c oppCursor) key() string { return c.StartAfter + "/" + c.StartAfterID }

func parseOppCursor(c sources.Cursor) (oppCursor, error) {
	if c == "" {
		return oppCursor{}, nil
	}
	var cur oppCursor
	if err := json.Unmarshal([]byte(c), &cur); err != nil {
		return oppCursor{}, fmt.Errorf("leadconnector: unreadable opportunities cursor: %w", err)
	}
	if cur.StartAfter == "" || cur.StartAfterID == "" {
		return oppCursor{}, errors.New("leadconnector: opportunities cursor needs start_after and start_after_id")
	}
	return cur, nil
}

func (c oppCursor) encode() sources.Cursor {
	if c.zero() {
		return ""
	}
	b, _ := json.Marshal(c) // two strings always encode
	return sources.Cursor(b)
}

// opportunities pages a location's opportunities with GET /opportunities/search, oldest
// created first, continuing from the meta's startAfter/startAfterId. The vendor has no
// changed-since filter, so every run is a complete pass (the warehouse diffs it and
// soft-deletes what the pass did not see); a non-empty cursor continues an interrupted pass.
// Keyset paging on the creation time, which never changes, makes the pass complete: an edit
// moves nothing, a delete shifts nothing, and what is created during the pass comes at its
// end. A 403 ends the sequence with a *sources.RestrictedError, a grant without
// opportunities.readonly with a *sources.MissingScopeError.
func (s *Source) opportunities(ctx context.Context, acct sources.Account, cur sources.Cursor, _ sources.ReadOptions) iter.Seq2[sources.Page, error] {
	return func(yield func(sources.Page, error) bool) {
		if acct.ID == "" {
			yield(sources.Page{}, errors.New("leadconnector: opportunities of an account without id"))
			return
		}
		pos, err := parseOppCursor(cur)
		if err != nil {
			yield(sources.Page{}, err)
			return
		}
		creds := s.tokens.Account(acct.ID, s.minter(acct.ID))
		guard := sources.PageGuard{What: "leadconnector: opportunities/search for location " + acct.ID, Max: s.cfg.MaxPages}
		if !pos.zero() {
			_ = guard.Check(pos.key(), nil) // resuming: that cursor was handed out already
		}
		for {
			page, err := s.searchOpps(ctx, acct, creds, pos)
			if err != nil {
				yield(sources.Page{}, s.streamError(acct, StreamOpportunities, err, endpointOppSearch))
				return
			}
			for _, r := range page.rejected {
				s.cfg.Logger.WarnContext(ctx, "leadconnector: quarantined an opportunity", slog.String("location", acct.ID), slog.Any("rejected", r))
			}
			// A short page ends the pass unless the meta says a next page follows; a full one
			// never does, even when the meta says none follows: a pass cut short would
			// soft-delete the rest, so the pass asks once more and ends on an empty page.
			done := page.n == 0 || (page.n < s.cfg.PageSize && !page.more)
			next, cursorKey := oppCursor{}, ""
			if !done {
				if next = page.next; next.zero() {
					yield(sources.Page{}, fmt.Errorf("leadconnector: opportunities/search for location %s: a page of %d without a position to continue from", acct.ID, page.n))
					return
				}
				cursorKey = next.key()
			}
			if err := guard.Check(cursorKey, page.keys); err != nil {
				yield(sources.Page{}, err)
				return
			}
			if !yield(sources.Page{Deals: page.deals, Rejected: page.rejected, Next: next.encode()}, nil) || done {
				return
			}
			pos = next
		}
	}
}

// Endpoint names (httpx.Request.Endpoint) of the opportunities API.
const (
	endpointOppSearch   = "opportunities/search"
	endpointPipelines   = "opportunities/pipelines"
	endpointLostReasons = "opportunities/lost-reason"
)

// searchOpps requests one page of opportunities after pos.
func (s *Source) searchOpps(ctx context.Context, acct sources.Account, creds sources.Credentials, pos oppCursor) (oppPage, error) {
	// status=all and order=added_asc are explicit: the document names no default for either.
	q := url.Values{"location_id": {acct.ID}, "limit": {strconv.Itoa(s.cfg.PageSize)}, "status": {"all"}, "order": {"added_asc"}}
	if !pos.zero() {
		q.Set("startAfter", pos.StartAfter)
		q.Set("startAfterId", pos.StartAfterID)
	}
	var page oppPage
	err := s.locationGet(ctx, acct, creds, "/opportunities/search", endpointOppSearch, q, func(body []byte) (err error) {
		page, err = decodeOppPage(body, acct)
		return err
	})
	return page, err
}

// oppPage is a decoded search answer: its deals and quarantined opportunities, how many
// opportunities it held, their PageGuard keys, whether the meta says a next page follows,
// and where the next page starts.
type oppPage struct {
	deals    []sources.Deal
	rejected []sources.Rejected
	n        int
	keys     []string
	more     bool
	next     oppCursor
}

// oppMetaJSON is the paging part of the answer's meta (SearchMetaResponseSchema).
type oppMetaJSON struct {
	StartAfter   flexString      `json:"startAfter"`
	StartAfterID flexString      `json:"startAfterId"`
	NextPage     json.RawMessage `json:"nextPage"`
}

// decodeOppPage maps a search answer to deals, quarantining the opportunities that cannot be
// one. The next page starts at the meta's startAfter/startAfterId, or, when the meta leaves
// them out, after the last opportunity whose createdAt and id can be read.
func decodeOppPage(body []byte, acct sources.Account) (oppPage, error) {
	env, recs, found, err := sources.SplitRecords(body, "opportunities")
	if err != nil {
		return oppPage{}, fmt.Errorf("decode opportunities page: %w", err)
	}
	if !found {
		// Not an empty page: taken for one, it would end the pass and soft-delete every deal.
		return oppPage{}, errors.New("decode opportunities page: no opportunities array")
	}
	var e struct {
		Meta *oppMetaJSON `json:"meta"`
	}
	if err := json.Unmarshal(env, &e); err != nil {
		return oppPage{}, fmt.Errorf("decode opportunities page meta: %w", err)
	}
	p := oppPage{n: len(recs)}
	seen := map[string]bool{}
	for _, r := range recs {
		d, last, reason := decodeOpp(r, acct)
		p.keys = append(p.keys, r.Key(d.ID))
		if !last.zero() {
			p.next = last
		}
		switch {
		case reason != "":
			p.rejected = append(p.rejected, r.Reject(d.ID, reason))
		case seen[d.ID]:
			// The same opportunity twice in a page: one row (a multi-row upsert must not
			// touch a row twice).
		default:
			seen[d.ID] = true
			p.deals = append(p.deals, d)
		}
	}
	if m := e.Meta; m != nil {
		p.more = len(m.NextPage) > 0 && !bytes.Equal(m.NextPage, []byte("null"))
		if m.StartAfter != "" && m.StartAfterID != "" {
			p.next = oppCursor{StartAfter: string(m.StartAfter), StartAfterID: string(m.StartAfterID)}
		}
	}
	return p, nil
}

// oppJSON is what the source reads of an opportunity (SearchOpportunitiesResponseSchema);
// Raw keeps the whole of it. dateAdded and dateUpdated are the webhook payloads' names of
// the creation and update times, read when createdAt and updatedAt are absent.
type oppJSON struct {
	ID                 flexString      `json:"id"`
	Name               flexString      `json:"name"`
	MonetaryValue      flexNumber      `json:"monetaryValue"`
	PipelineID         flexString      `json:"pipelineId"`
	PipelineStageID    flexString      `json:"pipelineStageId"`
	AssignedTo         flexString      `json:"assignedTo"`
	Status             flexString      `json:"status"`
	Source             flexString      `json:"source"`
	LastStatusChangeAt flexTime        `json:"lastStatusChangeAt"`
	LastStageChangeAt  flexTime        `json:"lastStageChangeAt"`
	CreatedAt          flexTime        `json:"createdAt"`
	UpdatedAt          flexTime        `json:"updatedAt"`
	DateAdded          flexTime        `json:"dateAdded"`
	DateUpdated        flexTime        `json:"dateUpdated"`
	ContactID          flexString      `json:"contactId"`
	Contact            json.RawMessage `json:"contact"`
	LostReasonID       flexString      `json:"lostReasonId"`
	CustomFields       json.RawMessage `json:"customFields"`
}

// decodeOpp maps one opportunity, or says why it cannot (a reason without PII). It also
// returns the paging position after it, when its createdAt and id can be read.
func decodeOpp(r sources.Record, acct sources.Account) (sources.Deal, oppCursor, string) {
	switch {
	case r.TooDeep():
		return sources.Deal{}, oppCursor{}, sources.TooDeepReason
	case len(r.Raw) == 0 || r.Raw[0] != '{':
		return sources.Deal{}, oppCursor{}, "not a JSON object"
	}
	var o oppJSON
	if err := json.Unmarshal(r.Raw, &o); err != nil {
		var id struct {
			ID        flexString `json:"id"`
			CreatedAt flexTime   `json:"createdAt"`
		}
		_ = json.Unmarshal(r.Raw, &id)
		return sources.Deal{ID: string(id.ID)}, positionAfter(string(id.ID), time.Time(id.CreatedAt)), sources.DecodeReason(err)
	}
	if o.ID == "" {
		return sources.Deal{}, oppCursor{}, "no id"
	}
	d := toDeal(o, r.Raw, acct)
	return d, positionAfter(d.ID, d.CreatedAt), ""
}

// positionAfter is the search position after an opportunity created at created.
func positionAfter(id string, created time.Time) oppCursor {
	if id == "" || created.IsZero() {
		return oppCursor{}
	}
	return oppCursor{StartAfter: strconv.FormatInt(created.UnixMilli(), 10), StartAfterID: id}
}

// toDeal maps an opportunity. The status category is the vendor's word when it is one of
// its four (open, won, lost, abandoned), and open otherwise: HighLevel's other statuses are
// filters ("all") or words of other vendors, and a deal not known to be closed is still in
// its pipeline. The word itself stays in Status.
func toDeal(o oppJSON, raw json.RawMessage, acct sources.Account) sources.Deal {
	d := sources.Deal{
		ID: string(o.ID), ContactID: strings.TrimSpace(string(o.ContactID)), Name: string(o.Name),
		PipelineID: string(o.PipelineID), StageID: string(o.PipelineStageID),
		Status: strings.TrimSpace(string(o.Status)), Value: float64(o.MonetaryValue),
		AssignedTo: string(o.AssignedTo), LeadSource: strings.TrimSpace(string(o.Source)), LostReasonID: string(o.LostReasonID),
		CreatedAt:       firstTime(o.CreatedAt, o.DateAdded),
		UpdatedAt:       firstTime(o.UpdatedAt, o.DateUpdated, o.CreatedAt, o.DateAdded),
		StageChangedAt:  time.Time(o.LastStageChangeAt).UTC(),
		StatusChangedAt: time.Time(o.LastStatusChangeAt).UTC(),
		CustomValues:    customValues(o.CustomFields),
		Raw:             raw,
		HIPAA:           acct.HIPAAProtected,
	}
	d.StatusCategory = statusCategory(d.Status)
	if d.ContactID == "" {
		var c struct {
			ID flexString `json:"id"`
		}
		if json.Unmarshal(o.Contact, &c) == nil {
			d.ContactID = string(c.ID)
		}
	}
	return d
}

// statusCategory maps a HighLevel opportunity status to its sources.Status* category.
func statusCategory(status string) string {
	switch strings.ToLower(strings.TrimSpace(status)) {
	case "won":
		return sources.StatusWon
	case "lost":
		return sources.StatusLost
	case "abandoned":
		return sources.StatusAbandoned
	default:
		return sources.StatusOpen
	}
}

func firstTime(ts ...flexTime) time.Time {
	for _, t := range ts {
		if !time.Time(t).IsZero() {
			return time.Time(t).UTC()
		}
	}
	return time.Time{}
}

// customValues reads customFields ([{id, fieldValue}], CustomFieldResponseSchema) into
// values by field id; "value" and "field_value" (the contacts' and the write DTOs' names)
// are read too. Entries without an id or a value are skipped; anything but an array is no
// values (Raw keeps it).
func customValues(raw json.RawMessage) map[string]json.RawMessage {
	var list []json.RawMessage
	if json.Unmarshal(raw, &list) != nil {
		return nil
	}
	var out map[string]json.RawMessage
	for _, item := range list {
		var f struct {
			ID         flexString      `json:"id"`
			FieldValue json.RawMessage `json:"fieldValue"`
			Value      json.RawMessage `json:"value"`
			Snake      json.RawMessage `json:"field_value"`
		}
		if json.Unmarshal(item, &f) != nil || f.ID == "" {
			continue
		}
		for _, v := range []json.RawMessage{f.FieldValue, f.Value, f.Snake} {
			if len(v) > 0 && !bytes.Equal(v, []byte("null")) {
				if out == nil {
					out = map[string]json.RawMessage{}
				}
				out[string(f.ID)] = v
				break
			}
		}
	}
	return out
}

// flexNumber reads a number, or a number written as a string; null or "" is 0.
type flexNumber float64

func (f *flexNumber) UnmarshalJSON(b []byte) error {
	var s flexString
	if err := s.UnmarshalJSON(b); err != nil {
		return errors.New("want a number")
	}
	str := strings.TrimSpace(string(s))
	if str == "" {
		*f = 0
		return nil
	}
	v, err := strconv.ParseFloat(str, 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		return errors.New("want a number")
	}
	*f = flexNumber(v)
	return nil
}

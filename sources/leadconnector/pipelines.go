package leadconnector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net/url"
	"strconv"
	"strings"

	"github.com/leadsync/leadsync/sources"
)

// StreamPipelines is each location's pipelines, their stages and the lost reasons, into
// crm_dictionary: what the ids of a deal mean. It is PII-free, so it syncs for a location
// whose opportunities are refused.
const StreamPipelines = "pipelines"

// lostReasonLimit is the page size of GET /opportunities/lost-reason (the document's default
// and the most a location is likely to have).
const lostReasonLimit = 100

func init() {
	registerStream(streamDef{Stream: sources.Stream{Name: StreamPipelines, Mode: sources.FullRefresh, Table: sources.TableDictionary},
		Order: 5, Scope: scopeOpportunities, read: (*Source).pipelines})
}

// pipelines reads a location's pipelines (GET /opportunities/pipelines, one request) and
// lost reasons (GET /opportunities/lost-reason, skip/limit paging) into one page of
// dictionary entries with the empty cursor: the whole stream is a few requests, so there is
// nothing to resume. Errors map as the opportunities stream's do.
func (s *Source) pipelines(ctx context.Context, acct sources.Account, _ sources.Cursor, _ sources.ReadOptions) iter.Seq2[sources.Page, error] {
	return func(yield func(sources.Page, error) bool) {
		if acct.ID == "" {
			yield(sources.Page{}, errors.New("leadconnector: pipelines of an account without id"))
			return
		}
		creds := s.tokens.Account(acct.ID, s.minter(acct.ID))
		var page dictPage
		err := s.locationGet(ctx, acct, creds, "/opportunities/pipelines", endpointPipelines, url.Values{"locationId": {acct.ID}},
			func(body []byte) (err error) {
				page, err = decodePipelines(body)
				return err
			})
		if err != nil {
			yield(sources.Page{}, s.streamError(acct, StreamPipelines, err, endpointPipelines, endpointLostReasons))
			return
		}
		guard := sources.PageGuard{What: "leadconnector: opportunities/lost-reason for location " + acct.ID, Max: s.cfg.MaxPages}
		for skip := 0; ; {
			var lr dictPage
			q := url.Values{"locationId": {acct.ID}, "skip": {strconv.Itoa(skip)}, "limit": {strconv.Itoa(lostReasonLimit)}}
			err := s.locationGet(ctx, acct, creds, "/opportunities/lost-reason", endpointLostReasons, q, func(body []byte) (err error) {
				lr, err = decodeLostReasons(body)
				return err
			})
			if err != nil {
				yield(sources.Page{}, s.streamError(acct, StreamPipelines, err, endpointPipelines, endpointLostReasons))
				return
			}
			if err := guard.Check("", lr.keys); err != nil {
				yield(sources.Page{}, err)
				return
			}
			page.add(lr)
			skip += lr.n
			if lr.n < lostReasonLimit { // a full page may not be the last: the total is not trusted to end a full pass
				break
			}
		}
		for _, r := range page.rejected {
			s.cfg.Logger.WarnContext(ctx, "leadconnector: quarantined a pipeline or lost reason", slog.String("location", acct.ID), slog.Any("rejected", r))
		}
		if page.skippedStages > 0 {
			s.cfg.Logger.WarnContext(ctx, "leadconnector: skipped pipeline stages without an id", slog.String("location", acct.ID),
				slog.Int("stages", page.skippedStages))
		}
		yield(sources.Page{Dictionary: page.entries, Rejected: page.rejected}, nil)
	}
}

// dictPage is decoded dictionary entries: the entries (each kind and id once), the records
// quarantined, how many records there were and their PageGuard keys, and the stages skipped
// for having no id.
type dictPage struct {
	entries       []sources.DictEntry
	rejected      []sources.Rejected
	n             int
	keys          []string
	skippedStages int
	seen          map[string]bool
}

// entry adds e unless an entry of its kind and id is there already (a multi-row upsert must
// not touch a row twice).
func (p *dictPage) entry(e sources.DictEntry) {
	if p.seen == nil {
		p.seen = map[string]bool{}
	}
	if k := e.Kind + ":" + e.ID; !p.seen[k] {
		p.seen[k] = true
		p.entries = append(p.entries, e)
	}
}

func (p *dictPage) add(o dictPage) {
	for _, e := range o.entries {
		p.entry(e)
	}
	p.rejected = append(p.rejected, o.rejected...)
	p.skippedStages += o.skippedStages
}

// named is the id and name of a pipeline, a stage or a lost reason.
type named struct {
	ID       flexString      `json:"id"`
	Name     flexString      `json:"name"`
	Position flexString      `json:"position"`
	Stages   json.RawMessage `json:"stages"`
}

// decodeNamed reads one record, or says why it cannot (a reason without PII).
func decodeNamed(r sources.Record) (named, string) {
	switch {
	case r.TooDeep():
		return named{}, sources.TooDeepReason
	case len(r.Raw) == 0 || r.Raw[0] != '{':
		return named{}, "not a JSON object"
	}
	var n named
	if err := json.Unmarshal(r.Raw, &n); err != nil {
		var id struct {
			ID flexString `json:"id"`
		}
		_ = json.Unmarshal(r.Raw, &id)
		return named{ID: id.ID}, sources.DecodeReason(err)
	}
	if n.ID == "" {
		return named{}, "no id"
	}
	return n, ""
}

// decodePipelines maps GET /opportunities/pipelines ({pipelines:[{id, name, stages:[{id,
// name, position}]}]}) to pipeline and stage entries. A stage without a position takes its
// place in the list.
func decodePipelines(body []byte) (dictPage, error) {
	_, recs, found, err := sources.SplitRecords(body, "pipelines")
	if err != nil {
		return dictPage{}, fmt.Errorf("decode pipelines: %w", err)
	}
	if !found {
		// Not "no pipelines": taken for that, it would soft-delete every pipeline.
		return dictPage{}, errors.New("decode pipelines: no pipelines array")
	}
	p := dictPage{n: len(recs)}
	for _, r := range recs {
		pl, reason := decodeNamed(r)
		p.keys = append(p.keys, r.Key(string(pl.ID)))
		var stages []json.RawMessage
		if reason == "" && len(pl.Stages) > 0 && json.Unmarshal(pl.Stages, &stages) != nil {
			reason = "stages is not an array"
		}
		if reason != "" {
			p.rejected = append(p.rejected, r.Reject(string(pl.ID), reason))
			continue
		}
		p.entry(sources.DictEntry{Kind: sources.DictPipeline, ID: string(pl.ID), Name: strings.TrimSpace(string(pl.Name))})
		for i, raw := range stages {
			st, reason := decodeNamed(sources.Record{Raw: raw})
			if reason != "" {
				p.skippedStages++
				continue
			}
			pos, err := strconv.Atoi(strings.TrimSpace(string(st.Position)))
			if err != nil {
				pos = i
			}
			p.entry(sources.DictEntry{Kind: sources.DictStage, ID: string(st.ID), ParentID: string(pl.ID),
				Name: strings.TrimSpace(string(st.Name)), Position: pos})
		}
	}
	return p, nil
}

// decodeLostReasons maps one page of GET /opportunities/lost-reason ({lostReasons:[{id,
// name, …}], total}) to lost-reason entries. The total is not read: a pass ends on a short
// page, never on a count that may be stale.
func decodeLostReasons(body []byte) (dictPage, error) {
	_, recs, found, err := sources.SplitRecords(body, "lostReasons")
	if err != nil {
		return dictPage{}, fmt.Errorf("decode lost reasons: %w", err)
	}
	if !found {
		return dictPage{}, errors.New("decode lost reasons: no lostReasons array")
	}
	p := dictPage{n: len(recs)}
	for _, r := range recs {
		lr, reason := decodeNamed(r)
		p.keys = append(p.keys, r.Key(string(lr.ID)))
		if reason != "" {
			p.rejected = append(p.rejected, r.Reject(string(lr.ID), reason))
			continue
		}
		p.entry(sources.DictEntry{Kind: sources.DictLostReason, ID: string(lr.ID), Name: strings.TrimSpace(string(lr.Name))})
	}
	return p, nil
}

package lacrm

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"strings"

	"github.com/leadsync/leadsync/sources"
)

// The dictionary streams: what the ids of a pipeline item mean. "pipelines" is GetPipelines
// (each pipeline and its statuses, nested: API-CONTRACTS.md §5.2); "custom_fields" is
// GetCustomFields for the contacts and for each synced pipeline. Both are a few requests,
// read whole on every run (sources.FullRefresh) into one page with the empty cursor: there
// is nothing to resume, and the worker soft-deletes what a complete read no longer lists.

// Custom-field record types, as GetCustomFields' RecordType names them.
const (
	recordContact  = "Contact"
	recordPipeline = "Pipeline"
)

// Categories of the custom-field entries (DictEntry.Category): the record type the field
// belongs to. A pipeline's field has the pipeline as its ParentID.
const (
	fieldContact  = "contact"
	fieldPipeline = "pipeline"
)

// Categories of the stage entries: an active status is a step of the pipeline, an inactive
// one closes the item (won or lost: see statusCategory).
const (
	stageOpen   = "open"
	stageClosed = "closed"
)

// pipelineDef is a pipeline as GetPipelines lists it. unlisted marks a configured pipeline
// id that GetPipelines did not list.
type pipelineDef struct {
	ID, Name string
	Statuses []statusDef
	unlisted bool
}

// statusDef is one of a pipeline's statuses. known is false when the vendor did not say
// whether it is active.
type statusDef struct {
	ID, Name      string
	Active, known bool
}

func (p pipelineDef) status(id string) (statusDef, bool) {
	for _, s := range p.Statuses {
		if s.ID == id {
			return s, true
		}
	}
	return statusDef{}, false
}

type pipelineJSON struct {
	PipelineID flexString        `json:"PipelineId"`
	Name       flexString        `json:"Name"`
	Statuses   []json.RawMessage `json:"Statuses"`
}

type statusJSON struct {
	StatusID flexString `json:"StatusId"`
	Name     flexString `json:"Name"`
	IsActive *flexBool  `json:"IsActive"`
}

// pipelineList is a decoded GetPipelines answer: the pipelines, the entries that are no
// pipeline (quarantined by the pipelines stream, skipped by the others), and how many
// statuses were skipped for having no id.
type pipelineList struct {
	pipelines       []pipelineDef
	rejected        []sources.Rejected
	skippedStatuses int
}

// decodePipelines reads GetPipelines: a bare list, or the same list under "Results". An
// answer holding neither is an error, not "no pipelines": taken for that, it would
// soft-delete every pipeline and every deal.
func decodePipelines(body []byte) (pipelineList, error) {
	key := ""
	if b := bytes.TrimSpace(body); len(b) > 0 && b[0] == '{' {
		key = "Results"
	}
	_, recs, found, err := sources.SplitRecords(body, key)
	if err != nil {
		return pipelineList{}, err
	}
	if !found {
		return pipelineList{}, errors.New("no list of pipelines")
	}
	var out pipelineList
	for _, r := range recs {
		var p pipelineJSON
		switch {
		case r.TooDeep():
			out.rejected = append(out.rejected, r.Reject("", sources.TooDeepReason))
			continue
		case len(r.Raw) == 0 || r.Raw[0] != '{':
			out.rejected = append(out.rejected, r.Reject("", "not a JSON object"))
			continue
		}
		if err := json.Unmarshal(r.Raw, &p); err != nil {
			var id struct {
				PipelineID flexString `json:"PipelineId"`
			}
			_ = json.Unmarshal(r.Raw, &id)
			out.rejected = append(out.rejected, r.Reject(string(id.PipelineID), sources.DecodeReason(err)))
			continue
		}
		if p.PipelineID == "" {
			out.rejected = append(out.rejected, r.Reject("", "no PipelineId"))
			continue
		}
		def := pipelineDef{ID: string(p.PipelineID), Name: strings.TrimSpace(string(p.Name))}
		for _, raw := range p.Statuses {
			var s statusJSON
			if json.Unmarshal(raw, &s) != nil || s.StatusID == "" {
				out.skippedStatuses++
				continue
			}
			st := statusDef{ID: string(s.StatusID), Name: strings.TrimSpace(string(s.Name)), known: s.IsActive != nil}
			if s.IsActive != nil {
				st.Active = bool(*s.IsActive)
			}
			def.Statuses = append(def.Statuses, st)
		}
		out.pipelines = append(out.pipelines, def)
	}
	return out, nil
}

// getPipelines calls GetPipelines.
func (s *Source) getPipelines(ctx context.Context) (pipelineList, error) {
	var list pipelineList
	err := s.call(ctx, "GetPipelines", map[string]any{}, func(b []byte) (err error) {
		list, err = decodePipelines(b)
		return err
	})
	if err != nil {
		return pipelineList{}, fmt.Errorf("lacrm: list pipelines: %w", err)
	}
	return list, nil
}

// synced are the pipelines the connection syncs, in order: all of them, or the configured
// ones, each matched by id, else by name (ignoring case). A configured entry that matches
// none is kept as an id, as before names were matched: GetPipelineItems says what is wrong
// with it.
func (s *Source) synced(ctx context.Context, all []pipelineDef) []pipelineDef {
	if len(s.cfg.PipelineIDs) == 0 {
		return all
	}
	var out []pipelineDef
	seen := map[string]bool{}
	for _, want := range s.cfg.PipelineIDs {
		want = strings.TrimSpace(want)
		i := -1
		for j, p := range all {
			if p.ID == want {
				i = j
				break
			}
		}
		for j := 0; i < 0 && j < len(all); j++ {
			if strings.EqualFold(all[j].Name, want) {
				i = j
			}
		}
		p := pipelineDef{ID: want, unlisted: true}
		if i >= 0 {
			p = all[i]
		} else {
			s.cfg.logger().WarnContext(ctx, "lacrm: a configured pipeline is not among the account's; reading it as an id",
				slog.String("pipeline", want))
		}
		if !seen[p.ID] {
			seen[p.ID] = true
			out = append(out, p)
		}
	}
	return out
}

// syncedPipelines lists the account's pipelines and returns the synced ones; entries that
// are no pipeline are skipped with a warning (they must not stop the others).
func (s *Source) syncedPipelines(ctx context.Context) ([]pipelineDef, error) {
	list, err := s.getPipelines(ctx)
	if err != nil {
		return nil, err
	}
	if n := len(list.rejected); n > 0 {
		s.cfg.logger().WarnContext(ctx, "lacrm: GetPipelines: skipping entries that are not pipelines", slog.Int("entries", n))
	}
	return s.synced(ctx, list.pipelines), nil
}

// pipelineEntries are the dictionary entries of pipelines: each pipeline, then its statuses
// as stages (Position their place in the list, Category open or closed, "" when the vendor
// does not say).
func pipelineEntries(pipelines []pipelineDef) []sources.DictEntry {
	var out []sources.DictEntry
	seen := map[string]bool{}
	add := func(e sources.DictEntry) {
		if k := e.Kind + ":" + e.ID; !seen[k] {
			seen[k] = true
			out = append(out, e)
		}
	}
	for i, p := range pipelines {
		add(sources.DictEntry{Kind: sources.DictPipeline, ID: p.ID, Name: p.Name, Position: i})
		for j, st := range p.Statuses {
			e := sources.DictEntry{Kind: sources.DictStage, ID: st.ID, ParentID: p.ID, Name: st.Name, Position: j}
			if st.known {
				e.Category = stageClosed
				if st.Active {
					e.Category = stageOpen
				}
			}
			add(e)
		}
	}
	return out
}

// readPipelines is the pipelines stream: one GetPipelines, one page.
func (s *Source) readPipelines(ctx context.Context, acct sources.Account) iter.Seq2[sources.Page, error] {
	return func(yield func(sources.Page, error) bool) {
		list, err := s.getPipelines(ctx)
		if err != nil {
			yield(sources.Page{}, fmt.Errorf("lacrm: account %s: %w", acct.ID, err))
			return
		}
		for _, r := range list.rejected {
			s.cfg.logger().WarnContext(ctx, "lacrm: quarantined a pipeline", slog.String("account", acct.ID), slog.Any("rejected", r))
		}
		if list.skippedStatuses > 0 {
			s.cfg.logger().WarnContext(ctx, "lacrm: skipped pipeline statuses without an id", slog.String("account", acct.ID),
				slog.Int("statuses", list.skippedStatuses))
		}
		var synced []pipelineDef
		for _, p := range s.synced(ctx, list.pipelines) {
			if !p.unlisted {
				synced = append(synced, p)
			}
		}
		yield(sources.Page{Dictionary: pipelineEntries(synced), Rejected: list.rejected}, nil)
	}
}

// fieldDef is a custom-field definition.
type fieldDef struct {
	ID, Name, Type string
	// Options are the vendor's options of a Dropdown (and the like), verbatim; nil when none.
	Options json.RawMessage
}

// fieldJSON is what the source reads of a GetCustomFields entry. FieldId is the id third-party
// clients read; CustomFieldId and Id are accepted too, as is FieldType for Type.
type fieldJSON struct {
	FieldID       flexString      `json:"FieldId"`
	CustomFieldID flexString      `json:"CustomFieldId"`
	ID            flexString      `json:"Id"`
	Name          flexString      `json:"Name"`
	Type          flexString      `json:"Type"`
	FieldType     flexString      `json:"FieldType"`
	Options       json.RawMessage `json:"Options"`
}

// decodeFields maps one GetCustomFields page's records; those that are no field definition
// are rejected. keys are the records' PageGuard keys.
func decodeFields(recs []sources.Record) (fields []fieldDef, rejected []sources.Rejected, keys []string) {
	for _, r := range recs {
		var f fieldJSON
		var reason string
		switch {
		case r.TooDeep():
			reason = sources.TooDeepReason
		case len(r.Raw) == 0 || r.Raw[0] != '{':
			reason = "not a JSON object"
		default:
			if err := json.Unmarshal(r.Raw, &f); err != nil {
				reason = sources.DecodeReason(err)
			}
		}
		id := cmp.Or(string(f.FieldID), string(f.CustomFieldID), string(f.ID))
		keys = append(keys, r.Key(id))
		if reason == "" && id == "" {
			reason = "no FieldId"
		}
		if reason != "" {
			rejected = append(rejected, r.Reject(id, reason))
			continue
		}
		d := fieldDef{ID: id, Name: strings.TrimSpace(string(f.Name)), Type: strings.TrimSpace(cmp.Or(string(f.Type), string(f.FieldType)))}
		if o := bytes.TrimSpace(f.Options); len(o) > 2 && o[0] == '[' && !emptyArray(o) {
			d.Options = bytes.Clone(o)
		}
		fields = append(fields, d)
	}
	return fields, rejected, keys
}

func emptyArray(b []byte) bool {
	var a []json.RawMessage
	return json.Unmarshal(b, &a) == nil && len(a) == 0
}

// getCustomFields reads every page of one GetCustomFields listing (a record type, and a
// pipeline). The answer is a bare list, or pages of {HasMoreResults, Results}.
func (s *Source) getCustomFields(ctx context.Context, acct sources.Account, recordType, pipelineID string) ([]fieldDef, []sources.Rejected, error) {
	what := "GetCustomFields " + recordType
	if pipelineID != "" {
		what += " of pipeline " + pipelineID
	}
	guard := sources.PageGuard{What: fmt.Sprintf("lacrm: account %s: %s", acct.ID, what), Max: s.cfg.MaxPages}
	var fields []fieldDef
	var rejected []sources.Rejected
	for page := 1; ; page++ {
		params := map[string]any{"RecordType": recordType, "MaxNumberOfResults": s.cfg.PageSize, "Page": page}
		if pipelineID != "" {
			params["PipelineId"] = pipelineID
		}
		var list listPage
		err := s.call(ctx, "GetCustomFields", params, func(b []byte) (err error) {
			if b = bytes.TrimSpace(b); len(b) > 0 && b[0] == '[' {
				list.more = false
				_, list.recs, _, err = sources.SplitRecords(b, "")
				return err
			}
			list, err = decodeList(b)
			return err
		})
		if err != nil {
			return nil, nil, fmt.Errorf("lacrm: account %s: %s page %d: %w", acct.ID, what, page, err)
		}
		f, r, keys := decodeFields(list.recs)
		if err := guard.Check("", keys); err != nil {
			return nil, nil, err
		}
		fields, rejected = append(fields, f...), append(rejected, r...)
		if !list.more || len(list.recs) == 0 {
			return fields, rejected, nil
		}
	}
}

// fieldDetail is a custom field's DictEntry.Detail: its options, when it has some.
type fieldDetail struct {
	Options json.RawMessage `json:"options"`
}

// fieldEntry is a custom field's dictionary entry: Category its record type (contact or
// pipeline), ParentID a pipeline field's pipeline, Position its place in the listing.
func fieldEntry(f fieldDef, category, pipelineID string, position int) sources.DictEntry {
	e := sources.DictEntry{Kind: sources.DictCustomField, ID: f.ID, ParentID: pipelineID, Name: f.Name,
		Position: position, DataType: f.Type, Category: category}
	if f.Options != nil {
		e.Detail, _ = json.Marshal(fieldDetail{Options: f.Options}) // options scanned as JSON already
	}
	return e
}

// readCustomFields is the custom_fields stream: GetPipelines (which pipelines), then
// GetCustomFields for the contacts and for each synced pipeline, in one page.
func (s *Source) readCustomFields(ctx context.Context, acct sources.Account) iter.Seq2[sources.Page, error] {
	return func(yield func(sources.Page, error) bool) {
		pipelines, err := s.syncedPipelines(ctx)
		if err != nil {
			yield(sources.Page{}, fmt.Errorf("lacrm: account %s: %w", acct.ID, err))
			return
		}
		var page sources.Page
		seen := map[string]bool{}
		listing := func(category, pipelineID string) error {
			recordType := recordContact
			if category == fieldPipeline {
				recordType = recordPipeline
			}
			fields, rejected, err := s.getCustomFields(ctx, acct, recordType, pipelineID)
			if err != nil {
				return err
			}
			for i, f := range fields {
				if !seen[f.ID] {
					seen[f.ID] = true
					page.Dictionary = append(page.Dictionary, fieldEntry(f, category, pipelineID, i))
				}
			}
			page.Rejected = append(page.Rejected, rejected...)
			return nil
		}
		if err := listing(fieldContact, ""); err != nil {
			yield(sources.Page{}, err)
			return
		}
		for _, p := range pipelines {
			if err := listing(fieldPipeline, p.ID); err != nil {
				yield(sources.Page{}, err)
				return
			}
		}
		for _, r := range page.Rejected {
			s.cfg.logger().WarnContext(ctx, "lacrm: quarantined a custom field", slog.String("account", acct.ID), slog.Any("rejected", r))
		}
		yield(page, nil)
	}
}

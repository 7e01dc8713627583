package lacrm_test

import (
	"context"
	"encoding/json"
	"iter"
	"maps"
	"slices"
	"testing"

	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/lacrm"
	"github.com/leadsync/leadsync/sources/lacrm/lacrmtest"
)

// readAll reads every stream in order as one sequence whose cursor is the incremental
// streams' cursors merged: the single-stream cursor of the versions before streams were
// split (the dictionary streams have none). It lets the source tests keep one cursor, and
// proves along the way that such a cursor resumes each stream where it was.
func readAll(src *lacrm.Source, ctx context.Context, acct sources.Account, cur sources.Cursor, opts sources.ReadOptions) iter.Seq2[sources.Page, error] {
	return func(yield func(sources.Page, error) bool) {
		latest := map[string]sources.Cursor{}
		for _, st := range src.Streams() {
			latest[st.Name] = cur
		}
		for _, st := range src.Streams() {
			for p, err := range src.Read(ctx, acct, st.Name, cur, opts) {
				if err != nil {
					yield(p, err)
					return
				}
				latest[st.Name] = p.Next
				merged, err := mergeCursors(latest[lacrm.StreamContacts], latest[lacrm.StreamPipelineItems])
				if err != nil {
					yield(sources.Page{}, err)
					return
				}
				p.Next = merged
				if !yield(p, nil) {
					return
				}
			}
		}
	}
}

// mergeCursors joins the per-listing states of two LACRM cursors.
func mergeCursors(curs ...sources.Cursor) (sources.Cursor, error) {
	out := map[string]json.RawMessage{}
	v := json.RawMessage(`1`)
	for _, c := range curs {
		if c == "" {
			continue
		}
		var one struct {
			V       json.RawMessage            `json:"v"`
			Streams map[string]json.RawMessage `json:"streams"`
		}
		if err := json.Unmarshal([]byte(c), &one); err != nil {
			return "", err
		}
		v = one.V
		maps.Copy(out, one.Streams)
	}
	b, err := json.Marshal(map[string]any{"v": v, "streams": out})
	return sources.Cursor(b), err
}

// TestStreamsReadTheirOwnListings: each stream writes its own table and reads only its own
// vendor functions, and a cursor of the combined stream (as versions before the split wrote
// it) resumes each incremental stream without a new backfill.
func TestStreamsReadTheirOwnListings(t *testing.T) {
	t.Parallel()
	b := setup(t, lacrmtest.Options{Contacts: 40, PipelineItems: 10}, nil)
	ctx := context.Background()
	wrote := map[string]map[string]bool{} // stream → what its pages carried
	own := map[string]sources.Cursor{}
	var combined sources.Cursor
	for _, st := range b.src.Streams() {
		wrote[st.Name] = map[string]bool{}
		for p, err := range b.src.Read(ctx, b.acct, st.Name, "", sources.ReadOptions{Full: st.Mode == sources.FullRefresh}) {
			if err != nil {
				t.Fatalf("%s: %v", st.Name, err)
			}
			for _, l := range p.Leads {
				wrote[st.Name]["lead "+l.Kind] = true
			}
			if len(p.Deals) > 0 {
				wrote[st.Name][sources.TableDeals] = true
			}
			for _, e := range p.Dictionary {
				wrote[st.Name][e.Kind] = true
			}
			if len(p.Counts)+len(p.Submissions)+len(p.Cycles) > 0 {
				wrote[st.Name]["other"] = true
			}
			own[st.Name] = p.Next
			next, err := mergeCursors(combined, p.Next)
			if err != nil {
				t.Fatal(err)
			}
			combined = next
		}
	}
	want := map[string][]string{
		lacrm.StreamContacts:      {"lead " + sources.KindContact},
		lacrm.StreamPipelines:     {sources.DictPipeline, sources.DictStage},
		lacrm.StreamCustomFields:  {sources.DictCustomField},
		lacrm.StreamPipelineItems: {sources.TableDeals},
	}
	if len(b.src.Streams()) != len(want) {
		t.Fatalf("streams %v", b.src.Streams())
	}
	for name, w := range want {
		if got := slices.Sorted(maps.Keys(wrote[name])); !slices.Equal(got, w) {
			t.Errorf("%s wrote %v, want %v", name, got, w)
		}
	}
	// Nothing changed: from the combined cursor each incremental stream reads what it reads
	// from its own cursor (the Lookback's overlap), not a backfill.
	count := func(stream string, cur sources.Cursor) (n int) {
		for p, err := range b.src.Read(ctx, b.acct, stream, cur, sources.ReadOptions{}) {
			if err != nil {
				t.Fatalf("%s: %v", stream, err)
			}
			n += len(p.Leads) + len(p.Deals)
		}
		return n
	}
	for _, st := range b.src.Streams() {
		if st.Mode != sources.Incremental {
			continue
		}
		if got, want := count(st.Name, combined), count(st.Name, own[st.Name]); got != want || got == count(st.Name, "") {
			t.Errorf("%s read %d rows from the combined cursor, %d from its own, %d from none", st.Name, got, want, count(st.Name, ""))
		}
	}
}

// TestStreamOrderAndTables: the dictionaries come after the contacts and before the deals
// whose ids they explain, read whole; contacts and items keep their incremental cursors.
func TestStreamOrderAndTables(t *testing.T) {
	t.Parallel()
	b := setup(t, lacrmtest.Options{Contacts: 1, PipelineItems: 1}, nil)
	want := []sources.Stream{
		{Name: lacrm.StreamContacts, Mode: sources.Incremental, Table: sources.TableLeads},
		{Name: lacrm.StreamPipelines, Mode: sources.FullRefresh, Table: sources.TableDictionary},
		{Name: lacrm.StreamCustomFields, Mode: sources.FullRefresh, Table: sources.TableDictionary},
		{Name: lacrm.StreamPipelineItems, Mode: sources.Incremental, Table: sources.TableDeals},
	}
	if got := b.src.Streams(); !slices.Equal(got, want) {
		t.Fatalf("Streams() = %v, want %v", got, want)
	}
	if lacrm.StreamPipelineItems != "pipeline_items" {
		t.Fatal("the pipeline_items stream was renamed: upgraded warehouses would lose its cursor")
	}
}

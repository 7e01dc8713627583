package lacrm_test

import (
	"context"
	"encoding/json"
	"iter"
	"maps"
	"testing"

	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/lacrm"
	"github.com/leadsync/leadsync/sources/lacrm/lacrmtest"
)

// readAll reads both streams, contacts then pipeline_items, as one sequence whose cursor is
// the two streams' cursors merged: the single-stream cursor of the versions before streams
// were split. It lets the source tests keep one cursor, and proves along the way that such a
// cursor resumes each stream where it was.
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

// TestStreamsReadTheirOwnListings: each stream reads only its own vendor functions, and a
// cursor of the combined stream (as versions before the split wrote it) resumes each stream
// without a new backfill.
func TestStreamsReadTheirOwnListings(t *testing.T) {
	t.Parallel()
	b := setup(t, lacrmtest.Options{Contacts: 40, PipelineItems: 10}, nil)
	ctx := context.Background()
	kinds := map[string]map[string]bool{}
	own := map[string]sources.Cursor{}
	var combined sources.Cursor
	for _, st := range b.src.Streams() {
		kinds[st.Name] = map[string]bool{}
		for p, err := range b.src.Read(ctx, b.acct, st.Name, "", sources.ReadOptions{}) {
			if err != nil {
				t.Fatalf("%s: %v", st.Name, err)
			}
			for _, l := range p.Leads {
				kinds[st.Name][l.Kind] = true
			}
			own[st.Name] = p.Next
			next, err := mergeCursors(combined, p.Next)
			if err != nil {
				t.Fatal(err)
			}
			combined = next
		}
	}
	if !kinds[lacrm.StreamContacts][sources.KindContact] || len(kinds[lacrm.StreamContacts]) != 1 {
		t.Errorf("contacts stream read kinds %v", kinds[lacrm.StreamContacts])
	}
	if !kinds[lacrm.StreamPipelineItems][sources.KindPipelineItem] || len(kinds[lacrm.StreamPipelineItems]) != 1 {
		t.Errorf("pipeline_items stream read kinds %v", kinds[lacrm.StreamPipelineItems])
	}
	// Nothing changed: from the combined cursor each stream reads what it reads from its own
	// cursor (the Lookback's overlap), not a backfill.
	count := func(stream string, cur sources.Cursor) (n int) {
		for p, err := range b.src.Read(ctx, b.acct, stream, cur, sources.ReadOptions{}) {
			if err != nil {
				t.Fatalf("%s: %v", stream, err)
			}
			n += len(p.Leads)
		}
		return n
	}
	for _, st := range b.src.Streams() {
		if got, want := count(st.Name, combined), count(st.Name, own[st.Name]); got != want || got == count(st.Name, "") {
			t.Errorf("%s read %d leads from the combined cursor, %d from its own, %d from none", st.Name, got, want, count(st.Name, ""))
		}
	}
}

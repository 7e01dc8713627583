package lacrm_test

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/lacrm"
	"github.com/leadsync/leadsync/sources/lacrm/lacrmtest"
)

// readStream reads one stream whole into a fresh store (a full pass).
func (b *bundle) readStream(t *testing.T, stream string) *store {
	t.Helper()
	s := newStore()
	for p, err := range b.src.Read(context.Background(), b.acct, stream, "", sources.ReadOptions{Full: true}) {
		if err != nil {
			t.Fatalf("%s: %v", stream, err)
		}
		if len(p.Rejected) > 0 {
			t.Fatalf("%s: the fake's records were rejected: %v", stream, p.Rejected)
		}
		s.put(p)
	}
	return s
}

// closedStatuses are the fake's inactive statuses, and won the ones of them that say so.
var (
	closedStatuses = []string{"Won", "Lost", "Closed Won", "Closed Lost"}
	wonStatuses    = []string{"Won", "Closed Won"}
)

// TestDictionaryStreamsAreTheFakesDefinitions: the pipelines stream holds the pipelines and
// their statuses as stages (open or closed as IsActive says), the custom_fields stream the
// contacts' and each pipeline's fields (not the companies'), read over several pages: both
// exactly the fake's dictionary truth.
func TestDictionaryStreamsAreTheFakesDefinitions(t *testing.T) {
	t.Parallel()
	b := setup(t, lacrmtest.Options{Contacts: 10, PipelineItems: 10}, func(c *lacrm.Config) { c.PageSize = 1 })
	pipelines := b.readStream(t, lacrm.StreamPipelines)
	fields := b.readStream(t, lacrm.StreamCustomFields)
	all := newStore()
	maps.Copy(all.dict, pipelines.dict)
	maps.Copy(all.dict, fields.dict)
	b.wantDictionary(t, all)

	plIDs := b.srv.PipelineIDs("")
	for k, e := range pipelines.dict {
		switch e.Kind {
		case sources.DictPipeline:
			if e.Name == "" || e.Position != slices.Index(plIDs, e.ID) {
				t.Errorf("%s: name %q position %d", k, e.Name, e.Position)
			}
		case sources.DictStage:
			want := "open"
			if slices.Contains(closedStatuses, e.Name) {
				want = "closed"
			}
			if e.Category != want || !slices.Contains(plIDs, e.ParentID) {
				t.Errorf("%s (%s): category %q, pipeline %s; want %q", k, e.Name, e.Category, e.ParentID, want)
			}
		default:
			t.Errorf("pipelines stream wrote %s", k)
		}
	}
	// Positions are each stage's place in its pipeline.
	for _, pl := range plIDs {
		var pos []int
		for _, e := range pipelines.dict {
			if e.Kind == sources.DictStage && e.ParentID == pl {
				pos = append(pos, e.Position)
			}
		}
		slices.Sort(pos)
		if len(pos) < 4 || pos[0] != 0 || pos[len(pos)-1] != len(pos)-1 {
			t.Errorf("pipeline %s: stage positions %v", pl, pos)
		}
	}

	byName := map[string][]sources.DictEntry{}
	for _, e := range fields.dict {
		if e.Kind != sources.DictCustomField {
			t.Errorf("custom_fields stream wrote %s:%s", e.Kind, e.ID)
		}
		byName[e.Name] = append(byName[e.Name], e)
	}
	ls := byName["Lead Source"]
	if len(ls) != 1 || ls[0].Category != "contact" || ls[0].ParentID != "" || ls[0].DataType != "Dropdown" ||
		!strings.Contains(string(ls[0].Detail), `"Google Ads"`) {
		t.Errorf("Lead Source: %+v", ls)
	}
	if bu := byName["Budget"]; len(bu) != 1 || bu[0].Category != "contact" || bu[0].DataType != "Currency" || bu[0].Detail != nil {
		t.Errorf("Budget: %+v", bu)
	}
	ev := byName["Estimated Value"]
	if len(ev) != len(plIDs) {
		t.Fatalf("Estimated Value in %d pipelines, want %d", len(ev), len(plIDs))
	}
	for _, e := range ev {
		if e.Category != "pipeline" || !slices.Contains(plIDs, e.ParentID) || e.DataType != "Currency" || e.Position != 0 {
			t.Errorf("Estimated Value: %+v", e)
		}
	}
	if _, ok := byName["Industry"]; ok {
		t.Error("the companies' field was synced: companies are not leads")
	}
	// Paged one field per request: the contacts' two, then each pipeline's.
	if n := b.srv.Counters().Requests("v2/GetCustomFields", 0); n < int64(len(fields.dict)) {
		t.Errorf("%d GetCustomFields requests for %d fields one per page", n, len(fields.dict))
	}
}

// TestDealsJoinTheirDictionaries: every deal names a synced pipeline and one of its stages,
// its category follows the stage (closed stages won or lost by name), and its custom values
// are keyed by the ids of its pipeline's fields, so custom_field_values can name them.
func TestDealsJoinTheirDictionaries(t *testing.T) {
	t.Parallel()
	b := setup(t, lacrmtest.Options{Contacts: 60, PipelineItems: 80}, nil)
	dict := b.readStream(t, lacrm.StreamPipelines).dict
	maps.Copy(dict, b.readStream(t, lacrm.StreamCustomFields).dict)
	deals := b.readStream(t, lacrm.StreamPipelineItems).deals
	if len(deals) != 80 {
		t.Fatalf("%d deals, want the 80 items", len(deals))
	}
	categories := map[string]int{}
	for _, d := range deals {
		stage, ok := dict["stage:"+d.StageID]
		if !ok || stage.ParentID != d.PipelineID || dict["pipeline:"+d.PipelineID].Kind == "" || stage.Name != d.Status {
			t.Fatalf("deal %s: stage %s (%+v) of pipeline %s", d.ID, d.StageID, stage, d.PipelineID)
		}
		want := sources.StatusOpen
		switch {
		case slices.Contains(wonStatuses, stage.Name):
			want = sources.StatusWon
		case stage.Category == "closed":
			want = sources.StatusLost
		}
		if d.StatusCategory != want {
			t.Errorf("deal %s at %q (%s): category %s, want %s", d.ID, stage.Name, stage.Category, d.StatusCategory, want)
		}
		categories[d.StatusCategory]++
		if len(d.CustomValues) == 0 {
			t.Fatalf("deal %s has no custom values", d.ID)
		}
		for id, v := range d.CustomValues {
			f, ok := dict["custom_field:"+id]
			if !ok || f.ParentID != d.PipelineID {
				t.Fatalf("deal %s: custom value %s is not a field of its pipeline (%+v)", d.ID, id, f)
			}
			if f.Name == "Estimated Value" {
				var n float64
				if json.Unmarshal(v, &n) != nil || n != d.Value {
					t.Errorf("deal %s: value %v, Estimated Value %s", d.ID, d.Value, v)
				}
			}
		}
	}
	if len(categories) != 3 {
		t.Errorf("categories %v: the fake's items should be open, won and lost", categories)
	}

	// A field deleted at the vendor: the next full pass of the items drops its values, and
	// the dictionary no longer lists it.
	var ev string
	for k, e := range dict {
		if e.Name == "Estimated Value" {
			ev = strings.TrimPrefix(k, "custom_field:")
			break
		}
	}
	if err := b.srv.DeleteCustomField(ev); err != nil {
		t.Fatal(err)
	}
	if _, ok := b.readStream(t, lacrm.StreamCustomFields).dict["custom_field:"+ev]; ok {
		t.Error("a deleted field is still listed")
	}
	for _, d := range b.readStream(t, lacrm.StreamPipelineItems).deals {
		if _, ok := d.CustomValues[ev]; ok {
			t.Fatalf("deal %s still has the deleted field's value", d.ID)
		}
	}
}

// TestConfiguredPipelines: pipelines configured by id or by name (any case) limit all three
// streams that read pipelines to them.
func TestConfiguredPipelines(t *testing.T) {
	t.Parallel()
	probe := setup(t, lacrmtest.Options{Contacts: 30, PipelineItems: 40}, nil)
	pipelines := probe.readStream(t, lacrm.StreamPipelines).dict
	second := probe.srv.PipelineIDs("")[1]
	name := strings.ToUpper(pipelines["pipeline:"+second].Name)
	for _, conf := range [][]string{{second}, {name}, {" " + name + " ", second}} {
		b := setup(t, lacrmtest.Options{Contacts: 30, PipelineItems: 40}, func(c *lacrm.Config) { c.PipelineIDs = conf })
		for k, e := range b.readStream(t, lacrm.StreamPipelines).dict {
			if (e.Kind == sources.DictPipeline && e.ID != second) || (e.Kind == sources.DictStage && e.ParentID != second) {
				t.Errorf("pipelines %q: %s listed", conf, k)
			}
		}
		for k, e := range b.readStream(t, lacrm.StreamCustomFields).dict {
			if e.Category == "pipeline" && e.ParentID != second {
				t.Errorf("pipelines %q: field %s of another pipeline listed", conf, k)
			}
		}
		deals := b.readStream(t, lacrm.StreamPipelineItems).deals
		if len(deals) == 0 || len(deals) == 40 {
			t.Errorf("pipelines %q: %d of 40 items read", conf, len(deals))
		}
		for _, d := range deals {
			if d.PipelineID != second {
				t.Fatalf("pipelines %q: an item of pipeline %s read", conf, d.PipelineID)
			}
		}
	}
}

// TestNoChangeRunCost: what a run with no changes costs the account, per stream, in
// requests: the dictionaries are a few requests read whole, and each incremental listing
// one newest-first page.
func TestNoChangeRunCost(t *testing.T) {
	t.Parallel()
	b := setup(t, lacrmtest.Options{Contacts: 100, PipelineItems: 60}, nil)
	s := newStore()
	if err := b.sync(t, s, sources.ReadOptions{}, 0, nil); err != nil {
		t.Fatal(err)
	}
	p := int64(len(b.srv.PipelineIDs("")))
	want := map[string]map[string]int64{
		lacrm.StreamContacts:      {"v2/GetContacts": 1},
		lacrm.StreamPipelines:     {"v2/GetPipelines": 1},
		lacrm.StreamCustomFields:  {"v2/GetPipelines": 1, "v2/GetCustomFields": 1 + p},
		lacrm.StreamPipelineItems: {"v2/GetPipelines": 1, "v2/GetCustomFields": p, "v2/GetPipelineItems": p},
	}
	for _, st := range b.src.Streams() {
		b.srv.Counters().Reset()
		for _, err := range b.src.Read(context.Background(), b.acct, st.Name, s.cursor, sources.ReadOptions{Full: st.Mode == sources.FullRefresh}) {
			if err != nil {
				t.Fatal(err)
			}
		}
		got := map[string]int64{}
		for ep, byStatus := range b.srv.Counters().Snapshot().Requests {
			for _, n := range byStatus {
				got[ep] += n
			}
		}
		if !maps.Equal(got, want[st.Name]) {
			t.Errorf("%s: a run with no changes made %v requests, want %v", st.Name, got, want[st.Name])
		}
	}
}

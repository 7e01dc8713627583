package lctest

import (
	"cmp"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/leadsync/leadsync/internal/simkit"
)

// lifecycle is a location's data beyond its contacts, each part in its own file:
// opportunities, pipelines and lost reasons (opportunities.go); custom-field definitions
// and users (fields.go); form and survey submissions (submissions.go). Each part draws its
// data from its own random streams (simkit.RandFor(seed, "lc/location/<i>/<part>")), so the
// contacts and the other parts do not change when one part changes.
type lifecycle struct {
	opps   oppData
	fields fieldData
	subs   subData
}

// seedLifecycle draws location l's (the i-th) lifecycle data, over [start, end).
func (f *Fake) seedLifecycle(i int, l *location, start, end time.Time) {
	f.seedFields(i, l, start, end) // first: opportunities carry values of its custom fields
	f.seedOpps(i, l, start, end)
	f.seedSubs(i, l, start, end)
}

// lifecycleEndpoints are the API routes of the lifecycle parts.
func (f *Fake) lifecycleEndpoints() []endpoint {
	return slices.Concat(f.oppEndpoints(), f.fieldEndpoints(), f.subEndpoints())
}

// adminLifecycle adds the parts' /_admin/ routes (their mutations).
func (f *Fake) adminLifecycle(mux *http.ServeMux) {
	f.adminOpps(mux)
	f.adminFields(mux)
	f.adminSubs(mux)
}

// lifecycleTruth is location l's live lifecycle rows, sorted (f.mu held).
func (f *Fake) lifecycleTruth(l *location) []simkit.RecordTruth {
	out := slices.Concat(f.oppTruth(l), f.fieldTruth(l), f.subTruth(l))
	slices.SortFunc(out, func(a, b simkit.RecordTruth) int {
		return cmp.Or(strings.Compare(a.Table, b.Table), strings.Compare(a.ID, b.ID))
	})
	return out
}

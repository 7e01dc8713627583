package lctest

import (
	"net/http"
	"time"

	"github.com/leadsync/leadsync/internal/simkit"
)

// subData is a location's form and survey submissions (not yet served).
type subData struct{}

func (f *Fake) seedSubs(_ int, _ *location, _, _ time.Time) {}

func (f *Fake) subEndpoints() []endpoint { return nil }

func (f *Fake) adminSubs(_ *http.ServeMux) {}

func (f *Fake) subTruth(_ *location) []simkit.RecordTruth { return nil }

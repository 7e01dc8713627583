package lctest

import (
	"net/http"
	"time"

	"github.com/leadsync/leadsync/internal/simkit"
)

// oppData is a location's opportunities, pipelines and lost reasons (not yet served).
type oppData struct{}

func (f *Fake) seedOpps(_ int, _ *location, _, _ time.Time) {}

func (f *Fake) oppEndpoints() []endpoint { return nil }

func (f *Fake) adminOpps(_ *http.ServeMux) {}

func (f *Fake) oppTruth(_ *location) []simkit.RecordTruth { return nil }

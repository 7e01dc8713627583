package lctest

import (
	"net/http"
	"time"

	"github.com/leadsync/leadsync/internal/simkit"
)

// fieldData is a location's custom-field definitions and users (not yet served).
type fieldData struct{}

func (f *Fake) seedFields(_ int, _ *location, _, _ time.Time) {}

func (f *Fake) fieldEndpoints() []endpoint { return nil }

func (f *Fake) adminFields(_ *http.ServeMux) {}

func (f *Fake) fieldTruth(_ *location) []simkit.RecordTruth { return nil }

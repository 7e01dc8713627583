package leadconnector_test

import (
	"testing"

	"github.com/leadsync/leadsync/internal/config"
	"github.com/leadsync/leadsync/internal/conformance"
	"github.com/leadsync/leadsync/internal/testenv"
	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/leadconnector"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	conformance.Run(t, sources.LeadConnector, lcConformance(false))
}

// TestConformancePrivateIntegration runs the suite on a connection of Private Integration
// Tokens, one per location.
func TestConformancePrivateIntegration(t *testing.T) {
	t.Parallel()
	conformance.Run(t, sources.LeadConnector, lcConformance(true))
}

func lcConformance(static bool) conformance.Vendor {
	return conformance.Vendor{
		StaticAuth: static,
		Mutate: func(s *testenv.Sandbox, loc string) error {
			ids := s.LC.ContactIDs(loc)
			if _, err := s.LC.CreateContact(loc); err != nil {
				return err
			}
			return s.LC.UpdateContact(loc, ids[0])
		},
		Delete: func(s *testenv.Sandbox, loc string) error { return s.LC.DeleteContact(loc, s.LC.ContactIDs(loc)[1]) },
		// Small pages, so that a backfill crosses several page boundaries.
		Configure: func(o config.Options) { o.(*leadconnector.Options).PageSize = 25 },
	}
}

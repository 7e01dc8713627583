package lacrm_test

import (
	"testing"

	"github.com/leadsync/leadsync/internal/config"
	"github.com/leadsync/leadsync/internal/conformance"
	"github.com/leadsync/leadsync/internal/testenv"
	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/lacrm"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	conformance.Run(t, sources.LACRM, lacrmConformance(false))
}

// TestConformanceAPIKey runs the suite on a connection authenticated with an API key.
func TestConformanceAPIKey(t *testing.T) {
	t.Parallel()
	conformance.Run(t, sources.LACRM, lacrmConformance(true))
}

func lacrmConformance(static bool) conformance.Vendor {
	return conformance.Vendor{
		StaticAuth: static,
		Mutate: func(s *testenv.Sandbox, _ string) error {
			contacts, items := s.LACRMIDs()
			if _, err := s.LACRM.CreateContact(""); err != nil {
				return err
			}
			if err := s.LACRM.UpdateContact(contacts[0]); err != nil {
				return err
			}
			return s.LACRM.UpdatePipelineItem(items[0])
		},
		Delete: func(s *testenv.Sandbox, _ string) error {
			contacts, items := s.LACRMIDs()
			if err := s.LACRM.DeletePipelineItem(items[1]); err != nil {
				return err
			}
			return s.LACRM.DeleteContact(contacts[1]) // with its items, as LACRM does
		},
		// Small pages, so that a backfill crosses several page boundaries.
		Configure: func(o config.Options) { o.(*lacrm.Options).PageSize = 25 },
	}
}

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
		// A new contact, an updated one, and an item moved to its next status (a deal's
		// stage change).
		Mutate: func(s *testenv.Sandbox, account string) error {
			contacts, items := s.LACRM.ContactIDs(account), s.LACRM.PipelineItemIDs(account)
			if _, err := s.LACRM.CreateContact(account); err != nil {
				return err
			}
			if err := s.LACRM.UpdateContact(contacts[0]); err != nil {
				return err
			}
			return s.LACRM.UpdatePipelineItem(items[0])
		},
		// A deleted item, a deleted contact (with its items, as LACRM does) and a deleted
		// custom field: a deal and a dictionary entry for the full pass to soft-delete.
		Delete: func(s *testenv.Sandbox, account string) error {
			contacts, items := s.LACRM.ContactIDs(account), s.LACRM.PipelineItemIDs(account)
			fields := s.LACRM.CustomFieldIDs(account)
			if err := s.LACRM.DeletePipelineItem(items[1]); err != nil {
				return err
			}
			if err := s.LACRM.DeleteCustomField(fields[len(fields)-1]); err != nil {
				return err
			}
			return s.LACRM.DeleteContact(contacts[1])
		},
		// Small pages, so that a backfill crosses several page boundaries.
		Configure: func(o config.Options) { o.(*lacrm.Options).PageSize = 25 },
	}
}

package leadconnector_test

import (
	"slices"
	"testing"

	"github.com/leadsync/leadsync/internal/config"
	"github.com/leadsync/leadsync/internal/conformance"
	"github.com/leadsync/leadsync/internal/testenv"
	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/leadconnector"
	"github.com/leadsync/leadsync/sources/leadconnector/lctest"
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
		// Every stream changes: a contact added and one updated, an opportunity added and one
		// moved to the next stage, a form submission, a renamed custom field.
		Mutate: func(s *testenv.Sandbox, loc string) error {
			ids := s.LC.ContactIDs(loc)
			if _, err := s.LC.CreateContact(loc); err != nil {
				return err
			}
			if err := s.LC.UpdateContact(loc, ids[0]); err != nil {
				return err
			}
			if _, err := s.LC.CreateOpportunity(loc, lctest.OpportunitySpec{}); err != nil {
				return err
			}
			opp := s.LC.OpportunityIDs(loc)[0]
			state, err := s.LC.Opportunity(loc, opp)
			if err != nil {
				return err
			}
			stages := s.LC.StageIDs(loc, state.PipelineID)
			next := stages[(slices.Index(stages, state.StageID)+1)%len(stages)]
			if err := s.LC.MoveOpportunity(loc, opp, next); err != nil {
				return err
			}
			if _, err := s.LC.AddFormSubmission(loc); err != nil {
				return err
			}
			return s.LC.RenameCustomField(loc, s.LC.CustomFieldIDs(loc, "")[0], "Renamed field")
		},
		// A contact, an opportunity, a submission, a custom field and a user deleted: the
		// full pass notices each.
		Delete: func(s *testenv.Sandbox, loc string) error {
			if err := s.LC.DeleteOpportunity(loc, s.LC.OpportunityIDs(loc)[0]); err != nil {
				return err
			}
			if err := s.LC.DeleteSubmission(loc, s.LC.SubmissionIDs(loc)[0]); err != nil {
				return err
			}
			fields := s.LC.CustomFieldIDs(loc, "")
			if err := s.LC.DeleteCustomField(loc, fields[len(fields)-1]); err != nil {
				return err
			}
			users := s.LC.UserIDs(loc)
			if err := s.LC.DeleteUser(loc, users[len(users)-1]); err != nil {
				return err
			}
			return s.LC.DeleteContact(loc, s.LC.ContactIDs(loc)[1])
		},
		// Small pages, so that a backfill crosses several page boundaries.
		Configure: func(o config.Options) { o.(*leadconnector.Options).PageSize = 25 },
	}
}

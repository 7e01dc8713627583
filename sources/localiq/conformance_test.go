package localiq_test

import (
	"testing"
	"time"

	"github.com/leadsync/leadsync/internal/conformance"
	"github.com/leadsync/leadsync/internal/testenv"
	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/localiq/liqtest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	conformance.Run(t, sources.LocaliQ, conformance.Vendor{
		// Interactions are read by creation date, re-reading the last days: new ones and an
		// edited recent one are what an incremental run sees. LocaliQ does not delete them.
		Mutate: func(s *testenv.Sandbox, adv string) error {
			recent, err := s.LIQ.AddInteractions(liqtest.NewInteraction{GMAID: adv, EventType: "form",
				CreatedAt: time.Now().Add(-time.Hour)}, 2)
			if err != nil {
				return err
			}
			if err := s.LIQ.EditInteraction(recent[0], "qualified"); err != nil {
				return err
			}
			// A new cycle of a reported campaign, and more spend on another.
			campaigns, err := s.LIQ.Campaigns(adv)
			if err != nil {
				return err
			}
			for _, c := range campaigns {
				if c.Reported && len(c.Cycles) > 0 {
					if _, err := s.LIQ.AddCycle(adv, c.ID, liqtest.NewCycle{Budget: 300, Spend: 12.5, Clicks: 4}); err != nil {
						return err
					}
					return s.LIQ.SetCycleSpend(adv, c.Cycles[0].ID, 999.99)
				}
			}
			return nil
		},
	})
}

package localiq

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"math"
	"net/url"
	"strconv"
	"time"

	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/httpx"
)

// StreamCampaignCycles are the campaigns_overview report's campaign cycles with their spend
// and outcomes (PII-free: read for HIPAA-restricted advertisers too).
const StreamCampaignCycles = "campaign_cycles"

// The stream reads GET /client_reports/campaigns_overview/{gmaid}, the path
// ../shared/vendor-docs/localiq/_campaigns_overview_report.md.erb documents (no parameters).
// API-CONTRACTS §5.3 calls it /client_reports/campaigns/{gmaid}?report_type=campaigns_overview,
// but that is the Campaigns & Cycles listing (_campaigns_and_cycles.md.erb): campaigns and
// cycle dates only, no spend. The report is one document holding every campaign with activity
// within the previous year and all its cycles, so a run reads it whole (one request per
// advertiser) and the sink upserts every cycle; a cycle that ages out of the report stays in
// the warehouse as it last was.

// overviewJSON is the part of the report the stream maps.
type overviewJSON struct {
	ReportDate flexString      `json:"report_date"`
	Currency   flexString      `json:"currency"`
	ReportData json.RawMessage `json:"report_data"`
}

type campaignJSON struct {
	ID       flexString      `json:"global_master_campaign_id"`
	Name     flexString      `json:"name"`
	Type     flexString      `json:"type"`
	Source   flexString      `json:"source"`
	Currency flexString      `json:"currency"`
	Status   flexString      `json:"status"`
	Cycles   json.RawMessage `json:"cycles"`
}

type cycleJSON struct {
	ID          flexString `json:"campaign_cycle"`
	StartDate   flexString `json:"start_date"`
	EndDate     flexString `json:"end_date"`
	Impressions flexInt    `json:"impressions"`
	Clicks      flexInt    `json:"clicks"`
	Leads       flexInt    `json:"leads"`
	Spend       flexFloat  `json:"spend"`
	Budget      flexFloat  `json:"budget"`
}

// flexFloat accepts a number or a numeric string (the document types spend "Integer" and
// shows 500.0); anything else is 0.
type flexFloat float64

func (v *flexFloat) UnmarshalJSON(b []byte) error {
	var s flexString
	_ = s.UnmarshalJSON(b)
	if f, err := strconv.ParseFloat(string(s), 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
		*v = flexFloat(f)
	}
	return nil
}

// reportDay reads a report date (YYYY-MM-DD, or a timestamp whose date part is one) as
// midnight UTC of that day: the report's dates are the advertiser's own days. Null, "" and
// junk are the zero time.
func reportDay(s flexString) time.Time {
	if len(s) < len(dateLayout) {
		return time.Time{}
	}
	d, err := time.Parse(dateLayout, string(s[:len(dateLayout)]))
	if err != nil {
		return time.Time{}
	}
	return d
}

// arrayOf returns raw's elements when it is a JSON array; ok is false for anything else but
// null or nothing, which are empty.
func arrayOf(raw json.RawMessage) (items []json.RawMessage, ok bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, true
	}
	if raw[0] != '[' || json.Unmarshal(raw, &items) != nil {
		return nil, false
	}
	return items, true
}

func isObject(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && raw[0] == '{'
}

// overview is one decoded campaigns_overview report.
type overview struct {
	ReportDate string // YYYY-MM-DD; "" when the report has none
	Cycles     []sources.CampaignCycle
	// Rejected are the campaigns and cycles that cannot be keyed (no id, not an object).
	Rejected []sources.Rejected
}

// decodeOverview maps a report to campaign cycles, leniently: numbers may be strings, dates
// null or missing (the document's own example writes one "end_dat"), and a campaign or a cycle
// that cannot be keyed is rejected without failing the others. A body that is not the
// documented object is an error. The report has no per-cycle calls: Calls stays 0.
func decodeOverview(body []byte) (overview, error) {
	var out overview
	if !isObject(body) {
		return out, errors.New("campaigns_overview report is not a JSON object")
	}
	var env overviewJSON
	if err := json.Unmarshal(body, &env); err != nil {
		return out, err
	}
	if d := reportDay(env.ReportDate); !d.IsZero() {
		out.ReportDate = d.Format(dateLayout)
	}
	var data struct {
		Campaigns json.RawMessage `json:"campaigns"`
	}
	if rd := bytes.TrimSpace(env.ReportData); len(rd) > 0 && string(rd) != "null" {
		if !isObject(rd) || json.Unmarshal(rd, &data) != nil {
			return out, errors.New("campaigns_overview report_data is not an object")
		}
	}
	campaigns, ok := arrayOf(data.Campaigns)
	if !ok {
		return out, errors.New("campaigns_overview report_data.campaigns is not an array")
	}
	index := map[[2]string]int{} // a repeated cycle: the last copy wins, in the first one's place
	for _, raw := range campaigns {
		var c campaignJSON
		if !isObject(raw) || json.Unmarshal(raw, &c) != nil {
			out.Rejected = append(out.Rejected, sources.Rejected{Reason: "campaign is not a JSON object", Raw: bytes.Clone(raw)})
			continue
		}
		if c.ID == "" {
			out.Rejected = append(out.Rejected, sources.Rejected{Reason: "campaign without global_master_campaign_id", Raw: bytes.Clone(raw)})
			continue
		}
		cycles, ok := arrayOf(c.Cycles)
		if !ok {
			out.Rejected = append(out.Rejected, sources.Rejected{ID: string(c.ID), Reason: "campaign cycles are not an array", Raw: bytes.Clone(raw)})
			continue
		}
		currency := string(cmp.Or(c.Currency, env.Currency))
		for _, craw := range cycles {
			var cy cycleJSON
			if !isObject(craw) || json.Unmarshal(craw, &cy) != nil {
				out.Rejected = append(out.Rejected, sources.Rejected{Reason: "cycle of campaign " + string(c.ID) + " is not a JSON object", Raw: bytes.Clone(craw)})
				continue
			}
			if cy.ID == "" {
				out.Rejected = append(out.Rejected, sources.Rejected{Reason: "cycle of campaign " + string(c.ID) + " without campaign_cycle", Raw: bytes.Clone(craw)})
				continue
			}
			row := sources.CampaignCycle{
				CampaignID: string(c.ID), CycleID: string(cy.ID), CampaignName: string(c.Name),
				CampaignType: string(c.Type), Channel: string(c.Source), Status: string(c.Status), Currency: currency,
				Start: reportDay(cy.StartDate), End: reportDay(cy.EndDate),
				Spend: float64(cy.Spend), Budget: float64(cy.Budget),
				Impressions: int64(cy.Impressions), Clicks: int64(cy.Clicks), Leads: int64(cy.Leads),
			}
			key := [2]string{row.CampaignID, row.CycleID}
			if i, ok := index[key]; ok {
				out.Cycles[i] = row
				continue
			}
			index[key] = len(out.Cycles)
			out.Cycles = append(out.Cycles, row)
		}
	}
	return out, nil
}

// overviewCursor is the stream's cursor: informative only, as a full-refresh stream is read
// from the start every run.
type overviewCursor struct {
	ReportDate string `json:"report_date,omitempty"`
}

// cyclePages reads the advertiser's campaigns_overview report: one request, one Page with
// every cycle and the rejected records. A 403 ends it with a *sources.RestrictedError.
func (s *Source) cyclePages(ctx context.Context, acct sources.Account) iter.Seq2[sources.Page, error] {
	return func(yield func(sources.Page, error) bool) {
		var rep overview
		_, err := s.client.Decode(ctx, httpx.Request{
			Path:     "/client_reports/campaigns_overview/" + url.PathEscape(acct.ID),
			Endpoint: "client_reports/campaigns_overview", Bucket: "client", Auth: s.tokens.Grant(),
		}, func(body []byte) (err error) {
			rep, err = decodeOverview(body)
			return err
		})
		if err != nil {
			yield(sources.Page{}, s.restricted(acct, StreamCampaignCycles, fmt.Sprintf("localiq: account %s: campaigns_overview", acct.ID), err))
			return
		}
		for _, r := range rep.Rejected {
			s.log.WarnContext(ctx, "localiq: quarantined a campaigns_overview record", slog.String("account", acct.ID), slog.Any("rejected", r))
		}
		b, _ := json.Marshal(overviewCursor{ReportDate: rep.ReportDate})
		yield(sources.Page{Cycles: rep.Cycles, Rejected: rep.Rejected, Next: sources.Cursor(b)}, nil)
	}
}

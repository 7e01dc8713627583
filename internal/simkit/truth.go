package simkit

import "time"

// LeadTruth is one lead as leadsync must end up storing it.
type LeadTruth struct {
	ID        string    `json:"id"`
	Kind      string    `json:"kind"`
	UpdatedAt time.Time `json:"updated_at"`
}

// AccountTruth is a fake's ground truth for one account.
type AccountTruth struct {
	Source    string `json:"source"`
	AccountID string `json:"account_id"`
	// Restricted accounts answer 403 on their lead endpoints: their leads cannot be synced.
	Restricted bool        `json:"restricted"`
	Leads      []LeadTruth `json:"leads"` // sorted by ID
	// Records are the account's rows of the lifecycle tables (deals, crm_dictionary,
	// submissions, campaign_cycles) that leadsync must end up storing live: those of the
	// streams the fake lets it read (a restricted account's PII-free streams included).
	Records []RecordTruth `json:"records,omitempty"` // sorted by Table, then ID
}

// RecordTruth is one row of a lifecycle table as leadsync must store it. ID is the table's
// row id as testenv reads it back: deals.deal_id, submissions.submission_id,
// crm_dictionary's kind + ":" + entry_id, campaign_cycles' campaign_id + "/" + cycle_id.
// Updated, when set, must equal the stored updated time (deals.updated_at,
// submissions.submitted_at).
type RecordTruth struct {
	Table   string    `json:"table"`
	ID      string    `json:"id"`
	Updated time.Time `json:"updated,omitzero"`
}

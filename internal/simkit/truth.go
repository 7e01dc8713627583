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
}

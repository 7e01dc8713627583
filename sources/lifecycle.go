package sources

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"time"
)

// The lead lifecycle beyond the lead itself: deals (LeadConnector opportunities, LACRM
// pipeline items), the CRM's dictionaries (pipelines and their stages, lost reasons,
// custom-field definitions, users), form and survey submissions, and campaign cycles with
// their spend. Each has its warehouse table; a stream writes one of them (Stream.Table) and
// its pages carry that table's rows.

// Warehouse tables of the lifecycle streams.
const (
	TableDeals          = "deals"           // Page.Deals
	TableDictionary     = "crm_dictionary"  // Page.Dictionary
	TableSubmissions    = "submissions"     // Page.Submissions
	TableCampaignCycles = "campaign_cycles" // Page.Cycles
)

// SoftDeletes reports whether a complete full pass of a stream writing table soft-deletes
// the rows it did not see: a table of records the vendor can delete. Counts and campaign
// cycles are overwritten instead.
func SoftDeletes(table string) bool {
	switch table {
	case TableLeads, TableDeals, TableDictionary, TableSubmissions:
		return true
	}
	return false
}

// Status categories of a deal (Deal.StatusCategory): every vendor's own vocabulary maps to
// one of them, and the vendor's word is kept beside it.
const (
	StatusOpen      = "open"
	StatusWon       = "won"
	StatusLost      = "lost"
	StatusAbandoned = "abandoned"
)

// Deal is a sales opportunity of a contact: a LeadConnector opportunity, an LACRM pipeline
// item. Name and Raw may hold the contact's PII (HighLevel names opportunities after the
// contact, and embeds the contact).
type Deal struct {
	ID        string
	ContactID string
	Name      string
	// PipelineID and StageID name the deal's pipeline and its stage in it (crm_dictionary
	// kinds "pipeline" and "stage").
	PipelineID, StageID string
	// Status is the vendor's own word; StatusCategory its StatusOpen .. StatusAbandoned.
	Status, StatusCategory string
	Value                  float64 // the monetary value, in the account's currency
	AssignedTo             string  // the user id (crm_dictionary kind "user")
	LeadSource             string  // where the deal came from, as the vendor says
	LostReasonID           string
	CreatedAt, UpdatedAt   time.Time // UTC
	// StageChangedAt and StatusChangedAt are the vendor's own (zero when it does not say).
	StageChangedAt, StatusChangedAt time.Time
	// CustomValues are the deal's custom-field values by field id (crm_dictionary kind
	// "custom_field"), each the vendor's JSON; nil when there are none.
	CustomValues map[string]json.RawMessage
	Raw          json.RawMessage
	HIPAA        bool
}

// LogValue keeps PII out of logs.
func (d Deal) LogValue() slog.Value { return slog.GroupValue(slog.String("deal", d.ID)) }

// String keeps PII out of %v.
func (d Deal) String() string { return "deal " + d.ID }

// Dictionary kinds (DictEntry.Kind).
const (
	DictPipeline    = "pipeline"
	DictStage       = "stage" // Parent: the pipeline
	DictLostReason  = "lost_reason"
	DictCustomField = "custom_field"
	DictUser        = "user"
)

// DictEntry is one entry of a CRM's dictionaries: what an id in a deal or a lead means. It
// holds no lead PII: a user entry keeps the user's name only.
type DictEntry struct {
	Kind     string // DictPipeline .. DictUser
	ID       string
	ParentID string // a stage's pipeline, or an LACRM pipeline custom field's; "" otherwise
	Name     string
	Position int
	// DataType is a custom field's type as the vendor names it (TEXT, MONETORY, Dropdown…).
	DataType string
	// Category is a stage's status category when the vendor says (LACRM: open, or closed
	// for an inactive status), a custom field's model (contact, opportunity, pipeline), or
	// a user's role.
	Category string
	// Detail is what else is worth keeping, as JSON (picklist options, field key); nil when
	// nothing.
	Detail json.RawMessage
}

// Submission kinds (Submission.Kind).
const (
	SubmissionForm   = "form"
	SubmissionSurvey = "survey"
)

// Attribution is where a submission (or a lead) came from, promoted from the vendor's
// tracking data.
type Attribution struct {
	Source, Medium, Campaign                               string
	UTMSource, UTMMedium, UTMCampaign, UTMTerm, UTMContent string
	GCLID, FBCLID, Referrer, PageURL                       string
}

// Submission is one form or survey submission, linked to its contact. Name, Email, Phone,
// Answers and Raw are PII.
type Submission struct {
	ID        string
	Kind      string // SubmissionForm or SubmissionSurvey
	FormID    string // the form's or survey's id
	FormName  string
	ContactID string
	Name      string
	Email     string
	Phone     string
	Attribution
	// Answers are the submitted fields (the vendor's JSON object), without the tracking.
	Answers     json.RawMessage
	SubmittedAt time.Time // UTC
	Raw         json.RawMessage
	HIPAA       bool
}

// LogValue keeps PII out of logs.
func (s Submission) LogValue() slog.Value { return slog.GroupValue(slog.String("submission", s.ID)) }

// String keeps PII out of %v.
func (s Submission) String() string { return fmt.Sprintf("%s submission %s", s.Kind, s.ID) }

// CampaignCycle is one cycle (a budget period) of an advertising campaign, with its spend
// and outcomes: PII-free, so it syncs for HIPAA-restricted accounts too.
type CampaignCycle struct {
	CampaignID   string
	CycleID      string
	CampaignName string
	CampaignType string // search, display, email…
	Channel      string // the vendor's source name ("Targeted Email")
	Status       string // running, stopped, ended
	Currency     string
	Start, End   time.Time // days (midnight UTC); End zero while the cycle runs
	Spend        float64
	Budget       float64
	Impressions  int64
	Clicks       int64
	Leads        int64
	Calls        int64
}

// MissingScopeError is a stream whose endpoint the grant lacks the OAuth scope for (the
// vendor's 401 "not authorized for this scope"): that stream is marked missing_scope, with
// the fix named, and the account's other streams carry on.
type MissingScopeError struct {
	Vendor, AccountID, Stream string
	// Scope is the scope the stream needs.
	Scope string
	// Message is the vendor's own message.
	Message string
}

func (e *MissingScopeError) Error() string {
	return fmt.Sprintf("%s: account %s stream %s: the grant lacks scope %s (%s): run `leadsync auth login` "+
		"again with %s among the connection's scopes", e.Vendor, e.AccountID, e.Stream, e.Scope, e.Message, e.Scope)
}

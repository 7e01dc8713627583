package lacrm

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"unicode"

	"github.com/leadsync/leadsync/sources"
)

// Pipeline items are the deals of LACRM (sources.TableDeals): an item is a contact's place in
// a pipeline, at one of its statuses. How an item maps:
//
//   - ID PipelineItemId, ContactID ContactId, PipelineID PipelineId (else the listing's),
//     StageID StatusId; Name stays empty (items have none; the pipeline's name is in
//     crm_dictionary), and so do AssignedTo, LeadSource and LostReasonID.
//   - Status is StatusMetaData.Name, else the status's name in GetPipelines; StatusCategory
//     comes from statusCategory.
//   - CustomValues are the item's custom-field values by field id: the keys of the item that
//     are the names of its pipeline's custom fields (GetCustomFields), each the vendor's
//     JSON; null and "" values are left out. Keys that name no field of the pipeline stay in
//     Raw only. The ids are the crm_dictionary custom_field entries of the custom_fields
//     stream, so custom_field_values names them.
//   - Value is the first of the pipeline's Currency fields that holds a number, else the
//     item's "Estimated Value" when it holds one, else 0 (see itemValue).
//   - CreatedAt and UpdatedAt are DateCreated and LastUpdate (UpdatedAt falls back to
//     DateCreated), Raw the item's bytes, HIPAA the account's.

// estimatedValue is the custom field read as an item's value when its pipeline's field
// definitions name no Currency field that holds one: the name LACRM users and our fake give it.
const estimatedValue = "Estimated Value"

// pipelineInfo is what decoding one pipeline's items needs of its definitions.
type pipelineInfo struct {
	pipeline pipelineDef
	fields   []fieldDef // the pipeline's custom fields, in definition order
}

type pipelineItemJSON struct {
	PipelineItemID flexString `json:"PipelineItemId"`
	PipelineID     flexString `json:"PipelineId"`
	StatusID       flexString `json:"StatusId"`
	ContactID      flexString `json:"ContactId"`
	DateCreated    flexString `json:"DateCreated"`
	LastUpdate     flexString `json:"LastUpdate"`
	StatusMetaData *struct {
		Name     flexString `json:"Name"`
		IsActive *flexBool  `json:"IsActive"`
	} `json:"StatusMetaData"`
}

// decodePipelineItem maps a GetPipelineItems result of the pipeline pl. An error rejects
// the item and names fields, never values; the deal's ID is set whenever the item had one.
func decodePipelineItem(acct sources.Account, pl pipelineInfo, raw []byte) (sources.Deal, error) {
	var it pipelineItemJSON
	if err := json.Unmarshal(raw, &it); err != nil {
		var id struct {
			PipelineItemID flexString `json:"PipelineItemId"`
		}
		_ = json.Unmarshal(raw, &id)
		return sources.Deal{ID: string(id.PipelineItemID)}, errors.New(sources.DecodeReason(err))
	}
	if it.PipelineItemID == "" {
		return sources.Deal{}, errors.New("no PipelineItemId")
	}
	d := sources.Deal{ID: string(it.PipelineItemID), ContactID: strings.TrimSpace(string(it.ContactID)),
		PipelineID: cmpOr(string(it.PipelineID), pl.pipeline.ID), StageID: string(it.StatusID),
		HIPAA: acct.HIPAAProtected}
	created, updated, err := times(it.DateCreated, it.LastUpdate)
	if err != nil {
		return d, err
	}
	d.CreatedAt, d.UpdatedAt, d.Raw = created, updated, bytes.Clone(raw)

	// The status: the item's own metadata, else what GetPipelines says of its StatusId.
	st, listed := pl.pipeline.status(d.StageID)
	active, known := st.Active, listed && st.known
	if md := it.StatusMetaData; md != nil {
		d.Status = strings.TrimSpace(string(md.Name))
		if md.IsActive != nil {
			active, known = bool(*md.IsActive), true
		}
	}
	if d.Status == "" {
		d.Status = st.Name
	}
	d.StatusCategory = statusCategory(d.Status, active || !known)

	var keys map[string]json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil {
		return d, errors.New(sources.DecodeReason(err))
	}
	d.CustomValues = customValues(keys, pl.fields)
	d.Value = itemValue(keys, pl.fields)
	return d, nil
}

// lookup is the value of key in an item: the key as written, else one equal to it ignoring
// case (as encoding/json matches names). nil when absent.
func lookup(keys map[string]json.RawMessage, key string) json.RawMessage {
	if v, ok := keys[key]; ok {
		return v
	}
	for k, v := range keys {
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return nil
}

// customValues are an item's values of its pipeline's custom fields, by field id; nil when
// none. Null and "" are no value.
func customValues(keys map[string]json.RawMessage, fields []fieldDef) map[string]json.RawMessage {
	var out map[string]json.RawMessage
	for _, f := range fields {
		if f.Name == "" {
			continue
		}
		v := bytes.TrimSpace(lookup(keys, f.Name))
		if len(v) == 0 || string(v) == "null" || string(v) == `""` {
			continue
		}
		if out == nil {
			out = map[string]json.RawMessage{}
		}
		out[f.ID] = bytes.Clone(v)
	}
	return out
}

// itemValue is an item's monetary value: the first of its pipeline's Currency fields that
// holds a number, else its "Estimated Value" when that holds one, else 0.
func itemValue(keys map[string]json.RawMessage, fields []fieldDef) float64 {
	for _, f := range fields {
		if strings.EqualFold(f.Type, "Currency") && f.Name != "" {
			if v, ok := number(lookup(keys, f.Name)); ok {
				return v
			}
		}
	}
	v, _ := number(lookup(keys, estimatedValue))
	return v
}

// number reads a JSON number, or a string holding one (spaces around it allowed); NaN and
// infinities are no number.
func number(raw json.RawMessage) (float64, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return 0, false
	}
	s := string(raw)
	if raw[0] == '"' {
		if json.Unmarshal(raw, &s) != nil {
			return 0, false
		}
		s = strings.TrimSpace(s)
	} else if raw[0] != '-' && (raw[0] < '0' || raw[0] > '9') {
		return 0, false
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, false
	}
	return v, true
}

// statusCategory maps an LACRM status to a deal's category. An active status (IsActive, or
// not known to be inactive) is a step of the pipeline: open. An inactive one closes the item
// [API-CONTRACTS.md §5.2: won or lost], and LACRM does not say which: the status is won when
// its name says so (wonStatus), lost otherwise.
func statusCategory(name string, active bool) string {
	switch {
	case active:
		return sources.StatusOpen
	case wonStatus(name):
		return sources.StatusWon
	default:
		return sources.StatusLost
	}
}

// wonWords and notWords decide wonStatus. A word is a run of letters, digits and apostrophes,
// compared in lower case.
var (
	wonWords = map[string]bool{"won": true, "win": true, "sold": true, "signed": true, "converted": true,
		"purchased": true, "booked": true, "hired": true}
	notWords = map[string]bool{"not": true, "no": true, "non": true, "never": true, "lost": true,
		"didn't": true, "didnt": true, "unsigned": true}
)

// wonStatus reports whether a closed status's name means the item was won: one of its words
// is a won word (Won, Closed Won, Sold, Signed, Converted, Purchased, Booked, Hired…) and
// none negates it (Not Sold, Lost, Didn't sign…).
func wonStatus(name string) bool {
	won := false
	for _, w := range strings.FieldsFunc(strings.ToLower(name), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '\'' && r != '’'
	}) {
		w = strings.ReplaceAll(w, "’", "'")
		if notWords[w] {
			return false
		}
		won = won || wonWords[w]
	}
	return won
}

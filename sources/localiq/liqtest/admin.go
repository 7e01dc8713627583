package liqtest

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/leadsync/leadsync/internal/simkit"
)

// ErrNotFound is returned by mutations of an unknown advertiser or interaction.
var ErrNotFound = errors.New("liqtest: not found")

// Advertisers lists the advertisers in identities order, with the sandbox user's role on each.
func (f *Fake) Advertisers() []Advertiser {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]Advertiser, 0, len(f.advertisers))
	user := strings.ToLower(f.opts.SandboxUser)
	for _, a := range f.advertisers {
		p := a.public()
		p.AgencyCustomer = f.agencyRole[user][a.gmaid]
		out = append(out, p)
	}
	return out
}

// SetAgencyCustomer grants user the Agency Customer role (privilege level 3) on every
// advertiser, or removes it from all of them.
func (f *Fake) SetAgencyCustomer(user string, on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	user = strings.ToLower(user)
	delete(f.agencyRole, user)
	if on {
		for _, a := range f.advertisers {
			f.setRole(user, a.gmaid, true)
		}
	}
}

// SetAgencyCustomerOn grants or removes user's Agency Customer role on one advertiser: the
// identities answer gives privilege_level per advertiser (_identity.md.erb).
func (f *Fake) SetAgencyCustomerOn(user, gmaid string, on bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.byGMAID[gmaid] == nil {
		return fmt.Errorf("advertiser %s: %w", gmaid, ErrNotFound)
	}
	f.setRole(strings.ToLower(user), gmaid, on)
	return nil
}

// setRole records user's role on gmaid; user is lower case. Callers hold f.mu.
func (f *Fake) setRole(user, gmaid string, on bool) {
	if !on {
		delete(f.agencyRole[user], gmaid)
		return
	}
	if f.agencyRole[user] == nil {
		f.agencyRole[user] = map[string]bool{}
	}
	f.agencyRole[user][gmaid] = true
}

// grantDefaultRole gives the sandbox user its role at start: on every advertiser with
// Options.AgencyCustomer, else on the first HIPAA advertiser by gmaid (none with
// Options.RestrictAllHIPAA), so that one HIPAA advertiser's leads sync and the others'
// answer 403.
func (f *Fake) grantDefaultRole() {
	user := strings.ToLower(f.opts.SandboxUser)
	if f.opts.AgencyCustomer {
		f.SetAgencyCustomer(user, true)
		return
	}
	if f.opts.RestrictAllHIPAA {
		return
	}
	first := ""
	for _, a := range f.advertisers {
		if a.hipaa && (first == "" || a.gmaid < first) {
			first = a.gmaid
		}
	}
	if first != "" {
		_ = f.SetAgencyCustomerOn(user, first, true)
	}
}

// SetActiveState sets an advertiser's active_state (2 active, 1 grace, 0 inactive).
func (f *Fake) SetActiveState(gmaid string, state int) error {
	if state < 0 || state > 2 {
		return fmt.Errorf("liqtest: active_state %d out of range", state)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.byGMAID[gmaid]
	if a == nil {
		return fmt.Errorf("advertiser %s: %w", gmaid, ErrNotFound)
	}
	a.activeState = state
	return nil
}

// SetHIPAA marks an advertiser HIPAA-protected or not.
func (f *Fake) SetHIPAA(gmaid string, on bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.byGMAID[gmaid]
	if a == nil {
		return fmt.Errorf("advertiser %s: %w", gmaid, ErrNotFound)
	}
	a.hipaa = on
	return nil
}

// RevokeGrant revokes a grant and all its tokens.
func (f *Fake) RevokeGrant(grant string) {
	f.tokens.RevokeGrant(grant)
	f.counters.Inc(simkit.CountRevokedGrants)
}

// AddInteractions adds n interactions as spec describes (random where spec is zero) and
// returns their ids, which are larger than every existing id.
func (f *Fake) AddInteractions(spec NewInteraction, n int) ([]int64, error) {
	switch spec.EventType {
	case "", "call", "form", "chat":
	default:
		return nil, fmt.Errorf("liqtest: event_type %q", spec.EventType)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.byGMAID[spec.GMAID]
	if a == nil {
		return nil, fmt.Errorf("advertiser %s: %w", spec.GMAID, ErrNotFound)
	}
	now := f.clock.Now()
	at := spec.CreatedAt
	if at.IsZero() {
		at = now
	}
	ids := make([]int64, 0, n)
	for range n {
		id := f.nextID
		f.nextID += 1 + int64(len(ids)%3)
		r := simkit.RandFor(f.opts.Seed, "added/"+strconv.FormatInt(id, 10))
		it := f.newInteraction(r, a, id, at.Truncate(time.Second), spec)
		insert(a, it)
		f.byID[id] = it
		ids = append(ids, id)
	}
	return ids, nil
}

// EditInteraction changes an interaction's status and marks it read now, which makes now its
// update time.
func (f *Fake) EditInteraction(id int64, status string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	it := f.byID[id]
	if it == nil {
		return fmt.Errorf("interaction %d: %w", id, ErrNotFound)
	}
	now := f.clock.Now().UTC().Truncate(time.Second)
	it.doc["status"] = status
	if c, ok := it.doc["contact"].(map[string]any); ok {
		c["status"] = status
	}
	it.doc["read_at"] = now.In(it.adv.loc).Format(time.RFC3339)
	if now.After(it.updated) {
		it.updated = now
	}
	return nil
}

// GroundTruth is what leadsync must end up storing for the sandbox user: every lead
// interaction (non-lead chats excluded) of each advertiser whose lead endpoints answer; the
// others are Restricted with no leads. Every advertiser, restricted or not, has the
// campaign_cycles rows of its campaigns_overview report in Records.
func (f *Fake) GroundTruth() []simkit.AccountTruth {
	f.mu.RLock()
	defer f.mu.RUnlock()
	user := strings.ToLower(f.opts.SandboxUser)
	out := make([]simkit.AccountTruth, 0, len(f.advertisers))
	for _, a := range f.advertisers {
		at := simkit.AccountTruth{Source: "localiq", AccountID: a.gmaid, Leads: []simkit.LeadTruth{}, Records: f.cycleTruth(a)}
		if _, ok := f.leadAccess(user, a.gmaid); !ok {
			at.Restricted = true
		} else {
			for _, it := range a.list {
				if it.nonLead {
					continue
				}
				at.Leads = append(at.Leads, simkit.LeadTruth{ID: strconv.FormatInt(it.id, 10), Kind: it.kind,
					UpdatedAt: it.updated.UTC().Truncate(time.Millisecond)})
			}
			slices.SortFunc(at.Leads, func(x, y simkit.LeadTruth) int { return strings.Compare(x.ID, y.ID) })
		}
		out = append(out, at)
	}
	return out
}

func (f *Fake) adminRoutes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/counters", simkit.AdminCounters(f.counters))
	mux.Handle("/faults", simkit.AdminFaults(f.faults))
	mux.HandleFunc("GET /truth", func(w http.ResponseWriter, r *http.Request) {
		simkit.WriteJSON(w, http.StatusOK, f.GroundTruth())
	})
	mux.HandleFunc("PUT /ttl", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			TTL        string `json:"ttl"`
			TTLSeconds *int64 `json:"ttl_seconds"`
		}
		if err := simkit.DecodeStrict(r, &req); err != nil {
			adminError(w, http.StatusBadRequest, err)
			return
		}
		ttl := time.Duration(0)
		if req.TTLSeconds != nil {
			ttl = time.Duration(*req.TTLSeconds) * time.Second
		} else if d, err := time.ParseDuration(req.TTL); err == nil {
			ttl = d
		}
		if ttl <= 0 {
			adminError(w, http.StatusBadRequest, errors.New("ttl must be a positive duration"))
			return
		}
		f.tokens.SetTTL(ttl)
		simkit.WriteJSON(w, http.StatusOK, map[string]string{"ttl": ttl.String()})
	})
	mux.HandleFunc("PUT /rate_limit", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			PerSecond int `json:"per_second"`
		}
		if err := simkit.DecodeStrict(r, &req); err != nil {
			adminError(w, http.StatusBadRequest, err)
			return
		}
		f.SetRateLimit(req.PerSecond)
		simkit.WriteJSON(w, http.StatusOK, req)
	})
	mux.HandleFunc("GET /advertisers", func(w http.ResponseWriter, r *http.Request) {
		simkit.WriteJSON(w, http.StatusOK, f.Advertisers())
	})
	mux.HandleFunc("PUT /advertisers/{gmaid}", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			ActiveState    *int  `json:"active_state"`
			HIPAAProtected *bool `json:"hipaa_protected"`
		}
		if err := simkit.DecodeStrict(r, &req); err != nil {
			adminError(w, http.StatusBadRequest, err)
			return
		}
		gmaid := r.PathValue("gmaid")
		var err error
		if req.ActiveState != nil {
			err = f.SetActiveState(gmaid, *req.ActiveState)
		}
		if err == nil && req.HIPAAProtected != nil {
			err = f.SetHIPAA(gmaid, *req.HIPAAProtected)
		}
		if err != nil {
			adminError(w, statusOf(err), err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("PUT /users/{email}/role", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			AgencyCustomer bool `json:"agency_customer"`
		}
		if err := simkit.DecodeStrict(r, &req); err != nil {
			adminError(w, http.StatusBadRequest, err)
			return
		}
		f.SetAgencyCustomer(r.PathValue("email"), req.AgencyCustomer)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("PUT /users/{email}/role/{gmaid}", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			AgencyCustomer *bool `json:"agency_customer"`
		}
		if err := simkit.DecodeStrict(r, &req); err != nil || req.AgencyCustomer == nil {
			adminError(w, http.StatusBadRequest, errors.Join(err, errors.New(`need {"agency_customer": true|false}`)))
			return
		}
		if err := f.SetAgencyCustomerOn(r.PathValue("email"), r.PathValue("gmaid"), *req.AgencyCustomer); err != nil {
			adminError(w, statusOf(err), err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /interactions", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			NewInteraction
			Count int `json:"count"`
		}
		if err := simkit.DecodeStrict(r, &req); err != nil {
			adminError(w, http.StatusBadRequest, err)
			return
		}
		ids, err := f.AddInteractions(req.NewInteraction, max(req.Count, 1))
		if err != nil {
			adminError(w, statusOf(err), err)
			return
		}
		simkit.WriteJSON(w, http.StatusCreated, map[string][]int64{"ids": ids})
	})
	mux.HandleFunc("PATCH /interactions/{id}", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Status string `json:"status"`
		}
		id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
		if err == nil {
			err = simkit.DecodeStrict(r, &req)
		}
		if err != nil || req.Status == "" {
			adminError(w, http.StatusBadRequest, errors.Join(err, errors.New("need an integer id and a status")))
			return
		}
		if err := f.EditInteraction(id, req.Status); err != nil {
			adminError(w, statusOf(err), err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	f.adminCampaigns(mux)
	mux.HandleFunc("GET /grants", func(w http.ResponseWriter, r *http.Request) {
		simkit.WriteJSON(w, http.StatusOK, f.tokens.Grants())
	})
	mux.HandleFunc("POST /grants/{id}/revoke", func(w http.ResponseWriter, r *http.Request) {
		f.RevokeGrant(r.PathValue("id"))
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

func statusOf(err error) int {
	if errors.Is(err, ErrNotFound) {
		return http.StatusNotFound
	}
	return http.StatusBadRequest
}

func adminError(w http.ResponseWriter, status int, err error) {
	simkit.WriteJSON(w, status, map[string]string{"error": err.Error()})
}

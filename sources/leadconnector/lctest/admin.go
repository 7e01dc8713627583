package lctest

import (
	"net/http"
	"time"

	"github.com/leadsync/leadsync/internal/simkit"
)

// adminRoutes serves /_admin/ (documented in the package comment). Never faulted or limited.
func (f *Fake) adminRoutes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/counters", simkit.AdminCounters(f.counters))
	mux.Handle("/faults", simkit.AdminFaults(f.faults))
	mux.HandleFunc("GET /truth", func(w http.ResponseWriter, _ *http.Request) {
		simkit.WriteJSON(w, http.StatusOK, f.GroundTruth())
	})
	mux.HandleFunc("GET /grants", func(w http.ResponseWriter, _ *http.Request) {
		simkit.WriteJSON(w, http.StatusOK, f.tokens.Grants())
	})
	mux.HandleFunc("POST /grants/{id}/revoke", func(w http.ResponseWriter, r *http.Request) {
		f.RevokeGrant(r.PathValue("id"))
		w.WriteHeader(http.StatusNoContent)
	})
	f.adminPITs(mux)
	f.adminLifecycle(mux)
	mux.HandleFunc("PUT /ttl", func(w http.ResponseWriter, r *http.Request) {
		var b struct {
			TTL string `json:"ttl"`
		}
		d, ok := decodeDuration(w, r, &b, &b.TTL)
		if ok {
			f.tokens.SetTTL(d)
			w.WriteHeader(http.StatusNoContent)
		}
	})
	mux.HandleFunc("PUT /index-lag", func(w http.ResponseWriter, r *http.Request) {
		var b struct {
			Lag string `json:"lag"`
		}
		d, ok := decodeDuration(w, r, &b, &b.Lag)
		if ok {
			f.SetIndexLag(d)
			w.WriteHeader(http.StatusNoContent)
		}
	})
	mux.HandleFunc("PUT /limits", func(w http.ResponseWriter, r *http.Request) {
		var b struct {
			Max        int   `json:"max"`
			IntervalMS int64 `json:"interval_ms"`
			Daily      int   `json:"daily"`
		}
		if err := simkit.DecodeStrict(r, &b); err != nil || b.Max < 1 || b.IntervalMS < 1 || b.Daily < 1 {
			adminError(w, "want {\"max\":N,\"interval_ms\":N,\"daily\":N}, all positive")
			return
		}
		f.SetLimits(b.Max, time.Duration(b.IntervalMS)*time.Millisecond, b.Daily)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("PUT /inactive", func(w http.ResponseWriter, r *http.Request) {
		var b struct {
			Inactive bool `json:"inactive"`
		}
		if err := simkit.DecodeStrict(r, &b); err != nil {
			adminError(w, err.Error())
			return
		}
		f.SetInactive(b.Inactive)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("PUT /locations/{loc}/forbidden", func(w http.ResponseWriter, r *http.Request) {
		var b struct {
			Forbidden bool `json:"forbidden"`
		}
		if err := simkit.DecodeStrict(r, &b); err != nil {
			adminError(w, err.Error())
			return
		}
		if err := f.SetForbidden(r.PathValue("loc"), b.Forbidden); err != nil {
			adminNotFound(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /locations/{loc}/contacts", func(w http.ResponseWriter, r *http.Request) {
		id, err := f.CreateContact(r.PathValue("loc"))
		if err != nil {
			adminNotFound(w, err)
			return
		}
		simkit.WriteJSON(w, http.StatusCreated, map[string]string{"id": id})
	})
	mux.HandleFunc("PATCH /locations/{loc}/contacts/{id}", func(w http.ResponseWriter, r *http.Request) {
		if err := f.UpdateContact(r.PathValue("loc"), r.PathValue("id")); err != nil {
			adminNotFound(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("DELETE /locations/{loc}/contacts/{id}", func(w http.ResponseWriter, r *http.Request) {
		if err := f.DeleteContact(r.PathValue("loc"), r.PathValue("id")); err != nil {
			adminNotFound(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

func decodeDuration(w http.ResponseWriter, r *http.Request, body any, field *string) (time.Duration, bool) {
	if err := simkit.DecodeStrict(r, body); err != nil {
		adminError(w, err.Error())
		return 0, false
	}
	d, err := time.ParseDuration(*field)
	if err != nil || d < 0 {
		adminError(w, "want a non-negative Go duration such as \"90s\"")
		return 0, false
	}
	return d, true
}

func adminError(w http.ResponseWriter, msg string) {
	simkit.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": msg})
}

func adminNotFound(w http.ResponseWriter, err error) {
	simkit.WriteJSON(w, http.StatusNotFound, map[string]string{"error": err.Error()})
}

package simkit

import (
	"encoding/json"
	"net/http"
)

// AdminFaults serves GET (read) and PUT/POST (replace) of the fault settings as JSON.
func AdminFaults(f *Faults) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet:
			WriteJSON(w, http.StatusOK, f.Get())
		case http.MethodPut, http.MethodPost:
			var s FaultSettings
			if err := DecodeStrict(r, &s); err != nil {
				WriteJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
				return
			}
			f.Set(s)
			WriteJSON(w, http.StatusOK, f.Get())
		default:
			w.WriteHeader(http.StatusMethodNotAllowed)
		}
	}
}

// AdminCounters serves GET (snapshot) and DELETE (reset) of the counters.
func AdminCounters(c *Counters) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet:
			WriteJSON(w, http.StatusOK, c.Snapshot())
		case http.MethodDelete:
			c.Reset()
			w.WriteHeader(http.StatusNoContent)
		default:
			w.WriteHeader(http.StatusMethodNotAllowed)
		}
	}
}

// DecodeStrict decodes a JSON request body, refusing unknown fields.
func DecodeStrict(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

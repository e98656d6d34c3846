package smsapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
)

// State is what GET /_devstack/state returns for the demo to watch.
type State struct {
	SMS       []SMS
	Providers []Provider
	Requests  []Request
	Mistakes  []string
	History   map[string][]Transition
}

// serveDev serves the hooks under DevPrefix, outside the API's recording
// and outage:
//
//	GET  /_devstack/state          State
//	POST /_devstack/sms            body SMS (Go JSON) → {"Id": id}, like Seed
//	POST /_devstack/tick           one background-task pass
//	POST /_devstack/down?on=true   start or end an outage
func (s *Server) serveDev(w http.ResponseWriter, r *http.Request) {
	reply := func(v any) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
	switch op := strings.TrimPrefix(r.URL.Path, DevPrefix); {
	case op == "state" && r.Method == http.MethodGet:
		s.mu.Lock()
		st := State{SMS: s.sms, Providers: s.providers, Requests: s.requests, Mistakes: s.mistakes, History: s.history}
		b, err := json.Marshal(st)
		s.mu.Unlock()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	case op == "sms" && r.Method == http.MethodPost:
		var m SMS
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		reply(map[string]string{"Id": s.Seed(m)})
	case op == "tick" && r.Method == http.MethodPost:
		s.Tick()
		w.WriteHeader(http.StatusNoContent)
	case op == "down" && r.Method == http.MethodPost:
		on, err := strconv.ParseBool(r.URL.Query().Get("on"))
		if err != nil {
			http.Error(w, "want ?on=true or ?on=false", http.StatusBadRequest)
			return
		}
		s.SetDown(on)
		w.WriteHeader(http.StatusNoContent)
	default:
		http.NotFound(w, r)
	}
}

package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// TestDepsJSON runs deps ls, add and rm with --json against a stand-in
// for a node's deps endpoints (a real node would install packages with
// npm): each prints one JSON document, and rm completes the packages
// added.
func TestDepsJSON(t *testing.T) {
	var mu sync.Mutex
	deps := []api.Dep{{Language: "node", Name: "ms", Version: "2.1.3"}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path != "/v1/services/uptime/deps" || r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, `{"error":"not found"}`, http.StatusNotFound)
			return
		}
		switch r.Method {
		case http.MethodGet:
			json.NewEncoder(w).Encode(deps)
		case http.MethodPost:
			var req api.DepRequest
			json.NewDecoder(r.Body).Decode(&req)
			deps = append(deps, api.Dep{Language: "node", Name: req.Package, Version: "1.3.0", Added: true})
			w.WriteHeader(http.StatusNoContent)
		case http.MethodDelete:
			deps = slices.DeleteFunc(deps, func(d api.Dep) bool { return d.Added && d.Name == r.URL.Query().Get("package") })
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	defer srv.Close()
	env := map[string]string{"ANDROMEDA_ADDR": srv.URL, "ANDROMEDA_TOKEN": "tok"}

	var doc map[string]string
	out, _, err := runCLI(t, env, "deps", "add", "uptime", "left-pad", "--json")
	if err != nil || json.Unmarshal([]byte(out), &doc) != nil || doc["service"] != "uptime" || doc["added"] != "left-pad" {
		t.Fatalf("deps add --json: %v\n%s", err, out)
	}
	out, _, err = runCLI(t, env, "deps", "ls", "uptime", "--json")
	var list []api.Dep
	if err != nil || json.Unmarshal([]byte(out), &list) != nil || len(list) != 2 || !list[1].Added {
		t.Fatalf("deps ls --json: %v\n%s", err, out)
	}
	if out, _, err := runCLI(t, env, "deps", "ls", "uptime"); err != nil || !strings.Contains(out, "left-pad  1.3.0    deps add") {
		t.Errorf("deps ls: %v\n%s", err, out)
	}
	if out, _, err := runCLI(t, env, "__complete", "deps", "rm", "uptime", ""); err != nil || out != "left-pad\tnode 1.3.0\n:4\n" {
		t.Errorf("complete deps rm uptime: %v, %q", err, out)
	}
	doc = nil
	out, _, err = runCLI(t, env, "deps", "rm", "uptime", "left-pad", "--json")
	if err != nil || json.Unmarshal([]byte(out), &doc) != nil || doc["service"] != "uptime" || doc["removed"] != "left-pad" {
		t.Fatalf("deps rm --json: %v\n%s", err, out)
	}
	if out, _, err := runCLI(t, env, "deps", "rm", "uptime", "left-pad"); err != nil || out != "removed left-pad from uptime\n" {
		t.Errorf("deps rm: %v, %q", err, out)
	}
}

// TestConformanceJSON certifies the repository's Node.js guest, and a
// broken one, with --json: one document with a result per check.
func TestConformanceJSON(t *testing.T) {
	_, err := exec.LookPath("node")
	sandboxtest.Require(t, err == nil, "node is needed for the conformance kit")
	guest := filepath.Join("..", "..", "sandbox", "process", "testdata", "guests", "node")
	out, _, err := runCLI(t, nil, "conformance", guest, "--lang", "node", "--json")
	if err != nil && strings.Contains(err.Error(), "cannot run here") {
		sandboxtest.Require(t, false, "the process driver cannot run on this host: "+err.Error())
	}
	var rep conformanceReport
	if err != nil || json.Unmarshal([]byte(out), &rep) != nil {
		t.Fatalf("conformance --json of the node guest: %v\n%s", err, out)
	}
	if !rep.Conformant || rep.Language != "node" || rep.Entry != "index.js" || rep.Error != "" || len(rep.Checks) < 10 {
		t.Fatalf("conformance --json of the node guest: %+v", rep)
	}
	for _, c := range rep.Checks {
		if !c.OK || c.Failed != "" || c.TookMS <= 0 || !strings.Contains(c.Name, "/") {
			t.Errorf("check %+v: want ok, a mode/case name and a time", c)
		}
	}
	if rep.Checks[0].Name != "server/deploy" {
		t.Errorf("first check %q, want server/deploy", rep.Checks[0].Name)
	}

	broken := t.TempDir()
	os.WriteFile(filepath.Join(broken, "index.js"), []byte("exports.handle = () => ({});\n"), 0o644)
	out, _, err = runCLI(t, nil, "conformance", broken, "--lang", "node", "--json")
	rep = conformanceReport{}
	if err == nil || exitCode(err) != 1 || json.Unmarshal([]byte(out), &rep) != nil {
		t.Fatalf("conformance --json of a broken guest: %v\n%s", err, out)
	}
	failed := slices.IndexFunc(rep.Checks, func(c conformanceCheck) bool { return !c.OK && c.Failed != "" })
	if rep.Conformant || rep.Error == "" || failed < 0 {
		t.Fatalf("conformance --json of a broken guest: %+v", rep)
	}
}

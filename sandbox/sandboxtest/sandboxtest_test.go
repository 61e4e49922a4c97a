package sandboxtest

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox"
)

func TestJSONEqual(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{`{"a":"<b>"}`, `{ "a" : "\u003cb\u003e" }`, true},
		{`"\ud83d\ude00"`, `"😀"`, true},
		{`[1, 2.0]`, `[1.0,2]`, true},
		{`"\u0000"`, `""`, false},
		{`{"a":1}`, `{"a":1,"b":2}`, false},
		{`"é"`, `"e\u0301"`, false},
		{`not json`, `not json`, false},
	} {
		if got := jsonEqual([]byte(c.a), []byte(c.b)); got != c.want {
			t.Errorf("jsonEqual(%s, %s) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

func TestHarnessDefaults(t *testing.T) {
	h := Harness{Spec: func(*testing.T, sandbox.Mode) sandbox.Spec {
		return sandbox.Spec{Limits: sandbox.Limits{Memory: 1 << 30}}
	}}.withDefaults()
	if len(h.Modes) != 2 || h.Timeout != 500*time.Millisecond || h.Slack != time.Second {
		t.Errorf("withDefaults() = modes %v, timeout %v, slack %v", h.Modes, h.Timeout, h.Slack)
	}
	s := h.spec(t, sandbox.ModeCommand)
	if s.Service != "conformance" || s.Mode != sandbox.ModeCommand || s.Limits.Memory != 1<<30 || s.Limits.Timeout != defaultTimeout || s.Limits.Concurrency != defaultConcurrency {
		t.Errorf("spec() = %+v, want the harness's memory and the suite's other defaults", s)
	}
}

// TestRequire runs the test binary again to see Require skip, and fail when
// strict.
func TestRequire(t *testing.T) {
	if os.Getenv("SANDBOXTEST_REQUIRE_CHILD") == "1" {
		Require(t, true, "never shown")
		Require(t, false, "needs the moon")
		t.Error("Require(false) returned")
		return
	}
	for _, c := range []struct {
		strict   string
		wantFail bool
		want     string
	}{
		{"", false, "--- SKIP: TestRequire"},
		{"1", true, "needs the moon (ANDROMEDA_CI_STRICT=1 makes this a failure"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestRequire$", "-test.v")
		cmd.Env = append(os.Environ(), "SANDBOXTEST_REQUIRE_CHILD=1", StrictEnv+"="+c.strict)
		out, err := cmd.CombinedOutput()
		if (err != nil) != c.wantFail || !strings.Contains(string(out), c.want) {
			t.Errorf("%s=%q: exit %v, output:\n%s\nwant failure %v and %q", StrictEnv, c.strict, err, out, c.wantFail, c.want)
		}
	}
}

// TestReport checks the T that Certify gives its cases: Fatalf ends the
// case, cleanups run newest first, and the report says ok, FAIL or note.
func TestReport(t *testing.T) {
	var out strings.Builder
	var checks []Check
	each := func(c Check) {
		checks = append(checks, c)
		out.WriteString(c.String())
	}
	var order []string
	r := &report{each: each, name: "server/fatal"}
	r.run(func() {
		r.Cleanup(func() { order = append(order, "first") })
		r.Cleanup(func() { order = append(order, "second") })
		r.Errorf("one %d", 1)
		r.Fatalf("two")
		order = append(order, "after Fatalf")
	})
	if !r.failed || strings.Join(order, ",") != "second,first" {
		t.Errorf("after Errorf and Fatalf: failed %v, ran %v; want failed and the cleanups newest first", r.failed, order)
	}
	ok := &report{each: each, name: "server/ok"}
	ok.run(func() { ok.Logf("a %s", "remark") })
	got := out.String()
	for _, want := range []string{"FAIL server/fatal", "one 1; two", "ok   server/ok", "note server/ok                    a remark"} {
		if !strings.Contains(got, want) {
			t.Errorf("report:\n%s\nwant it to contain %q", got, want)
		}
	}
	if len(checks) != 2 || checks[0].OK || len(checks[0].Failed) != 2 || !checks[1].OK || len(checks[1].Notes) != 1 {
		t.Errorf("checks %+v, want a failed one with two failures and a passed one with a note", checks)
	}
}

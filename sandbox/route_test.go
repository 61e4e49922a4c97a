package sandbox

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestParseHops(t *testing.T) {
	hops, err := ParseHops([]byte(`[
	 {"run_id":"r1","module":"b","from":"r0","emit":0,"wire":2,"ns":1500,"gap_ns":900,"output":{"emit":[]}},
	 {"run_id":"r2","module":"c","from":"r1","emit":1,"wire":3,"ns":10,"error":{"code":"oom","message":"heap","stack":"at x"}},
	 {"run_id":"r3","module":"d","from":"r1","emit":2,"wire":4,"error":{"code":"deadline","message":"late"}},
	 {"run_id":"r4","module":"e","from":"r1","emit":3,"wire":5,"error":{"message":"boom"}}]`))
	if err != nil {
		t.Fatal(err)
	}
	if len(hops) != 4 {
		t.Fatalf("%d hops, want 4", len(hops))
	}
	h := hops[0]
	if h.RunID != "r1" || h.Module != "b" || h.From != "r0" || h.Emit != 0 || h.Wire != 2 || h.Exit.Outcome != OK || string(h.Exit.Output) != `{"emit":[]}` ||
		h.Exit.Usage.Wall != 1500*time.Nanosecond || h.Gap != 900*time.Nanosecond {
		t.Errorf("hop 0 = %+v", h)
	}
	if hops[1].Exit.Outcome != OOM || hops[1].Exit.Detail != "heap\nat x" {
		t.Errorf("hop 1 = %+v, want oom with the stack", hops[1].Exit)
	}
	if hops[2].Exit.Outcome != Timeout || hops[3].Exit.Outcome != Crashed || hops[3].Exit.Detail != "boom" {
		t.Errorf("hops 2, 3 = %+v, %+v; want timeout, crashed", hops[2].Exit, hops[3].Exit)
	}
	for _, bad := range []string{`{}`, `[{"module":"b","from":"r0","output":{}}]`, `[{"run_id":"r","module":"b","from":"r0","emit":-1,"output":{}}]`,
		`[{"run_id":"r","module":"b","from":"r0"}]`} {
		if _, err := ParseHops([]byte(bad)); err == nil {
			t.Errorf("ParseHops(%s) = nil error", bad)
		}
	}
}

func TestWithRoute(t *testing.T) {
	if r, out := RouteOf(context.Background()); r != nil || out != nil {
		t.Errorf("RouteOf(empty) = %s, %v", r, out)
	}
	var hops []Hop
	if r, _ := RouteOf(WithRoute(context.Background(), nil, &hops)); r != nil {
		t.Error("an empty route is carried")
	}
	r, out := RouteOf(WithRoute(context.Background(), []byte(`{"to":{}}`), &hops))
	if !strings.Contains(string(r), "to") || out != &hops {
		t.Errorf("RouteOf = %s, %p; want the route and &hops", r, out)
	}
}

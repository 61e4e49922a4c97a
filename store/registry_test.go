package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"

	"github.com/andromeda-runner/andromeda/store"
)

// BenchmarkServices lists a registry of 10, 1,000 and 5,000 services: the
// read behind admission (which counts services and their targets), the
// service list and the store check.
func BenchmarkServices(b *testing.B) {
	for _, n := range []int{10, 1000, 5000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			ctx := context.Background()
			s := open(b, store.Config{})
			m := json.RawMessage(`{"name":"x","version":"1.0.0","runtime":{"driver":"wasm","language":"wasm","entry":"answer.wasm"},"triggers":[{"kind":"cron","every":"1s"}]}`)
			for i := range n {
				if err := s.PutService(ctx, store.Service{Name: fmt.Sprintf("svc-%05d", i), Version: "1.0.0", Manifest: m}); err != nil {
					b.Fatal(err)
				}
			}
			for b.Loop() {
				list, err := s.Services(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if len(list) != n {
					b.Fatalf("Services = %d, want %d", len(list), n)
				}
			}
		})
	}
}

// TestServicesBatched checks that a registry read in batches (100
// services, some replaced, some deleted) lists what one read per key
// lists.
func TestServicesBatched(t *testing.T) {
	ctx := context.Background()
	s := open(t, store.Config{})
	for i := range 100 {
		if err := s.PutService(ctx, store.Service{Name: fmt.Sprintf("svc-%03d", i), Version: "1.0.0", Manifest: json.RawMessage(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 100; i += 7 {
		if err := s.PutService(ctx, store.Service{Name: fmt.Sprintf("svc-%03d", i), Version: "2.0.0", Manifest: json.RawMessage(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 3; i < 100; i += 11 {
		if err := s.DeleteService(ctx, fmt.Sprintf("svc-%03d", i)); err != nil {
			t.Fatal(err)
		}
	}
	batched, err := s.Services(ctx)
	if err != nil {
		t.Fatal(err)
	}
	restore := store.SetBatchReadFrom(1 << 30)
	keyByKey, err := s.Services(ctx)
	restore()
	if err != nil {
		t.Fatal(err)
	}
	if len(batched) != 91 || !reflect.DeepEqual(batched, keyByKey) {
		t.Errorf("batched listing (%d) differs from key by key (%d)", len(batched), len(keyByKey))
	}
	for _, svc := range batched {
		var i int
		fmt.Sscanf(svc.Name, "svc-%03d", &i)
		if want := map[bool]string{true: "2.0.0", false: "1.0.0"}[i%7 == 0]; svc.Version != want {
			t.Errorf("%s version %s, want %s", svc.Name, svc.Version, want)
		}
	}
}

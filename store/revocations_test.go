package store_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/attest"
	"github.com/andromeda-runner/andromeda/store"
)

// TestRevocationEarliestKept: of one key's revocations of one delegation
// the store keeps the earliest revoked_at, so a later-dated (scheduled)
// revocation replayed over an immediate one changes nothing, and of
// concurrent posts the earliest wins whatever their order.
func TestRevocationEarliestKept(t *testing.T) {
	ctx := context.Background()
	s := open(t, store.Config{})
	_, hub := attest.GenerateKey()
	id := "sha256:" + strings.Repeat("ab", 32)
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	revoke := func(when time.Time) attest.Revocation {
		r, err := attest.Revoke(hub, id, when)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	later, now := revoke(at.Add(24*time.Hour)), revoke(at)
	if held, stored, err := s.PutRevocation(ctx, later); err != nil || !stored || held != later {
		t.Fatalf("first put = %+v, %v, %v; want it stored", held, stored, err)
	}
	if held, stored, err := s.PutRevocation(ctx, now); err != nil || !stored || held != now {
		t.Fatalf("earlier put = %+v, %v, %v; want it stored", held, stored, err)
	}
	for _, r := range []attest.Revocation{later, now} {
		if held, stored, err := s.PutRevocation(ctx, r); err != nil || stored || held != now {
			t.Fatalf("replay of %s = %+v, %v, %v; want the earlier one held, nothing stored", r.RevokedAt, held, stored, err)
		}
	}
	list, err := s.Revocations(ctx)
	if err != nil || len(list) != 1 || list[0] != now {
		t.Fatalf("Revocations = %+v, %v; want only the earliest", list, err)
	}

	// Concurrent posts of other dates: the earliest is what stays.
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			if _, _, err := s.PutRevocation(ctx, revoke(at.Add(time.Duration(i-4)*time.Minute))); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	list, err = s.Revocations(ctx)
	if err != nil || len(list) != 1 || !list[0].RevokedAt.Equal(at.Add(-4*time.Minute)) {
		t.Fatalf("after concurrent posts Revocations = %+v, %v; want only the one at %s", list, err, at.Add(-4*time.Minute))
	}
}

package node

import (
	"context"
	"sync"
	"time"

	"github.com/andromeda-runner/andromeda/store"
)

// regIndex is what admission needs of the whole registry, the services and
// the target each one claims, kept in memory: listing the registry decodes
// every record, and at 1,000 services a submission spent most of its time
// there. This node's admissions and removals update it as they store; it
// is listed again once older than regIndexAge, for what other nodes of a
// cluster admitted or removed meanwhile.
type regIndex struct {
	mu      sync.Mutex
	at      time.Time         // when last listed; zero: not yet
	targets map[string]string // service → the target it claims ("": none)
}

// regIndexAge is how long a listing of the registry serves admission.
const regIndexAge = 2 * time.Second

// read returns how many services the registry holds and the target each
// claims (target → service).
func (x *regIndex) read(ctx context.Context, s *store.Store) (int, map[string]string, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.targets == nil || time.Since(x.at) > regIndexAge {
		recs, err := s.Services(ctx)
		if err != nil {
			return 0, nil, err
		}
		x.targets = make(map[string]string, len(recs))
		for _, r := range recs {
			x.targets[r.Name] = r.Target
		}
		x.at = time.Now()
	}
	out := map[string]string{}
	for name, target := range x.targets {
		if target != "" {
			out[target] = name
		}
	}
	return len(x.targets), out, nil
}

// put notes a service stored with target ("" for none).
func (x *regIndex) put(name, target string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.targets != nil {
		x.targets[name] = target
	}
}

// drop notes a service removed.
func (x *regIndex) drop(name string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.targets, name)
}

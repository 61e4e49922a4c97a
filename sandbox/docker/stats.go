package docker

import (
	"context"
	"encoding/json"
	"io"
	"sync"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// engineStats is the usage of a container whose cgroup and /proc entry
// the node cannot read (a remote engine): the engine's stats API, one
// sample per reading, the last one kept for after the container ended.
type engineStats struct {
	mu     sync.Mutex
	cpu    time.Duration
	peak   int64
	rx, tx int64
	read   time.Time
	ok     bool // a sample was read
}

// sample reads the container's stats from the engine, at most every
// 10 ms (a pool reads CPU, memory and network one after the other).
func (p *containerProc) sample() *engineStats {
	s := &p.stats
	s.mu.Lock()
	defer s.mu.Unlock()
	if time.Since(s.read) < 10*time.Millisecond {
		return s
	}
	s.read = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := p.cli.ContainerStats(ctx, p.id, client.ContainerStatsOptions{Stream: false})
	if err != nil {
		return s
	}
	defer res.Body.Close()
	var st container.StatsResponse
	if err := json.NewDecoder(io.LimitReader(res.Body, 1<<20)).Decode(&st); err != nil {
		return s
	}
	if st.CPUStats.CPUUsage.TotalUsage == 0 && st.MemoryStats.Usage == 0 {
		return s // the container has ended: the engine reports nothing
	}
	s.ok = true
	s.cpu = max(s.cpu, time.Duration(st.CPUStats.CPUUsage.TotalUsage))
	peak := st.MemoryStats.MaxUsage // cgroup v1; v2 has no high-water mark here
	if peak == 0 {
		peak = st.MemoryStats.Usage
	}
	s.peak = max(s.peak, int64(peak))
	var rx, tx int64
	for _, n := range st.Networks {
		rx, tx = rx+int64(n.RxBytes), tx+int64(n.TxBytes)
	}
	s.rx, s.tx = max(s.rx, rx), max(s.tx, tx)
	return s
}

package node

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/andromeda-runner/andromeda/internal/disk"

	"github.com/andromeda-runner/andromeda/bus"
	"github.com/andromeda-runner/andromeda/metrics"
)

// DiskConfig says how much of the data directory's filesystem the node keeps
// free. Below that it refuses new work (fires answer 503 saying why, cron
// ticks are dropped and counted, /readyz is not ready) so that the runs it
// did start can still be recorded: JetStream does not survive a full disk
// gracefully (see package bus).
type DiskConfig struct {
	// MinFree is the free space below which new work is refused, a size
	// like 256Mi; it is capped at MinFreePercent of the filesystem, so a
	// small filesystem is not refused outright. Work resumes once a quarter
	// more than that is free. "0" turns the check off. Default 256Mi.
	MinFree string `json:"min_free" yaml:"min_free"`
	// MinFreePercent caps MinFree at this percentage of the filesystem's
	// size, from 0 (no cap) to 50. Default 5: a 64 MiB filesystem keeps
	// 3.2 MiB free, one of 10 GiB or more keeps 256 MiB.
	MinFreePercent int `json:"min_free_percent" yaml:"min_free_percent"`
	// Interval is how often the free space is measured, a Go duration from
	// 100ms to 1m. Default 2s.
	Interval string `json:"interval" yaml:"interval"`
}

// DefaultDiskConfig returns the documented defaults.
func DefaultDiskConfig() DiskConfig {
	return DiskConfig{MinFree: "256Mi", MinFreePercent: 5, Interval: "2s"}
}

// Validate reports every problem, each with its key under "disk.".
func (c DiskConfig) Validate() error {
	_, err := c.parse()
	return err
}

// diskLimits is DiskConfig in typed form.
type diskLimits struct {
	minFree  int64
	percent  int
	interval time.Duration
}

func (c DiskConfig) parse() (diskLimits, error) {
	var (
		l    diskLimits
		errs []error
		err  error
	)
	if l.minFree, err = parseBytes(c.MinFree); err != nil {
		errs = append(errs, fmt.Errorf("disk.min_free: %w", err))
	} else if l.minFree < 0 {
		errs = append(errs, errors.New("disk.min_free: must not be negative"))
	}
	if l.percent = c.MinFreePercent; l.percent < 0 || l.percent > 50 {
		errs = append(errs, errors.New("disk.min_free_percent: must be from 0 to 50"))
	}
	if l.interval, err = time.ParseDuration(c.Interval); err != nil || l.interval < 100*time.Millisecond || l.interval > time.Minute {
		errs = append(errs, errors.New("disk.interval: must be a duration from 100ms to 1m"))
	}
	return l, errors.Join(errs...)
}

// threshold is the free space kept on a filesystem of size total.
func (l diskLimits) threshold(total int64) int64 {
	t := l.minFree
	if l.percent > 0 {
		t = min(t, total/100*int64(l.percent))
	}
	return t
}

// diskMonitor measures the free space of the data dir's filesystem every
// interval and says when it is low. Low turns on below the threshold and
// off again at a quarter above it, so the node does not flap at the edge.
// A filesystem it cannot measure is not low (the failure is logged once).
// Safe for concurrent use; Close stops it.
type diskMonitor struct {
	dir    string
	limits diskLimits
	log    *slog.Logger
	statfs func(dir string) (free, total int64, err error)

	mu      sync.Mutex
	low     bool
	reason  string
	free    int64
	total   int64
	failing bool // statfs fails; logged once

	quit      chan struct{}
	done      chan struct{}
	started   bool
	closeOnce sync.Once
}

// newDiskMonitor checks c and returns a monitor of dir that has measured
// once; start runs it.
func newDiskMonitor(dir string, c DiskConfig, log *slog.Logger) (*diskMonitor, error) {
	l, err := c.parse()
	if err != nil {
		return nil, err
	}
	m := &diskMonitor{dir: dir, limits: l, log: log, statfs: disk.Usage, quit: make(chan struct{}), done: make(chan struct{})}
	m.check()
	return m, nil
}

// start measures every interval until Close.
func (m *diskMonitor) start() {
	m.started = true
	go func() {
		defer close(m.done)
		t := time.NewTicker(m.limits.interval)
		defer t.Stop()
		for {
			select {
			case <-m.quit:
				return
			case <-t.C:
				m.check()
			}
		}
	}()
}

// Close stops the monitor. Safe to call more than once, started or not.
func (m *diskMonitor) Close() error {
	m.closeOnce.Do(func() {
		close(m.quit)
		if m.started {
			<-m.done
		}
	})
	return nil
}

// Low reports whether free space is below the threshold, and if so a
// sentence saying so for the operator.
func (m *diskMonitor) Low() (bool, string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.low, m.reason
}

// Free reports the free and total bytes last measured.
func (m *diskMonitor) Free() (free, total int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.free, m.total
}

// check measures once and updates Low.
func (m *diskMonitor) check() {
	free, total, err := m.statfs(m.dir)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		if !m.failing {
			m.log.Warn("cannot measure the data disk's free space; not refusing work for it", "dir", m.dir, logErr, err)
		}
		m.failing, m.low, m.reason = true, false, ""
		return
	}
	m.failing = false
	m.free, m.total = free, total
	limit := m.limits.threshold(total)
	if limit <= 0 {
		m.low, m.reason = false, ""
		return
	}
	resume := limit + limit/4
	switch {
	case !m.low && free < limit:
		m.low = true
		m.log.Warn("data disk nearly full: refusing new work", "dir", m.dir, "free", free, "keep_free", limit)
	case m.low && free >= resume:
		m.low, m.reason = false, ""
		m.log.Info("data disk has room again: accepting new work", "dir", m.dir, "free", free)
	}
	if m.low {
		m.reason = fmt.Sprintf("data disk nearly full: %s free of %s on %s; new work resumes above %s (disk.min_free)",
			disk.Size(free), disk.Size(total), m.dir, disk.Size(resume))
	}
}

// workGate decides whether the node takes new work: not while the data disk
// is nearly full, nor while JetStream cannot store. It counts what it
// refuses and logs when refusing starts and ends, once each. Safe for
// concurrent use; a nil disk or bus is not checked.
type workGate struct {
	disk *diskMonitor
	bus  *bus.Bus
	log  *slog.Logger

	refusing atomic.Bool
	fires    atomic.Int64 // refused
	ticks    atomic.Int64 // refused
}

// Work kinds the gate counts.
const (
	workFire = "fire"
	workTick = "cron"
)

func newWorkGate(disk *diskMonitor, b *bus.Bus, log *slog.Logger) *workGate {
	return &workGate{disk: disk, bus: b, log: log}
}

// check returns why new work is refused now, wrapping bus.ErrUnavailable,
// or nil. It counts nothing: /readyz uses it.
func (g *workGate) check() error {
	if g.disk != nil {
		if low, why := g.disk.Low(); low {
			return fmt.Errorf("%w: %s", bus.ErrUnavailable, why)
		}
	}
	if g.bus != nil {
		if err := g.bus.Health(); err != nil {
			return err
		}
	}
	return nil
}

// admit is check for one piece of work of kind (workFire, workTick): a
// refusal is counted, and the first after work was last admitted is logged
// with its reason.
func (g *workGate) admit(kind, service string) error {
	err := g.check()
	if err == nil {
		if g.refusing.CompareAndSwap(true, false) {
			g.log.Info("accepting new work again", "fires_refused", g.fires.Load(), "ticks_dropped", g.ticks.Load())
		}
		return nil
	}
	switch kind {
	case workTick:
		g.ticks.Add(1)
	default:
		g.fires.Add(1)
	}
	if g.refusing.CompareAndSwap(false, true) {
		g.log.Warn("refusing new work: fires answer 503, cron ticks are dropped", "kind", kind, logService, service, logErr, err)
	}
	return err
}

// register adds the gate's series to reg.
func (g *workGate) register(reg *metrics.Registry) {
	reg.NewCounterFunc("andromeda_fires_refused_total", "Fires answered 503 because the data disk was nearly full or the store could not write.", func() float64 { return float64(g.fires.Load()) })
	reg.NewCounterFunc("andromeda_ticks_dropped_total", "Cron ticks dropped, recording nothing, because the data disk was nearly full or the store could not write.", func() float64 { return float64(g.ticks.Load()) })
	reg.NewGaugeFunc("andromeda_store_available", "1 while new work is accepted: the data disk has room and the store can write; 0 otherwise.", func() float64 {
		if g.check() != nil {
			return 0
		}
		return 1
	})
	if g.disk != nil {
		reg.NewGaugeFunc("andromeda_disk_free_bytes", "Free bytes on the data directory's filesystem, measured every disk.interval.", func() float64 {
			free, _ := g.disk.Free()
			return float64(free)
		})
	}
}

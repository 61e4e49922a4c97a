package node

import (
	"context"
	"fmt"
	"time"

	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/trigger"
)

// Prewarm (lifecycle.prewarm): a little before each cron tick of a service
// whose tick would pay a cold start, the scheduler calls prewarmTick, which
// prepares it: a dormant service is deployed (it would be on its first
// trigger anyway), and a command-mode process deployment starts the worker
// the tick's run takes. A run's usage says what it waited for its worker
// (start_ns), so the gain shows in every run record. Prewarm never runs
// the guest's code for a run, writes nothing to the store and changes no
// phase; when it fails the tick does the work itself and records what
// happened.

const (
	// prewarmTimeout bounds one prewarm: a deploy (a dormant service) and
	// a worker start.
	prewarmTimeout = time.Minute
	// prewarmKeep is how long past its tick a prepared worker waits for
	// the tick's run (one may wait for a concurrency slot) before it is
	// shut down.
	prewarmKeep = 10 * time.Second
)

// prewarmLead is the Lead of a service's cron triggers: lifecycle.prewarm
// for a service whose ticks would otherwise pay a cold start (a dormant
// one, or one in command mode on the process driver, which starts a
// worker per run), else 0.
func (n *Node) prewarmLead(m *manifest.Service, dormant bool) time.Duration {
	lead, err := n.cfg.Lifecycle.prewarm()
	if err != nil {
		return 0
	}
	if dormant || m.Mode == manifest.ModeCommand && m.Runtime.Driver == manifest.DriverProcess {
		return lead
	}
	return 0
}

// prewarmTick is the scheduler's prewarm of the tick ev: see above. It
// counts as a run in flight, so a stop waits for it (and its deployment's
// Stop ends a worker it is starting).
func (n *Node) prewarmTick(ev trigger.Event) {
	d := n.lookup(ev.Service)
	if d == nil {
		return
	}
	if _, ok := d.life.enter(); !ok {
		return
	}
	defer d.life.leave()
	ctx, cancel := context.WithTimeout(n.ctx, prewarmTimeout)
	defer cancel()
	log := n.log.With(logService, ev.Service, logTrigger, ev.Trigger, "tick", ev.At)
	start := time.Now()
	d.deployMu.Lock()
	dormant := d.dep == nil
	d.deployMu.Unlock()
	dep, err := n.ensureDeployed(ctx, d)
	if err != nil {
		log.Warn("prewarm: deploy", logErr, err)
		return
	}
	prepared := dormant
	if p, ok := dep.(sandbox.Prewarmer); ok && d.manifest.Mode == manifest.ModeCommand {
		if err := safePrewarm(ctx, p, time.Until(ev.At)+prewarmKeep); err != nil {
			log.Warn("prewarm", logErr, err)
		} else {
			prepared = true
		}
	}
	if prepared {
		n.prewarms.Add(1)
		log.Debug("prewarmed", "deployed", dormant, "took", time.Since(start))
	}
}

// safePrewarm is p.Prewarm with a panic in the driver turned into an
// error: a node never dies of a prewarm, as it never dies of a run.
func safePrewarm(ctx context.Context, p sandbox.Prewarmer, keep time.Duration) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("driver panic in prewarm: %v", r)
		}
	}()
	return p.Prewarm(ctx, keep)
}

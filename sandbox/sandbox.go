// Package sandbox defines the seam between the node and the ways it runs
// code: the Driver and Deployment interfaces, the Spec a driver deploys, the
// Limits it enforces, the Usage it measures and the Exit it reports. It also
// holds Call, the one implementation of the invocation contract that every
// driver shares. Drivers live in sub-packages (wasm, process, docker) and never
// import the manifest: the node translates a manifest into a Spec.
package sandbox

import (
	"context"
	"errors"
	"time"
)

// A Driver runs services of one isolation kind. Implementations are safe for
// concurrent use.
type Driver interface {
	// Name is the driver's name as manifests spell it: "wasm", "process", "docker".
	Name() string
	// Test is the self-test at node start; a driver whose Test fails is
	// disabled with the error as the logged reason.
	Test(ctx context.Context) error
	// Offer says what the driver can run on this node and which isolation
	// layers hold.
	Offer() Offer
	// Deploy prepares a service for invocation. The returned Deployment is
	// owned by the caller, who must Stop it.
	Deploy(ctx context.Context, spec Spec) (Deployment, error)
	// Close stops every deployment still running, without a grace period,
	// and releases what the driver holds. Safe to call more than once.
	Close() error
}

// A Deployment is one service ready to be invoked: warm instances in server
// mode, a fresh one per call in command mode. Safe for concurrent use; the
// number of concurrent Invoke calls is bounded by the caller, not the
// deployment.
type Deployment interface {
	// Invoke runs one invocation with input (the contract's Input as JSON).
	// The ctx deadline is the invocation's timeout (drivers also enforce
	// Limits.Timeout as a backstop; the earlier wins) and is reported as
	// Outcome Timeout. Cancelling ctx kills the call (cooperatively first
	// where the driver can, then by force): Invoke then returns ctx.Err()
	// (context.Canceled). The node records a run it cancelled itself
	// (andromeda kill) as Cancelled, and any other as an error. What the
	// guest did (returned, trapped, spun, ballooned) is
	// reported in Exit; the error is only for the runner failing to run it
	// or the call being killed.
	Invoke(ctx context.Context, input []byte) (Exit, error)
	// Stop releases the deployment: gracefully within the ctx deadline (the
	// node gives 5 s), then forced. Safe to call more than once.
	Stop(ctx context.Context) error
}

// HealthReporter is implemented by deployments that know more about their
// health than single runs show: the process driver reports a crash-looping
// worker. reason says why when healthy is false.
type HealthReporter interface {
	Health() (healthy bool, reason string)
}

// Tester is implemented by deployments that can run their service's own
// self-test (a wasm reactor's andromeda_test export; a test function of a
// process service, through the runtime protocol's test message). ran is
// false when the service has none; err is the reason a test that ran
// failed, or why it could not be run. The node runs it at deploy (a
// failure fails the deploy) and on demand (andromeda test NAME).
type Tester interface {
	Test(ctx context.Context) (ran bool, err error)
}

// Prewarmer is implemented by deployments whose fresh instances are worth
// starting ahead of time: a command-mode process worker (an interpreter
// and its sandbox, tens of milliseconds). Prewarm starts the instance the
// next invocation takes, and returns once it is ready or failed; it does
// nothing when the deployment keeps warm instances (server mode) or one is
// already prepared. A prepared instance serves one invocation only, like
// any fresh one, and one that no invocation takes within keep is shut
// down. The node calls it a little before a cron tick (lifecycle.prewarm).
type Prewarmer interface {
	Prewarm(ctx context.Context, keep time.Duration) error
}

// Mode is how a deployment keeps its guest between invocations.
type Mode string

const (
	// ModeServer keeps instances warm across invocations.
	ModeServer Mode = "server"
	// ModeCommand starts a fresh instance for every invocation.
	ModeCommand Mode = "command"
)

// Spec is everything a driver needs to deploy a service.
type Spec struct {
	Service  string // service name, for logs and errors
	Version  string
	Digest   string // artifact digest ("sha256:...")
	Dir      string // the unpacked service directory; drivers must not write to it
	Entry    string // path of the entry point relative to Dir
	Language string // informational for wasm and docker
	Mode     Mode   // empty means ModeServer
	Limits   Limits
	Network  Network
	// Volumes are host directories the guest sees read-write at their
	// paths (see Volume). A driver that cannot show them refuses the spec
	// with ErrUnsupported.
	Volumes []Volume
	// Log receives each line the guest writes to its log streams (stderr,
	// protocol log messages), without the trailing newline. It must not
	// block and may be called from several goroutines; nil drops the lines.
	Log func(line string)

	// Image is the container image a docker image service runs: a
	// reference pinned by registry digest (REF@sha256:...) or an image ID
	// (sha256:...), or a tag where the policy allows tags. Empty for an
	// archive service, which the docker driver runs in the runtime image
	// its configuration names for Language.
	Image string
	// Command is an image service's command (the container's argv);
	// empty: the image's own entrypoint and command.
	Command []string
	// Container is the existing container the decision placed a docker
	// service into (the policy's containers); empty for new containers.
	Container string
	// Fallback is what the docker driver does when Container is not
	// running: FallbackNew runs the service in new containers,
	// FallbackRefuse fails the deploy. Empty means FallbackNew.
	Fallback string
}

// The values of Spec.Fallback.
const (
	FallbackNew    = "new"
	FallbackRefuse = "refuse"
)

// Placed is implemented by deployments that run in containers: where the
// service runs and why (andromeda inspect shows it).
type Placed interface {
	Placement() Placement
}

// Placement is where a container deployment runs.
type Placement struct {
	// Kind is PlacementNew (containers of its own), PlacementExisting (a
	// container the policy lists) or PlacementFallback (its own, because
	// the listed container was not running).
	Kind string `json:"kind"`
	// Containers are the names of the containers it runs in now.
	Containers []string `json:"containers"`
	// Image is the image its containers run, by ID.
	Image string `json:"image,omitempty"`
	// Reason says why, in words.
	Reason string `json:"reason"`
}

// The values of Placement.Kind.
const (
	PlacementNew      = "new"
	PlacementExisting = "existing"
	PlacementFallback = "fallback"
)

// Limits are the resource ceilings a deployment enforces. Zero means the
// driver's default.
type Limits struct {
	Memory      int64         // bytes
	CPU         float64       // cores
	Timeout     time.Duration // per invocation
	Pids        int
	Concurrency int // parallel invocations the node allows; server-mode pools size to it
}

// Network is the network a deployment is granted: "none", "any", or a list of
// host:port endpoints.
type Network struct {
	Any   bool
	Hosts []string
}

// None reports whether no network is granted.
func (n Network) None() bool { return !n.Any && len(n.Hosts) == 0 }

// Offer is what a driver can run on this node.
type Offer struct {
	Driver    string            `json:"driver"`
	Languages map[string]string `json:"languages"` // language → toolchain version
	Modes     []Mode            `json:"modes"`
	// Isolation lists each layer the driver enforces here ("no-fs",
	// "memory-cap", "netns", "cgroup-memory", ...) and whether it holds.
	Isolation map[string]bool `json:"isolation"`
	// Notes explains layers that do not hold and other limits of this host.
	Notes []string `json:"notes,omitempty"`
}

// Outcome is how an invocation ended.
type Outcome string

// The outcomes a run can have. Drivers report OK, Timeout, Crashed and OOM in
// an Exit, and Skipped when the guest never ran for want of capacity (the
// wasm driver's node-wide memory budget); Call turns OK into OK, Noop or
// Error by judging the output; the node records Rejected and Skipped for
// runs that never reached a driver, and Cancelled for runs it was asked to
// kill while they ran.
const (
	OK       Outcome = "ok"       // the service returned actions or emits
	Noop     Outcome = "noop"     // the service decided to do nothing and said why
	Error    Outcome = "error"    // the service returned invalid output, or the runner failed
	Timeout  Outcome = "timeout"  // the invocation ran past its timeout and was stopped
	Crashed  Outcome = "crashed"  // the guest trapped, panicked, threw or exited non-zero
	OOM      Outcome = "oom"      // the guest exceeded its memory limit
	Rejected Outcome = "rejected" // the input or the call was refused before running
	Skipped  Outcome = "skipped"  // the trigger fired but the run did not start (concurrency, backoff, no capacity)
	// Cancelled: someone killed the run while it ran (andromeda kill,
	// POST /v1/runs/{id}/cancel); the run's error names who.
	Cancelled Outcome = "cancelled"
	// Lost: the node running it was lost (killed, cut off) before it
	// recorded the run; recorded by the node of the cluster that took the
	// service over, from the tick the lost node had claimed.
	Lost Outcome = "lost"
)

// Exit is what a driver reports about one invocation.
type Exit struct {
	Outcome Outcome // OK when the guest produced output, else Timeout, Crashed or OOM
	Output  []byte  // raw output (stdout for command guests, the return value for reactors)
	Detail  string  // trap message, exit status, tail of stderr
	Usage   Usage
}

// Usage is what one invocation consumed. Fields a driver cannot measure are
// zero. CPU may equal Wall where the driver cannot tell them apart (wasm runs
// the guest on the calling goroutine).
type Usage struct {
	Wall       time.Duration `json:"wall_ns"`
	CPU        time.Duration `json:"cpu_ns,omitempty"`
	PeakMemory int64         `json:"peak_memory_bytes,omitempty"`
	// MemoryScope says whose high-water mark PeakMemory is: MemoryRun when
	// the instance or worker lived for this invocation alone, MemoryWorker
	// when it is a warm one shared with other invocations (its peak since
	// it started, up to the end of this one). Empty when PeakMemory is 0.
	MemoryScope string `json:"memory_scope,omitempty"`
	// Start is how long the invocation waited for a fresh instance or
	// worker to start: its cold start, part of Wall. Zero on a warm or a
	// prewarmed one, and where the driver does not measure it.
	Start time.Duration `json:"start_ns,omitempty"`
	// Counters are the custom usage counters the service reported during
	// the invocation, summed by name (see Counters); nil when none.
	Counters map[string]float64 `json:"counters,omitempty"`
	// CountersDropped counts the counter reports refused: a bad name or
	// value, or a name past MaxCounters.
	CountersDropped int `json:"counters_dropped,omitempty"`
	// NetworkRx and NetworkTx are the bytes the guest received and sent
	// over the network during the invocation, where the driver measures
	// them (docker: the container's interface counters).
	NetworkRx int64 `json:"network_rx_bytes,omitempty"`
	NetworkTx int64 `json:"network_tx_bytes,omitempty"`
}

// Memory scopes, the values of Usage.MemoryScope.
const (
	MemoryRun    = "run"
	MemoryWorker = "worker"
)

var (
	// ErrUnsupported is returned by Deploy for a spec the driver cannot run
	// (unknown mode, language or entry format).
	ErrUnsupported = errors.New("unsupported by this driver")
	// ErrStopped is returned by Invoke on a deployment that was stopped.
	ErrStopped = errors.New("deployment stopped")
	// ErrInput is returned by Call when the input cannot be encoded.
	ErrInput = errors.New("invalid input")
)

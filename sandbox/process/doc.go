// Package process is the process driver: it runs services written for
// Node.js, for Python, or as any executable that speaks the runtime protocol
// (docs/runtime-protocol.md) as workers, each in a Linux sandbox of its own.
// It holds the driver (Test, Offer, Deploy), the table of the languages it
// runs (languages.go), and its deployments (a warm pool per service in
// server mode, a fresh worker per invocation in command mode) with their
// runtime protocol client. The sandbox itself is a jail (sandbox/jail); a
// service's dependencies are installed by sandbox/process/deps. The
// language shims are in runtimes/node and runtimes/python, the Go helper for
// exec workers in runtimes/go. The package does not judge outputs:
// sandbox.Call does. The conformance kit for new language runtimes is
// sandboxtest.Certify with WorkersStarted.
//
// # The binary is its own sandbox init
//
// A worker is started by re-executing the node's own binary
// (/proc/self/exe) in new namespaces; that copy must call MaybeInit before
// anything else, which builds the sandbox and executes the worker in it.
// cmd/andromeda's main and every test binary that deploys on this driver
// (in TestMain) begin with:
//
//	process.MaybeInit()
//
// # Sandbox
//
// Each worker is a jail (see sandbox/jail for every layer): PID, mount,
// IPC, UTS and cgroup namespaces, a user namespace where the host allows
// it, and a network namespace with only loopback (up) unless Spec.Network
// is any, which shares the host's. A host list is treated like none: the
// worker has no direct sockets and reaches those hosts through the http
// actions it returns (the executor enforces the list); the offer says so.
// A cgroup per worker under Config.CgroupParent enforces Spec.Limits
// (Config.Memory, Pids and CPU where they are zero). The file system is a
// read-only skeleton root with the host's system directories and the
// toolchain's directory read-only; /tmp and /dev/shm as tmpfs of
// Config.Scratch bytes; the service at /service, its shim at /runtime and
// its dependencies at /node_modules or /deps/python, read-only overlays
// that keep their host paths out of /proc/self/mountinfo. Nothing of the
// host is writable, and the node's data dir, keys and tokens are not there
// at all. RLIMIT_NOFILE is Config.Files; the worker runs as uid 1000 in its
// user namespace, mapped to Config.UID (default 65534) on a root host,
// without capabilities, under no_new_privs, the parent-death signal and a
// seccomp filter, with a clean environment: PATH, HOME=/tmp, TMPDIR=/tmp and
// LANG only.
//
// A layer the host cannot provide (no cgroups, not root and no user
// namespaces, no seccomp) shows false in Offer().Isolation with the reason
// in the notes; Test and Deploy then fail unless Config.AllowMissing lists
// the layer, so that the operator, and policies reading the offer, decide.
//
// # Workers and failures
//
// A worker that dies is restarted with exponential backoff and jitter (see
// Config.Backoff); its invocations in flight end crashed with the exit
// status and the tail of its standard error, or oom. A deployment whose
// workers crash Config.UnhealthyAfter times in a row is unhealthy (the
// deployment's Health method) until a worker answers an invocation again,
// and fails invocations at once while none is running. A deadline or a
// cancellation sends the worker a cancel message; an invocation still
// running Config.CancelGrace later gets the worker's whole process group
// and PID namespace killed. Until the cancelled invocation ends, its
// worker takes no new invocation. (*Driver).StartRaw starts a worker
// outside any deployment, for the conformance kit's protocol checks.
//
// # Pools of other drivers' processes
//
// The pool and its protocol client run over Proc, a started worker process
// with its standard streams and its end; a jail is one. Another driver
// (the docker driver's containers) deploys its own processes with the same
// pool, restarts, health, cancel and kill through NewPool with a
// PoolConfig whose Start makes a Proc, and gives the conformance kit a raw
// worker with NewRawWorker and InitMessage.
//
// # Logs
//
// What a worker writes to standard error and sends in log messages goes to
// Spec.Log through a sandbox.LogLimiter of the deployment, with
// sandbox.DefaultLogLimit: lines cut at 4 KiB, 256 KiB per run, 8 MiB per
// service and hour, 100 lines a second after a burst of 1000; what is
// dropped is counted in one marker line when lines get through again and
// when the run ends. A line is a run's when the worker sends it in a log
// message of that invocation, or writes it to standard error while that
// invocation is the only one in flight on it (always so in command mode);
// a run's lines go to the sink the invocation's context carries
// (sandbox.WithRunLog), else to Spec.Log. The driver holds at most 16 KiB
// of a line of standard error, whatever its length, and max_line bytes of
// standard output, where anything but a protocol message is a protocol
// error that kills the worker.
//
// # Dependencies
//
// A Node.js service's package.json is installed with npm into its own
// node_modules, a Python service's requirements.txt with pip into its own
// target directory, under WorkDir/deps/<service>, from Config.Registries,
// inside a jail like a worker's (sandbox/process/deps). No service-supplied
// code runs at install: a service names its dependencies by registry name
// and version only (see deps.SourceError and Config.AllowAnyDepSource), pip
// installs wheels only and npm runs no scripts. The installer has a network
// namespace of its own with only loopback; when the registry is a URL, the
// jail's egress proxy lets it reach the registry's host and port and
// nothing else. ListDeps, AddDep and RemoveDep are `andromeda deps
// ls|add|rm`.
package process

// Package docker is the docker driver: it runs services in containers of a
// Docker Engine, reached through its API (github.com/moby/moby/client, the
// API version negotiated), as workers that speak the runtime protocol
// (docs/runtime-protocol.md). Its deployments are the process driver's worker pool
// (process.NewPool) over containers: a warm pool per service in server
// mode, a container per invocation in command mode, with the same protocol
// client, restarts, backoff, health, cancel and kill. The package builds no
// image: the runtime images of archive services are the operator's
// (Config.Images).
//
// # Services
//
// An image service (Spec.Image) runs an image pinned by registry digest
// (name@sha256:...: present locally with that repo digest, or pulled from
// a registry Config.Registries lists) or by ID (sha256:<64 hex>: present
// locally); its command is Spec.Command, else the image's own. An archive
// service (Spec.Language node, python or exec, Spec.Dir and Spec.Entry)
// runs in the runtime image Config.Images names for its language, with the
// service directory at /service and the language's shim at /runtime, both
// read-only, and the process driver's command line ("node", "python3" on
// the image's PATH; the entry itself for exec). Archive services with
// dependencies to install are refused for now.
//
// # Containers
//
// Every container has a read-only root file system with a tmpfs at /tmp of
// Config.Scratch bytes, no capabilities, no-new-privileges, the engine's
// default seccomp profile, a private IPC namespace, Config.User (never
// root), no network unless Spec.Network is any (then the engine's default
// bridge; a host list is refused), memory without swap, CPU and pids
// limits, and no log driver (the protocol runs over its streams). It is
// labelled andromeda.node, andromeda.service, andromeda.version,
// andromeda.role and, in command mode, andromeda.run; Reap removes a
// crashed node's containers, and those a Stop could not remove because
// the engine did not answer (Stop keeps to its context: its engine calls
// end a second after it, and its error names what was left). A worker
// lost because the engine went away is the runner's failure (outcome
// error, an error wrapping ErrEngine), not a crash of the service. CPU time, peak memory and OOM kills come from
// the container's cgroup (v1 or v2) while it runs, OOM kills on cgroup v1
// as the kernel reports them (an eventfd), and the engine's
// State.OOMKilled once it ended; from the engine's stats API when the
// node cannot read the cgroup (a remote engine). With network any, a
// run's usage has the bytes of the container's interfaces.
//
// # Transport
//
// By default the protocol runs over a unix socket per container (the
// relay transport): the node listens on it, the socket is bind-mounted
// into the container, and the container's entrypoint is the node's own
// binary, which connects to it, makes it its standard input and output
// and executes the worker's command (MaybeRelay, which the binary calls
// first thing in main). A dynamically linked binary is shown with its ELF
// interpreter and the libraries it needs under one read-only directory
// and run through the interpreter. The relay needs a local engine; the
// fallback (Config.Transport attach) is the engine's attached streams,
// where every message goes through the engine: a trivial warm invocation
// takes about 100-190 µs there against about 17 µs over the socket.
// Standard error is attached either way.
package docker

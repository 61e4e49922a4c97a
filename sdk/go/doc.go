// Package andromeda is the guest SDK for Andromeda services written in Go and
// compiled to WebAssembly (GOOS=wasip1 GOARCH=wasm). A service author writes
// one function from Input to Output and registers it with Handle; the package
// speaks the node's protocol in both guest shapes the wasm driver runs. It
// holds nothing else: no host code, no network or state clients (a service
// asks for effects by returning actions).
//
// # Writing a service
//
// The same source builds as a command and as a reactor when Handle is called
// from an init function:
//
//	package main
//
//	import andromeda "github.com/andromeda-runner/andromeda/sdk/go"
//
//	func init() { andromeda.Handle(decide) }
//
//	func main() {} // required by the compiler; never reached
//
//	func decide(in andromeda.Input) andromeda.Output {
//		if len(in.Message) == 0 {
//			return andromeda.Noop("no message")
//		}
//		return andromeda.Act("log", map[string]any{"seen": in.RunID})
//	}
//
// A command-only service may call Handle from main instead
// (func main() { andromeda.Handle(decide) }); a reactor may not, because Go
// never runs main.main in a reactor.
//
// # Building
//
// Command (a fresh instance per invocation; any Go since 1.21):
//
//	GOOS=wasip1 GOARCH=wasm go build -o main.wasm .
//
// Reactor (an instance kept warm across invocations in server mode; Go 1.24
// or later):
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o main.wasm .
//
// The manifest names the file (runtime.entry: main.wasm) and the driver
// finds the shape from the module's exports: a module exporting _start is a
// command, one exporting andromeda_alloc and andromeda_invoke (and no
// _start) is a reactor.
//
// # The command shape
//
// The WASI _start function runs package initialisation and main. Handle
// reads the whole of standard input (one Input as JSON), calls the handler,
// writes the Output as JSON to standard output and exits with status 0.
// Undecodable input or unencodable output exits with status 1 and the reason
// on standard error; a panic exits with status 2 and the panic on standard
// error. The node records a non-zero exit as a crashed run with the tail of
// standard error.
//
// # The reactor shape
//
// With -buildmode=c-shared the go command builds a WASI reactor: it exports
// _initialize instead of _start, and the host calls _initialize once after
// instantiation. _initialize starts the Go runtime and runs every package's
// init functions, then returns to the host; main.main is never called.
// Handle, called from init, sees from the binary's build information
// (runtime/debug.ReadBuildInfo, setting -buildmode=c-shared) that it is in a
// reactor and only registers the handler. The package then serves the
// reactor ABI (version 1) through two functions exported with
// //go:wasmexport:
//
//	andromeda_alloc(size i32) -> i32
//		Returns the address of a guest buffer of at least size bytes (size
//		may be 0). The host writes the next input there.
//	andromeda_invoke(ptr i32, len i32) -> i64
//		Serves the len bytes of input at ptr (ptr must be the address the
//		last andromeda_alloc returned) and returns the output's address and
//		length packed as ptr<<32 | len.
//
// Both buffers belong to the guest and stay valid until the host's next call
// into the instance. The host calls into one instance from one goroutine at a
// time, and discards an instance after any invocation that trapped, exited,
// ran out of memory or timed out. A panic in the handler, or a bad call from
// the host, ends the instance with a non-zero exit status and the reason on
// standard error. The full ABI, for guests in other languages, is in
// docs/wasm-abi.md.
//
// # What a guest can reach
//
// The wasm driver gives a guest no file system, no network, no environment
// variables and one argument (the service name). Clocks are the host's real
// wall and monotonic clocks, random bytes come from the host's crypto/rand,
// and time.Sleep really sleeps (until the invocation's deadline). Standard
// error (and, in a reactor, standard output) is kept as the run's log tail.
//
// Off wasip1 the package builds as a command with the same protocol, so a
// service can be tested natively: echo '{"run_id":"1"}' | go run .
//
// The package supports the go command's toolchain (gc). The reactor shape is
// recognised from the build information the go command embeds; a binary
// built without it (TinyGo, say) is always treated as a command.
package andromeda

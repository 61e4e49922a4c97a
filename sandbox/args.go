package sandbox

import "context"

type argsKey struct{}

// WithArgs returns ctx carrying an invocation's argument vector (the
// contract Input's Args, from andromeda run NAME -- ARG...). The input
// carries them for every driver; a driver whose guests also take an argv
// (the wasm driver's command guests, after the program name) reads them
// from ctx with ArgsOf.
func WithArgs(ctx context.Context, args []string) context.Context {
	if len(args) == 0 {
		return ctx
	}
	return context.WithValue(ctx, argsKey{}, args)
}

// ArgsOf returns the argument vector ctx carries (see WithArgs), or nil.
func ArgsOf(ctx context.Context) []string {
	args, _ := ctx.Value(argsKey{}).([]string)
	return args
}

package sandbox

import (
	"context"
	"fmt"
)

type progressKey struct{}

// WithProgress returns a copy of ctx that carries report: the long steps
// of a deploy (a dependency install, an image pull) say through it what
// they do and how far they are, so that whoever waits on the deploy can
// be shown. report must be safe for concurrent use and return at once.
func WithProgress(ctx context.Context, report func(step string)) context.Context {
	return context.WithValue(ctx, progressKey{}, report)
}

// Progress reports a step of the work ctx is for to the reporter
// WithProgress put in it; without one it does nothing.
func Progress(ctx context.Context, format string, args ...any) {
	if report, ok := ctx.Value(progressKey{}).(func(string)); ok {
		report(fmt.Sprintf(format, args...))
	}
}

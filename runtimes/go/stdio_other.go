//go:build !linux

package worker

import (
	"io"
	"os"
)

// stdio returns standard input and output: off Linux, where the process
// driver does not run, the protocol is not moved away from what the service
// prints.
func stdio() (io.Reader, io.Writer) { return os.Stdin, os.Stdout }

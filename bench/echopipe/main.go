// Command echopipe is the bare pipe round trip of the bench command: it
// writes back each line it reads on standard input, as it came, with no
// decoding, no sandbox and no protocol: the floor under every worker and
// plugin that talks to its host over pipes.
package main

import (
	"bufio"
	"os"
)

func main() {
	r := bufio.NewReaderSize(os.Stdin, 64<<10)
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return
		}
		if _, err := os.Stdout.Write(line); err != nil {
			return
		}
	}
}

// Command hello is the binary of the exec test image: it prints its
// arguments and proves /tmp is writable and the mount points exist.
package main

import (
	"fmt"
	"os"
	"strings"
)

func main() {
	if err := os.WriteFile("/tmp/probe", []byte("x"), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, "hello:", err)
		os.Exit(2)
	}
	for _, d := range []string{"/service", "/runtime"} {
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			fmt.Fprintf(os.Stderr, "hello: %s is not a directory: %v\n", d, err)
			os.Exit(3)
		}
	}
	fmt.Printf("hello %s\n", strings.Join(os.Args[1:], " "))
}

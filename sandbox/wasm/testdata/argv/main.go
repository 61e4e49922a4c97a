// Command argv is a wasip1 command guest that answers a noop whose reason
// is its argument vector as JSON (args_test.go).
package main

import (
	"encoding/json"
	"os"
)

func main() {
	argv, _ := json.Marshal(os.Args)
	out, _ := json.Marshal(map[string]string{"noop": string(argv)})
	os.Stdout.Write(out)
}

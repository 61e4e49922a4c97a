// Command slowtick is a test guest: each cron run takes three seconds,
// so a node killed during one leaves it in flight.
package main

import (
	"time"

	andromeda "github.com/andromeda-runner/andromeda/sdk/go"
)

func init() { andromeda.Handle(tick) }

func main() {}

func tick(in andromeda.Input) andromeda.Output {
	time.Sleep(3 * time.Second)
	return andromeda.Output{Noop: "slept three seconds"}
}

// Command price-watch is a demo service: a cron service that returns a noop
// with its reason on most ticks and an http action when the (simulated)
// price drifts past its threshold. Build: GOOS=wasip1 GOARCH=wasm go build
// -buildmode=c-shared -o main.wasm .
package main

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"

	andromeda "github.com/andromeda-runner/andromeda/sdk/go"
)

func init() { andromeda.Handle(decide) }

func main() {}

func decide(in andromeda.Input) andromeda.Output {
	threshold := 2.0
	if v, ok := in.Config["threshold_pct"].(float64); ok && v > 0 {
		threshold = v
	}
	price := load(in.State, "price", 100.0)
	ref := load(in.State, "reference", 100.0)

	// A random walk seeded by the run id: each tick moves the price by up
	// to ±1.5%. A manual fire may set the price: --input '{"price": 104}'.
	var msg struct {
		Price float64 `json:"price"`
	}
	if len(in.Message) > 0 && json.Unmarshal(in.Message, &msg) == nil && msg.Price > 0 {
		price = msg.Price
	} else {
		h := fnv.New64a()
		h.Write([]byte(in.RunID))
		step := (float64(h.Sum64()%3001)/1000 - 1.5) / 100
		price = math.Round(price*(1+step)*100) / 100
	}
	spread := (price - ref) / ref * 100

	out := andromeda.Output{State: &andromeda.StateChange{Set: map[string]json.RawMessage{
		"price": num(price),
	}}}
	if math.Abs(spread) < threshold {
		out.Noop = fmt.Sprintf("spread %.2f%% (price %.2f vs reference %.2f) is below the %.1f%% threshold", spread, price, ref, threshold)
		return out
	}
	endpoint, _ := in.Config["endpoint"].(string)
	act := andromeda.Act("http", map[string]any{
		"method": "POST",
		"url":    endpoint,
		"body":   map[string]any{"price": price, "reference": ref, "spread_pct": math.Round(spread*100) / 100},
	})
	out.Actions = act.Actions
	out.State.Set["reference"] = num(price)
	return out
}

func load(state map[string]json.RawMessage, key string, def float64) float64 {
	var v float64
	if raw, ok := state[key]; ok && json.Unmarshal(raw, &v) == nil && v > 0 {
		return v
	}
	return def
}

func num(v float64) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

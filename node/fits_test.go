package node_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/server"
	"github.com/andromeda-runner/andromeda/store"
)

// TestForwardTooLarge: what a node would send another over NATS and one
// NATS message cannot carry is refused as too large, naming the limit and
// the node to send it to, rather than heard of as "did not answer".
func TestForwardTooLarge(t *testing.T) {
	n := startNode(t)
	if err := node.FitsMessage(n.Node, make([]byte, 1<<20)); err != nil {
		t.Errorf("1 MiB: %v", err)
	}
	err := node.FitsMessage(n.Node, make([]byte, 9<<20))
	if !errors.Is(err, server.ErrTooLarge) || !strings.Contains(err.Error(), "max_payload") || !strings.Contains(err.Error(), "node n2") {
		t.Errorf("9 MiB = %v; want too large (413) naming max_payload and the node", err)
	}
}

// TestAnswerTooLarge: an answer to another node that one NATS message
// cannot carry is not dropped (its caller would wait for ever): a fire's
// run comes without its output, marked truncated as its record is; a
// module run's answer is an error saying why.
func TestAnswerTooLarge(t *testing.T) {
	n := startNode(t)
	conn := node.Bus(n.Node).Conn
	big := &contract.Output{Actions: []contract.Action{{Kind: "log", Params: json.RawMessage(`"` + strings.Repeat("x", 9<<20) + `"`)}}}
	for _, tc := range []struct {
		name   string
		answer func(m *nats.Msg)
		check  func(data []byte) error
	}{
		{"fire", func(m *nats.Msg) { node.RespondFire(n.Node, m, api.Run{ID: "r1", Outcome: "ok", Output: big}) }, func(data []byte) error {
			var r struct {
				Run *api.Run `json:"run"`
			}
			if err := json.Unmarshal(data, &r); err != nil || r.Run == nil || r.Run.ID != "r1" || r.Run.Output != nil || !r.Run.Truncated {
				return fmt.Errorf("answer %.200s: want run r1 truncated, without its output", data)
			}
			return nil
		}},
		{"module", func(m *nats.Msg) { node.RespondModule(n.Node, m, store.Run{ID: "r2", Outcome: "ok", Output: big}) }, func(data []byte) error {
			if !strings.Contains(string(data), `"kind":"too-large"`) || !strings.Contains(string(data), "max_payload") {
				return fmt.Errorf("answer %.200s: want too-large naming max_payload", data)
			}
			return nil
		}},
	} {
		subject := "test.answer." + tc.name
		sub, err := conn.Subscribe(subject, tc.answer)
		if err != nil {
			t.Fatal(err)
		}
		m, err := conn.Request(subject, nil, 10*time.Second)
		sub.Unsubscribe()
		if err != nil {
			t.Errorf("%s: no answer: %v", tc.name, err)
			continue
		}
		if err := tc.check(m.Data); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

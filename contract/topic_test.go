package contract_test

import (
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/contract"
)

func TestCheckTopic(t *testing.T) {
	for _, c := range []struct{ topic, want string }{
		{"orders", ""},
		{"orders.created", ""},
		{"alice.prices_eu-2", ""},
		{strings.Repeat("a", contract.MaxTopicLen), ""},
		{"", "must not be empty"},
		{strings.Repeat("a", contract.MaxTopicLen+1), "at most 128 characters, got 129"},
		{"orders..new", "token 2 is empty"},
		{".orders", "token 1 is empty"},
		{"orders.", "token 2 is empty"},
		{"Orders", `found 'O'`},
		{"orders.*", `found '*'`},
		{"orders.>", `found '>'`},
		{"a b", `found ' '`},
	} {
		err := contract.CheckTopic(c.topic)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("CheckTopic(%q) = %v, want nil", c.topic, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("CheckTopic(%q) = %v, want an error with %q", c.topic, err, c.want)
		}
	}
}

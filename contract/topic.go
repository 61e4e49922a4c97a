package contract

import (
	"errors"
	"fmt"
	"strings"
)

// MaxTopicLen is the longest topic, in bytes.
const MaxTopicLen = 128

// CheckTopic reports whether topic names an event topic, as a manifest's
// event trigger, an emit and a publish on the bus all do: 1 to
// MaxTopicLen characters, dot-separated tokens of [a-z0-9_-], no wildcards
// and no empty token. The error is the rule broken, without a path, so a
// caller puts its own before it ("triggers[1].topic: …").
func CheckTopic(topic string) error {
	switch {
	case topic == "":
		return errors.New("must not be empty")
	case len(topic) > MaxTopicLen:
		return fmt.Errorf("at most %d characters, got %d", MaxTopicLen, len(topic))
	}
	for i, tok := range strings.Split(topic, ".") {
		if tok == "" {
			return fmt.Errorf("token %d is empty (no leading, trailing or double dots)", i+1)
		}
		for _, c := range tok {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
				return fmt.Errorf("tokens are made of [a-z0-9_-] (no wildcards, no upper case), found %q", c)
			}
		}
	}
	return nil
}

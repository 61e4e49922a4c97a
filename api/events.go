package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
)

// Published is the answer to publishing an event: it is stored in the
// node's events stream under Sequence.
type Published struct {
	Topic    string `json:"topic"`
	Sequence uint64 `json:"sequence"`
}

// Emitted is what became of one of a run's emits to a bus topic: the
// event's sequence once stored, or why it was not published.
type Emitted struct {
	Topic    string `json:"topic"`
	Sequence uint64 `json:"sequence,omitempty"`
	Error    string `json:"error,omitempty"`
}

// Publish publishes message (JSON) on topic. It returns once the node's
// bus has stored the event.
func (c *Client) Publish(ctx context.Context, topic string, message json.RawMessage) (Published, error) {
	var out Published
	err := c.do(ctx, http.MethodPost, "/v1/events/"+url.PathEscape(topic), "application/json", bytes.NewReader(message), &out)
	return out, err
}

package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"time"
)

// Flow is a flow applied to the node (the runner API's flows): who applied
// it, what its modules and wires are, and the document as applied. The
// node keeps flows and checks them against its services and runtimes; it
// does not run them yet.
type Flow struct {
	ID      string       `json:"id"`
	Version string       `json:"version"`
	Owner   string       `json:"owner"`
	Digest  string       `json:"digest"`
	Applied time.Time    `json:"applied"`
	Modules []FlowModule `json:"modules"`
	Wires   []FlowWire   `json:"wires"`
	// Document is the flow as applied, in JSON.
	Document json.RawMessage `json:"document"`
}

// FlowModule is one module of a flow.
type FlowModule struct {
	ID string `json:"id"`
	// Service is the service it runs; Language an inline module's.
	Service  string `json:"service,omitempty"`
	Language string `json:"language,omitempty"`
	// Runtime is where it runs: its placement, else its service's runtime
	// (an id of GET /v1/runtimes).
	Runtime string `json:"runtime"`
}

// FlowWire is one wire of a flow, its ends written module:port.
type FlowWire struct {
	From string `json:"from"`
	To   string `json:"to"`
	Loop int    `json:"loop,omitempty"`
}

// FlowApplied is the answer to applying a flow (addOrUpdateFlow).
type FlowApplied struct {
	Flow Flow `json:"flow"`
	// Created is true for a new flow, Unchanged for the same document as
	// the one applied (nothing written).
	Created   bool `json:"created,omitempty"`
	Unchanged bool `json:"unchanged,omitempty"`
	// DryRun is true when nothing was written on request.
	DryRun bool `json:"dry_run,omitempty"`
	// Changes say what changed from the version applied before, one line
	// each: "module score added", "wire parse:out → score:in removed".
	Changes []string `json:"changes,omitempty"`
}

// FlowMediaType is the Content-Type of a flow document written in the
// format of file name (.yaml or .yml, .json, .toml); "" for another.
func FlowMediaType(name string) string {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml":
		return "application/yaml"
	case ".json":
		return "application/json"
	case ".toml":
		return "application/toml"
	}
	return ""
}

// ApplyFlow applies a flow document (addOrUpdateFlow) written in the
// format of contentType (FlowMediaType); dryRun checks it and says what
// would change without writing it.
func (c *Client) ApplyFlow(ctx context.Context, contentType string, doc []byte, dryRun bool) (FlowApplied, error) {
	var a FlowApplied
	path := "/v1/flows"
	if dryRun {
		path += "?dry_run=true"
	}
	return a, c.do(ctx, http.MethodPost, path, contentType, bytes.NewReader(doc), &a)
}

// Flows lists the flows (listFlowsForRuntime): every one the caller may
// see, or with runtime only those with a module on that runtime.
func (c *Client) Flows(ctx context.Context, runtime string) ([]Flow, error) {
	var fs []Flow
	path := "/v1/flows"
	if runtime != "" {
		path += "?runtime=" + url.QueryEscape(runtime)
	}
	return fs, c.getJSON(ctx, path, &fs)
}

// Flow returns one flow.
func (c *Client) Flow(ctx context.Context, id string) (Flow, error) {
	var f Flow
	return f, c.getJSON(ctx, "/v1/flows/"+url.PathEscape(id), &f)
}

// RemoveFlow removes a flow (removeFlow).
func (c *Client) RemoveFlow(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/flows/"+url.PathEscape(id), "", nil, nil)
}

package api

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// Offer is what the node offers, in the shape of a Golem provider's offer
// (seed 002): flat, dotted properties a requestor matches on, and the
// constraints the node's policy puts on what it runs; with the drivers and
// registered runtimes behind them, disabled ones with their reason.
type Offer struct {
	Node string `json:"node"`
	// Properties: what the node measured (andromeda.*: drivers, their
	// languages and versions, isolation layers that hold, limits), the
	// operator's offer.properties, and what each enabled runtime injected.
	Properties map[string]any `json:"properties"`
	// Constraints are the policy's demands on a service, in the offer
	// language of Golem's market: (&(key<=value)...), "" for none.
	Constraints string `json:"constraints"`
	// Prices are the operator's offer.prices: usage counter → price per
	// unit, in Currency.
	Prices   map[string]float64 `json:"prices,omitempty"`
	Currency string             `json:"currency,omitempty"`
	Drivers  []OfferDriver      `json:"drivers"`
	Runtimes []OfferRuntime     `json:"runtimes,omitempty"`
	// Notes say which properties were dropped and why (a runtime's that
	// the operator's override).
	Notes []string `json:"notes,omitempty"`
}

// OfferDriver is one driver in the offer.
type OfferDriver struct {
	Name      string            `json:"name"`
	Enabled   bool              `json:"enabled"`
	Reason    string            `json:"reason,omitempty"` // why it is disabled
	Languages map[string]string `json:"languages,omitempty"`
	Modes     []string          `json:"modes,omitempty"`
	// Isolation lists the layers that hold here; Missing those that do not.
	Isolation []string `json:"isolation,omitempty"`
	Missing   []string `json:"missing,omitempty"`
	Notes     []string `json:"notes,omitempty"`
}

// Runtime is one place a service or a flow's module can run on the node
// (the runner API's listRuntimes): a language of a driver, or a registered
// runtime. GET /v1/runtimes lists them, enabled or not.
type Runtime struct {
	// ID is driver/language ("process/python", "docker/node"), or the
	// driver's name where the two are one ("wasm"). A flow module's
	// runtime field names it.
	ID string `json:"id"`
	// Name is for people: "Python", "Node.js in Docker", a registered
	// runtime's descriptor name.
	Name string `json:"name"`
	// Version is the toolchain's (python 3.11.7, node v20.…), the
	// engine's (wazero) or the registered runtime's descriptor version.
	Version  string `json:"version,omitempty"`
	Driver   string `json:"driver"`
	Language string `json:"language,omitempty"`
	// Kind is driver (a language a driver runs itself), registered (a
	// runtime from runtimes.d) or browser (a page connected at
	// /runtime/browser, enabled while it is connected).
	Kind    string `json:"kind"`
	Enabled bool   `json:"enabled"`
	Reason  string `json:"reason,omitempty"` // why it is not enabled
	// Since is, for a browser, when its page connected, or, when it is
	// not connected, when it went away.
	Since *time.Time `json:"since,omitempty"`
}

// The kinds of runtime.
const (
	RuntimeDriver     = "driver"
	RuntimeRegistered = "registered"
	// RuntimeBrowser is a browser page connected at /runtime/browser
	// (its id browser/<the page's runtime id>).
	RuntimeBrowser = "browser"
)

// Runtimes lists the node's runtimes (any token).
func (c *Client) Runtimes(ctx context.Context) ([]Runtime, error) {
	var rs []Runtime
	return rs, c.getJSON(ctx, "/v1/runtimes", &rs)
}

// OfferRuntime is one runtime descriptor the node found in runtimes.d.
type OfferRuntime struct {
	Name        string `json:"name"`
	Version     string `json:"version,omitempty"`
	Description string `json:"description,omitempty"`
	// Status is enabled (certified), disabled (its certification failed)
	// or refused (the descriptor is invalid); Reason says why not enabled.
	Status     string         `json:"status"`
	Reason     string         `json:"reason,omitempty"`
	Languages  []string       `json:"languages,omitempty"`
	Properties map[string]any `json:"properties,omitempty"` // what it injects into the offer
	Certified  time.Time      `json:"certified,omitzero"`
}

// SelfTest is the answer of POST /v1/selftest: every driver's self-test and
// every registered runtime's certification, run again now.
type SelfTest struct {
	Drivers  []SelfTestResult `json:"drivers"`
	Runtimes []SelfTestResult `json:"runtimes,omitempty"`
}

// SelfTestResult is one driver's or runtime's self-test: OK, or the reason
// it failed (it is disabled until one passes). Enabled is its state after.
type SelfTestResult struct {
	Name    string  `json:"name"`
	OK      bool    `json:"ok"`
	Reason  string  `json:"reason,omitempty"`
	TookMS  float64 `json:"took_ms"`
	Enabled bool    `json:"enabled"`
}

// ServiceTest is the answer of POST /v1/services/{name}/test: whether the
// service has a self-test, and whether it passed.
type ServiceTest struct {
	Service string  `json:"service"`
	Ran     bool    `json:"ran"` // false: the service exports no test
	OK      bool    `json:"ok"`
	Error   string  `json:"error,omitempty"`
	TookMS  float64 `json:"took_ms"`
}

// Offer returns the node's offer (any token).
func (c *Client) Offer(ctx context.Context) (Offer, error) {
	var o Offer
	return o, c.getJSON(ctx, "/v1/offer", &o)
}

// SelfTest runs every driver's self-test and re-certifies every runtime
// now, or only those names names (operator only).
func (c *Client) SelfTest(ctx context.Context, names ...string) (SelfTest, error) {
	var s SelfTest
	path := "/v1/selftest"
	if len(names) > 0 {
		path += "?" + url.Values{"name": names}.Encode()
	}
	return s, c.do(ctx, http.MethodPost, path, "", nil, &s)
}

// TestService runs a service's self-test now (operator only). A test that
// fails is an answer with OK false, not an error.
func (c *Client) TestService(ctx context.Context, name string) (ServiceTest, error) {
	var s ServiceTest
	return s, c.do(ctx, http.MethodPost, "/v1/services/"+url.PathEscape(name)+"/test", "", nil, &s)
}

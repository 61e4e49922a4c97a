package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/andromeda-runner/andromeda/attest"
	"github.com/andromeda-runner/andromeda/decision"
)

// Client talks to a node's HTTP API. It is the only way the CLI reaches a
// node. Safe for concurrent use.
type Client struct {
	// Base is the node's address, e.g. "http://127.0.0.1:7070".
	Base string
	// Token is sent as a bearer token.
	Token string
	// HTTP is the client used; nil means a client without a global timeout
	// (fire waits as long as the run takes; use contexts to bound calls).
	HTTP *http.Client
}

// NewClient returns a client for the node at base ("host:port" or a URL).
func NewClient(base, token string) *Client {
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	return &Client{Base: strings.TrimRight(base, "/"), Token: token, HTTP: &http.Client{}}
}

func (c *Client) do(ctx context.Context, method, path, contentType string, body io.Reader, out any, headers ...string) error {
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, body)
	if err != nil {
		return err
	}
	if f, ok := ctx.Value(uploadProgressKey{}).(func(sent, total int64)); ok && req.ContentLength > 0 {
		req.Body = io.NopCloser(&progressReader{r: req.Body, total: req.ContentLength, f: f})
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] != "" {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json, application/problem+json")
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		return answerError(resp, data)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

func (c *Client) getJSON(ctx context.Context, path string, out any) error {
	return c.do(ctx, http.MethodGet, path, "", nil, out)
}

func (c *Client) postJSON(ctx context.Context, path string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodPost, path, "application/json", bytes.NewReader(b), out)
}

// Submit uploads a service archive (tar.gz of the service directory).
func (c *Client) Submit(ctx context.Context, archive []byte) (SubmitResult, error) {
	return c.SubmitWith(ctx, archive, SubmitOptions{})
}

// SubmitWith uploads a service archive with its attestations and origin.
func (c *Client) SubmitWith(ctx context.Context, archive []byte, o SubmitOptions) (SubmitResult, error) {
	return c.submit(ctx, "application/gzip", archive, o)
}

// SubmitSource submits a manifest whose source.location the node fetches
// itself.
func (c *Client) SubmitSource(ctx context.Context, manifestJSON []byte, o SubmitOptions) (SubmitResult, error) {
	return c.submit(ctx, "application/json", manifestJSON, o)
}

func (c *Client) submit(ctx context.Context, contentType string, body []byte, o SubmitOptions) (SubmitResult, error) {
	var r SubmitResult
	origin := ""
	if !o.Origin.IsZero() {
		origin = o.Origin.String()
	}
	path := "/v1/services"
	if o.NoStart {
		path += "?start=false"
	}
	forwarded := ""
	if o.Forwarded != nil {
		forwarded = attest.EncodeReceiptHeader(*o.Forwarded)
	}
	err := c.do(ctx, http.MethodPost, path, contentType, bytes.NewReader(body), &r,
		attest.HeaderName, attest.EncodeHeader(o.Attestations), decision.OriginHeader, origin,
		attest.DelegationsHeaderName, attest.EncodeDelegationsHeader(o.Delegations),
		attest.ForwardHeaderName, forwarded)
	return r, err
}

// PolicyInfo answers GET /v1/policy.
type PolicyInfo struct {
	Digest string          `json:"digest"`
	Policy json.RawMessage `json:"policy"`
	// NodeKey verifies the node's decision receipts.
	NodeKey string `json:"node_key"`
}

// Policy reads the policy in force (operator).
func (c *Client) Policy(ctx context.Context) (PolicyInfo, error) {
	var r PolicyInfo
	return r, c.getJSON(ctx, "/v1/policy", &r)
}

// Services lists the services the caller may see.
func (c *Client) Services(ctx context.Context) ([]Service, error) {
	var r []Service
	return r, c.getJSON(ctx, "/v1/services", &r)
}

// Service reads one service.
func (c *Client) Service(ctx context.Context, name string) (Service, error) {
	var r Service
	return r, c.getJSON(ctx, "/v1/services/"+url.PathEscape(name), &r)
}

// Remove stops and deletes a service with its state (operator); its run
// history stays for the runs' retention (RemoveWith purges it).
func (c *Client) Remove(ctx context.Context, name string) error {
	return c.RemoveWith(ctx, name, false)
}

// Fire runs a service now and waits for the run (operator).
func (c *Client) Fire(ctx context.Context, name string, message json.RawMessage) (Run, error) {
	var r Run
	return r, c.postJSON(ctx, "/v1/services/"+url.PathEscape(name)+"/fire", FireRequest{Message: message}, &r)
}

// Runs lists the most recent runs, newest first; service "" means all the
// caller may see. limit ≤ 0 means the server's default (20); at most 1000:
// the first page of ListRuns.
func (c *Client) Runs(ctx context.Context, service string, limit int) ([]Run, error) {
	l, err := c.ListRuns(ctx, service, RunQuery{Limit: limit})
	return l.Runs, err
}

// ListRuns reads one page of runs, newest first; service "" means all the
// caller may see. For the next page pass the answer's Next as q.Cursor,
// until Next is "".
func (c *Client) ListRuns(ctx context.Context, service string, q RunQuery) (RunList, error) {
	v := url.Values{}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.Cursor != "" {
		v.Set("cursor", q.Cursor)
	}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.Format(time.RFC3339Nano))
	}
	if !q.Until.IsZero() {
		v.Set("until", q.Until.Format(time.RFC3339Nano))
	}
	path := "/v1/runs"
	if service != "" {
		path = "/v1/services/" + url.PathEscape(service) + "/runs"
	}
	if len(v) > 0 {
		path += "?" + v.Encode()
	}
	var r RunList
	return r, c.getJSON(ctx, path, &r)
}

// Run reads one run of a service.
func (c *Client) Run(ctx context.Context, service, id string) (Run, error) {
	var r Run
	return r, c.getJSON(ctx, "/v1/services/"+url.PathEscape(service)+"/runs/"+url.PathEscape(id), &r)
}

// CreateToken makes a new API token (operator). The secret is in the answer
// only.
func (c *Client) CreateToken(ctx context.Context, name, role string) (Token, error) {
	var r Token
	return r, c.postJSON(ctx, "/v1/tokens", TokenRequest{Name: name, Role: role}, &r)
}

// Node describes the node.
func (c *Client) Node(ctx context.Context) (NodeInfo, error) {
	var r NodeInfo
	return r, c.getJSON(ctx, "/v1/node", &r)
}

// WaitReady polls /readyz until the node answers 200 or ctx ends.
func (c *Client) WaitReady(ctx context.Context) error {
	for {
		err := c.do(ctx, http.MethodGet, "/readyz", "", nil, nil)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node at %s not ready: %w (last: %v)", c.Base, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Deps lists a process service's dependencies.
func (c *Client) Deps(ctx context.Context, service string) ([]Dep, error) {
	var r []Dep
	return r, c.getJSON(ctx, "/v1/services/"+url.PathEscape(service)+"/deps", &r)
}

// AddDep installs a package into a process service's dependency directory;
// it applies from the service's next deploy.
func (c *Client) AddDep(ctx context.Context, service, pkg string) error {
	return c.postJSON(ctx, "/v1/services/"+url.PathEscape(service)+"/deps", DepRequest{Package: pkg}, nil)
}

// RemoveDep removes a package added with AddDep.
func (c *Client) RemoveDep(ctx context.Context, service, pkg string) error {
	return c.do(ctx, http.MethodDelete, "/v1/services/"+url.PathEscape(service)+"/deps?package="+url.QueryEscape(pkg), "", nil, nil)
}

// Plan runs a service as Fire does, but executes nothing, writes no state
// and records no run: the answer's Executions say what would be sent.
func (c *Client) Plan(ctx context.Context, name string, message json.RawMessage) (Run, error) {
	var r Run
	return r, c.postJSON(ctx, "/v1/services/"+url.PathEscape(name)+"/fire", FireRequest{Message: message, Plan: true}, &r)
}

// RunByID reads one run, with its executions, by its id alone.
func (c *Client) RunByID(ctx context.Context, id string) (Run, error) {
	var r Run
	return r, c.getJSON(ctx, "/v1/runs/"+url.PathEscape(id), &r)
}

// answerError is the *Error of an answer of 300 or more whose body is
// data: a problem details body (application/problem+json) as the node
// sends; anything else (a proxy's page, plain text) is the detail.
func answerError(resp *http.Response, data []byte) *Error {
	e := &Error{}
	if json.Unmarshal(data, e) != nil || e.Message == "" {
		e = &Error{Message: strings.TrimSpace(string(data))}
		if e.Message == "" {
			e.Message = resp.Status
		}
	}
	e.Status = resp.StatusCode
	if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
		e.RetryAfter = secs
	}
	return e
}

// Refusal is a peer's answer refusing a forwarded submission: any 4xx but
// 401, 403 and 429, with the peer's message, problems, decision and
// signed receipt.
type Refusal struct {
	Status   int
	Message  string
	Problems []string
	Decision *Decision
	Receipt  *attest.Receipt
}

// SubmitForwarded submits archive as SubmitWith does, for a node
// forwarding it (o.Forwarded set), and sorts the answer: the result when
// the peer took it; a Refusal when its policy (or its checks) refused it;
// an error when the peer did not answer, is failing (5xx), will not take
// this node's token (401, 403) or is busy (429), so that the forwarding
// node tries its next peer.
func (c *Client) SubmitForwarded(ctx context.Context, archive []byte, o SubmitOptions) (SubmitResult, *Refusal, error) {
	res, err := c.SubmitWith(ctx, archive, o)
	var ae *Error
	if err == nil || !errors.As(err, &ae) || ae.Status >= 500 || ae.Status < 400 ||
		ae.Status == http.StatusUnauthorized || ae.Status == http.StatusForbidden || ae.Status == http.StatusTooManyRequests {
		return res, nil, err
	}
	return SubmitResult{}, &Refusal{Status: ae.Status, Message: ae.Message, Problems: ae.Problems, Decision: ae.Decision, Receipt: ae.Receipt}, nil
}

type uploadProgressKey struct{}

// WithUploadProgress returns ctx with f, which a request made with it
// calls as its body is sent: the bytes sent so far and the body's size.
func WithUploadProgress(ctx context.Context, f func(sent, total int64)) context.Context {
	if f == nil {
		return ctx
	}
	return context.WithValue(ctx, uploadProgressKey{}, f)
}

// progressReader reports the bytes read through it.
type progressReader struct {
	r     io.Reader
	sent  int64
	total int64
	f     func(sent, total int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.sent += int64(n)
	if n > 0 || err == io.EOF {
		p.f(p.sent, p.total)
	}
	return n, err
}

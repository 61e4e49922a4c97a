package api

import (
	"bufio"
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
)

// Watch streams the node's events (GET /v1/watch) of q.Service, or of
// every service the caller may see, to fn, until ctx ends or fn returns
// an error (which Watch returns). A dropped connection is made again,
// resuming with Last-Event-ID after the last event fn got, so fn sees
// every stored event once, in order; an answer that is not a stream
// (a bad query, a wrong token) ends Watch with its error.
func (c *Client) Watch(ctx context.Context, q WatchQuery, fn func(WatchEvent) error) error {
	path := "/v1/watch"
	if q.Service != "" {
		path += "?service=" + url.QueryEscape(q.Service)
	}
	return c.sseStream(ctx, path, q.After, true, fn)
}

// Logs streams the lines of service (GET /v1/services/{name}/logs) as
// run.log events to fn: those stored after q.After (0: from the oldest
// kept) of q.Run, or of every run when empty. Without q.Follow it returns
// after the last line stored; with it, it waits for more until ctx ends,
// reconnecting like Watch.
func (c *Client) Logs(ctx context.Context, service string, q LogQuery, fn func(WatchEvent) error) error {
	v := url.Values{}
	if q.Run != "" {
		v.Set("run", q.Run)
	}
	if q.Follow {
		v.Set("follow", "1")
	}
	path := "/v1/services/" + url.PathEscape(service) + "/logs"
	if len(v) > 0 {
		path += "?" + v.Encode()
	}
	return c.sseStream(ctx, path, q.After, q.Follow, fn)
}

// stream reads Server-Sent Events from path; with retry it connects again
// after a dropped connection, with Last-Event-ID.
func (c *Client) sseStream(ctx context.Context, path string, after uint64, retry bool, fn func(WatchEvent) error) error {
	wait := 100 * time.Millisecond
	for {
		got, err := c.streamOnce(ctx, path, &after, fn)
		var apiErr *Error
		var fnErr handlerError
		switch {
		case errors.As(err, &fnErr):
			return fnErr.err
		case ctx.Err() != nil:
			return nil
		case errors.As(err, &apiErr):
			return err
		case !retry && errors.Is(err, io.EOF):
			return nil
		case !retry:
			return err
		}
		if got {
			wait = 100 * time.Millisecond
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// handlerError wraps an error of the caller's fn.
type handlerError struct{ err error }

func (e handlerError) Error() string { return e.err.Error() }

// streamOnce reads one connection's events; got says some came.
func (c *Client) streamOnce(ctx context.Context, path string, after *uint64, fn func(WatchEvent) error) (got bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Base+path, nil)
	if err != nil {
		return false, &Error{Message: err.Error()}
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	req.Header.Set("Accept", "text/event-stream")
	if *after > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatUint(*after, 10))
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		e := &Error{}
		if json.Unmarshal(data, e) != nil || e.Message == "" {
			e = &Error{Message: strings.TrimSpace(string(data))}
		}
		e.Status = resp.StatusCode
		return false, e
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var data []byte
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case len(line) == 0:
			if len(data) == 0 {
				continue
			}
			var ev WatchEvent
			if err := json.Unmarshal(data, &ev); err != nil {
				return got, fmt.Errorf("watch: decode event: %w", err)
			}
			data = data[:0]
			if err := fn(ev); err != nil {
				return got, handlerError{err}
			}
			got = true
			*after = ev.ID
		case line[0] == ':':
		default:
			field, value, _ := strings.Cut(string(line), ":")
			value = strings.TrimPrefix(value, " ")
			if field == "data" {
				data = append(data, value...)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return got, err
	}
	return got, io.EOF
}

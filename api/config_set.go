package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// ServiceConfig is a service's config (the manifest's config, handed to
// every run as input.config) at one deployment revision.
type ServiceConfig struct {
	Service  string `json:"service"`
	Revision int    `json:"revision"`
	// Digest is "sha256:" and the hex SHA-256 of the config's canonical
	// JSON ({} for none).
	Digest string         `json:"digest"`
	Config map[string]any `json:"config"`
	// Current says whether the revision is the one the service runs now.
	Current bool `json:"current"`
}

// ConfigRevision is one deployment revision of a service, as
// GET /v1/services/{name}/config/history lists them.
type ConfigRevision struct {
	Revision int `json:"revision"`
	// Change is "submit" (a version submitted, with its manifest's
	// config) or "config" (the config changed).
	Change       string    `json:"change"`
	Version      string    `json:"version"`
	Digest       string    `json:"digest"`
	ConfigDigest string    `json:"config_digest"`
	Keys         []string  `json:"keys,omitempty"`
	By           string    `json:"by"`
	At           time.Time `json:"at"`
	Current      bool      `json:"current,omitempty"`
}

// ServiceConfig reads a service's config: the current one for revision 0,
// else that revision's (while the service keeps it).
func (c *Client) ServiceConfig(ctx context.Context, service string, revision int) (ServiceConfig, error) {
	path := "/v1/services/" + url.PathEscape(service) + "/config"
	if revision != 0 {
		path += "?revision=" + strconv.Itoa(revision)
	}
	var sc ServiceConfig
	return sc, c.getJSON(ctx, path, &sc)
}

// SetConfig changes a service's config with a JSON merge patch (RFC 7396):
// a key set to null is removed, an object merges into the object there,
// anything else replaces. The change is a new deployment revision,
// admitted by the node's policy like a submission; the answer is the new
// config.
func (c *Client) SetConfig(ctx context.Context, service string, patch map[string]any) (ServiceConfig, error) {
	b, err := json.Marshal(patch)
	if err != nil {
		return ServiceConfig{}, err
	}
	var sc ServiceConfig
	return sc, c.do(ctx, http.MethodPatch, "/v1/services/"+url.PathEscape(service)+"/config", MergePatchType, bytes.NewReader(b), &sc)
}

// MergePatchType is the media type of a JSON merge patch.
const MergePatchType = "application/merge-patch+json"

// ConfigHistory lists a service's deployment revisions, oldest first.
func (c *Client) ConfigHistory(ctx context.Context, service string) ([]ConfigRevision, error) {
	var out []ConfigRevision
	return out, c.getJSON(ctx, "/v1/services/"+url.PathEscape(service)+"/config/history", &out)
}

package node_test

import (
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/node"
)

// TestSecretsConfig: the config's secrets and webhook settings are
// checked at load, each problem naming its key and the rule.
func TestSecretsConfig(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"bad name", "secrets: {Not_OK: x}", `secrets: "Not_OK": must name a secret: [a-z0-9_-]{1,64}`},
		{"empty value", `secrets: {gh: ""}`, "secrets.gh: must not be empty"},
		{"long value", "secrets: {gh: " + strings.Repeat("x", 64<<10+1) + "}", "secrets.gh: must be at most 65536 bytes"},
		{"not a string", "secrets: {gh: [1]}", "secrets.gh: must be a string"},
		{"hooks listen", "http: {hooks_listen: nowhere}", "http.hooks_listen: must be host:port"},
		{"hook body", "http: {max_hook_body: 100}", "http.max_hook_body: must be from 1024 to 67108864 bytes"},
		{"hook body unit", "http: {max_hook_body: lots}", "http.max_hook_body: must be a size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := node.ParseConfig([]byte(tc.yaml), false)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseConfig(%.40q) = %v, want %q", tc.yaml, err, tc.want)
			}
		})
	}
	cfg, err := node.ParseConfig([]byte("secrets: {github: s3cret, deploy-token: \"0123\"}\nhttp: {hooks_listen: \"127.0.0.1:0\", max_hook_body: 2Mi}"), false)
	if err != nil || cfg.Secrets["deploy-token"] != "0123" || cfg.HTTP.HooksListen != "127.0.0.1:0" || cfg.HTTP.MaxHookBody != "2Mi" {
		t.Errorf("valid config = %+v %+v, %v", cfg.Secrets, cfg.HTTP, err)
	}
}

package pgbridge

import (
	"net/url"
	"regexp"
	"strings"
)

// redacted stands for a password.
const redacted = "xxxxx"

var (
	// keywordPassword is a password (or sslpassword) in a keyword/value
	// connection string, quoted or not.
	keywordPassword = regexp.MustCompile(`(?i)\b((?:ssl)?password\s*=\s*)(?:'(?:[^'\\]|\\.)*'?|\S*)`)
	// urlUserinfo is the user:password@ of a URL that net/url refuses
	// (several hosts, say).
	urlUserinfo = regexp.MustCompile(`^([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@?#]*):[^@]*@`)
	// queryPassword is a password parameter in a URL's query.
	queryPassword = regexp.MustCompile(`(?i)([?&](?:ssl)?password=)[^&#]*`)
)

// Redact returns dsn with every password it holds replaced by xxxxx: the
// userinfo password and password= parameters of a URL, the password and
// sslpassword keywords of a keyword/value string.
func Redact(dsn string) string {
	if !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") {
		return keywordPassword.ReplaceAllString(dsn, "${1}"+redacted)
	}
	out := dsn
	if u, err := url.Parse(dsn); err == nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), redacted)
		}
		out = u.String()
	} else {
		out = urlUserinfo.ReplaceAllString(out, "${1}:"+redacted+"@")
	}
	return queryPassword.ReplaceAllString(out, "${1}"+redacted)
}

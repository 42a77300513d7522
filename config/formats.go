package config

import (
	"net"
	"net/mail"
	"net/url"
	"regexp"
	"strings"
)

// format is a named rule for string values: a pattern the JSON Schema carries
// and editors check, a description for messages, and (where a pattern cannot
// say everything) a check in Go.
type format struct {
	pattern string
	says    string              // "must be ..."
	check   func(s string) bool // optional extra check, after the pattern
	re      *regexp.Regexp
}

const (
	hostnameRE = `[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*`
	pathRE     = `[A-Za-z0-9._+@=,-]`
)

var formats = map[string]*format{
	"name": {
		pattern: `^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`,
		says:    "must be lowercase letters, digits and '-' (1-63 characters, no '-' at either end)",
	},
	"host": {
		pattern: `^(` + hostnameRE + `|\[?[0-9A-Fa-f:.]+\]?)$`,
		says:    "must be a host name or an IP address",
		check:   validHost,
	},
	"domain": {
		pattern: `^(\*\.)?` + hostnameRE + `$`,
		says:    "must be a domain name such as example.com (a leading '*.' for a wildcard)",
		check:   func(s string) bool { return strings.Contains(strings.TrimPrefix(s, "*."), ".") && len(s) <= 253 },
	},
	"user": {
		pattern: `^[a-z_][a-z0-9_-]{0,31}$`,
		says:    "must be a Unix user name (lowercase letters, digits, '_' and '-', starting with a letter or '_')",
	},
	"portname": {
		pattern: `^[a-z][a-z0-9_]{0,31}$`,
		says:    "must be a port name (lowercase letters, digits and '_', starting with a letter)",
	},
	"envname": {
		pattern: `^[A-Za-z_][A-Za-z0-9_]{0,127}$`,
		says:    "must be an environment variable name (letters, digits and '_', not starting with a digit)",
	},
	"abspath": {
		pattern: `^(/` + pathRE + `+)+/?$`,
		says:    "must be an absolute path of letters, digits and ._+@=,- (no spaces, no '..')",
		check:   noDotDot,
	},
	"logpath": {
		pattern: `^(off|(/` + pathRE + `+)+)$`,
		says:    `must be an absolute file path of letters, digits and ._+@=,- or "off"`,
		check:   func(s string) bool { return s == "off" || noDotDot(s) },
	},
	"path": {
		pattern: `^(~/|/)?(` + pathRE + `+/)*` + pathRE + `+$`,
		says:    "must be a file path of letters, digits and ._+@=,-/~ (no spaces)",
	},
	"relpath": {
		pattern: `^` + pathRE + `+(/` + pathRE + `+)*/?$`,
		says:    "must be a path inside the source folder (letters, digits and ._+@=,-; no leading '/', no '..')",
		check:   noDotDot,
	},
	"urlpath": {
		pattern: `^/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*$`,
		says:    "must be a URL path starting with '/'",
	},
	"route": {
		pattern: `^/[A-Za-z0-9._~!&()+,=:@%/-]*\*?$`,
		says:    `must be a URL path starting with '/' (no query, no spaces, quotes, ';', '{' or '$'), ending in '/' or '*' for a prefix`,
	},
	"urlpathorempty": {
		pattern: `^(/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*)?$`,
		says:    `must be a URL path starting with '/', or "" to skip the check`,
	},
	"httpurl": {
		pattern: `^https?://[^\s]+$`,
		says:    "must be an http:// or https:// URL with a host",
		check:   func(s string) bool { return validURL(s, "http", "https") },
	},
	"redisurl": {
		pattern: `^rediss?://[^\s]+$`,
		says:    "must be a redis:// or rediss:// URL with a host (the password goes in redis.password, not in the URL)",
		check: func(s string) bool {
			u, err := url.Parse(s)
			return err == nil && validURL(s, "redis", "rediss") && u.User == nil
		},
	},
	"email": {
		pattern: `^[^@\s]+@[^@\s]+\.[^@\s]+$`,
		says:    "must be an email address such as ops@example.com",
		check: func(s string) bool {
			a, err := mail.ParseAddress(s)
			return err == nil && a.Address == s
		},
	},
	"image": {
		pattern: `^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]{1,5})?(/[a-z0-9]+([._-][a-z0-9]+)*)+$`,
		says:    "must be an image repository without tag or digest, such as ghcr.io/lawsker/backend",
	},
	"registry": {
		pattern: `^[a-z0-9]+([.-][a-z0-9]+)*(:[0-9]{1,5})?$`,
		says:    "must be a registry host, optionally with a port, such as ghcr.io or 127.0.0.1:5000",
	},
	"pgident": {
		pattern: `^[A-Za-z_][A-Za-z0-9_]{0,62}$`,
		says:    "must be a PostgreSQL name of letters, digits and '_' (at most 63 characters, not starting with a digit)",
	},
	"store": {
		pattern: `^(target|(s3|gs|azblob|file)://[^\s]+)$`,
		says:    `must be "target" (on the target host over SFTP) or a s3://, gs://, azblob:// or file:// URL`,
		check: func(s string) bool {
			return s == "target" || validURL(s, "s3", "gs", "azblob") || (strings.HasPrefix(s, "file:///") && noDotDot(s[len("file://"):]))
		},
	},
	"dockerhost": {
		pattern: `^(unix://(/[A-Za-z0-9._+@=,-]+)+|tcp://[A-Za-z0-9.-]+:[0-9]{1,5})$`,
		says:    "must be unix:///path/to/docker.sock or tcp://host:port",
	},
	"ip": {
		pattern: `^[0-9A-Fa-f:.]+$`,
		says:    "must be an IP address such as 127.0.0.1",
		check:   func(s string) bool { return net.ParseIP(s) != nil },
	},
	"command": {
		pattern: `^[A-Za-z0-9._+/-]+$`,
		says:    "must be a command name or absolute path (letters, digits and ._+/-)",
	},
	"hostport": {
		pattern: `^[A-Za-z0-9.:\[\]-]+:[0-9]{1,5}$`,
		says:    "must be host:port, such as 127.0.0.1:53",
	},
	"imageref": {
		pattern: `^(none|[a-z0-9][a-z0-9._/:@-]*)$`,
		says:    "must be an image reference such as prom/prometheus:v2.55.1 (or none)",
	},
	"asgiapp": {
		pattern: `^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$`,
		says:    "must be module:attribute, such as app.main:app",
	},
	"agerecipient": {
		pattern: `^age1[02-9ac-hj-np-z]{58}$`,
		says:    "must be an age X25519 recipient (age1...)",
	},
}

func init() {
	for _, f := range formats {
		f.re = regexp.MustCompile(f.pattern)
	}
}

func (f *format) ok(s string) bool {
	return f.re.MatchString(s) && (f.check == nil || f.check(s))
}

var hostnameOnly = regexp.MustCompile(`^` + hostnameRE + `$`)

func noDotDot(p string) bool {
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return false
		}
	}
	return true
}

func validHost(s string) bool {
	if ip := net.ParseIP(strings.Trim(s, "[]")); ip != nil {
		return true
	}
	return len(s) <= 253 && hostnameOnly.MatchString(s)
}

func validURL(s string, schemes ...string) bool {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return false
	}
	for _, sc := range schemes {
		if u.Scheme == sc {
			return validHost(u.Hostname())
		}
	}
	return false
}

// Package natsconn connects the JetSource binaries to NATS with the
// options every one of them shares: server list, credentials, TLS, the
// inbox prefix of the role, and endless reconnects.
package natsconn

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// Config is the NATS part of a binary's configuration. The envconfig tags
// name the environment variables; only cmd/ reads them.
//
// One way to authenticate at most: NATS_CREDS (a JWT credentials file),
// NATS_NKEY (an nkey seed file), NATS_USER and NATS_PASSWORD, NATS_TOKEN,
// or a user and password in NATS_URL.
type Config struct {
	// URL is one server or a comma-separated list (a cluster).
	URL      string `envconfig:"NATS_URL" default:"nats://127.0.0.1:4222"`
	Creds    string `envconfig:"NATS_CREDS"`
	NKey     string `envconfig:"NATS_NKEY"`
	User     string `envconfig:"NATS_USER"`
	Password Secret `envconfig:"NATS_PASSWORD"`
	Token    Secret `envconfig:"NATS_TOKEN"`
	// InboxPrefix is where replies come back; with deploy/nats/auth.conf
	// each role may only receive on _INBOX.<role>. Empty: _INBOX.
	InboxPrefix string `envconfig:"NATS_INBOX_PREFIX"`
	TLSCert     string `envconfig:"NATS_TLS_CERT"`
	TLSKey      string `envconfig:"NATS_TLS_KEY"`
	TLSCA       string `envconfig:"NATS_TLS_CA"`
}

// Secret is a string that never shows in logs, errors or formatted
// configuration.
type Secret string

const redacted = "[redacted]"

func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString keeps %#v from printing the secret.
func (s Secret) GoString() string { return s.String() }

// LogValue keeps slog from printing the secret.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText keeps encoders from printing the secret.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	if strings.TrimSpace(c.URL) == "" {
		errs = append(errs, errors.New("NATS_URL is empty"))
	}
	urlUser := false
	for _, u := range splitURLs(c.URL) {
		parsed, err := url.Parse(u)
		if err != nil {
			// url.Parse quotes the input, secrets included.
			errs = append(errs, fmt.Errorf("NATS_URL: %s is not a URL", redactURL(u)))
			continue
		}
		urlUser = urlUser || parsed.User != nil
	}
	var methods []string
	for _, m := range []struct {
		name string
		set  bool
	}{{"NATS_CREDS", c.Creds != ""}, {"NATS_NKEY", c.NKey != ""}, {"NATS_USER", c.User != ""},
		{"NATS_TOKEN", c.Token != ""}, {"a user in NATS_URL", urlUser}} {
		if m.set {
			methods = append(methods, m.name)
		}
	}
	if len(methods) > 1 {
		errs = append(errs, fmt.Errorf("set one way to authenticate, not %s", strings.Join(methods, ", ")))
	}
	if c.Password != "" && c.User == "" {
		errs = append(errs, errors.New("NATS_PASSWORD is set without NATS_USER"))
	}
	if p := c.InboxPrefix; p != "" && (strings.ContainsAny(p, "*> \t") || strings.HasPrefix(p, ".") || strings.HasSuffix(p, ".") || strings.Contains(p, "..")) {
		errs = append(errs, fmt.Errorf("NATS_INBOX_PREFIX %q is not a subject without wildcards", p))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("NATS_TLS_CERT and NATS_TLS_KEY must be set together"))
	}
	for _, f := range []struct{ name, path string }{{"NATS_CREDS", c.Creds}, {"NATS_NKEY", c.NKey},
		{"NATS_TLS_CERT", c.TLSCert}, {"NATS_TLS_KEY", c.TLSKey}, {"NATS_TLS_CA", c.TLSCA}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.name, err))
		}
	}
	return errors.Join(errs...)
}

// SecurityOptions are the credentials, inbox prefix and TLS options of c.
func (c Config) SecurityOptions() []nats.Option {
	var opts []nats.Option
	switch {
	case c.Creds != "":
		opts = append(opts, nats.UserCredentials(c.Creds))
	case c.NKey != "":
		opts = append(opts, func(o *nats.Options) error {
			nkey, err := nats.NkeyOptionFromSeed(c.NKey)
			if err != nil {
				return fmt.Errorf("NATS_NKEY: %w", err)
			}
			return nkey(o)
		})
	case c.User != "":
		opts = append(opts, nats.UserInfo(c.User, string(c.Password)))
	case c.Token != "":
		opts = append(opts, nats.Token(string(c.Token)))
	}
	if c.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(c.InboxPrefix))
	}
	if c.TLSCert != "" {
		opts = append(opts, nats.ClientCert(c.TLSCert, c.TLSKey))
	}
	if c.TLSCA != "" {
		opts = append(opts, nats.RootCAs(c.TLSCA))
	}
	return opts
}

// RedactedURL is NATS_URL with passwords and tokens masked, for logs and
// errors.
func (c Config) RedactedURL() string {
	urls := splitURLs(c.URL)
	for i, u := range urls {
		urls[i] = redactURL(u)
	}
	return strings.Join(urls, ",")
}

func splitURLs(list string) []string {
	var urls []string
	for _, u := range strings.Split(list, ",") {
		if u = strings.TrimSpace(u); u != "" {
			urls = append(urls, u)
		}
	}
	return urls
}

// redactURL masks the password of u, or its user when it has no password:
// NATS takes a lone user in a URL as a token.
func redactURL(u string) string {
	parsed, err := url.Parse(u)
	if err != nil {
		at := strings.LastIndex(u, "@")
		if at < 0 {
			return u
		}
		scheme := ""
		if i := strings.Index(u[:at], "://"); i >= 0 {
			scheme = u[:i+3]
		}
		return scheme + redacted + u[at:]
	}
	if parsed.User == nil {
		return u
	}
	if _, hasPassword := parsed.User.Password(); hasPassword {
		parsed.User = url.UserPassword(parsed.User.Username(), "xxxxx")
	} else {
		parsed.User = url.User("xxxxx")
	}
	return parsed.String()
}

// Dial connects once and fails at once when NATS is unreachable or refuses
// the credentials: for command line tools, unlike the services.
func Dial(cfg Config, name string) (*nats.Conn, error) {
	nc, err := nats.Connect(cfg.URL, append(cfg.SecurityOptions(), nats.Name(name), nats.Timeout(5*time.Second))...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats at %s: %w", cfg.RedactedURL(), err)
	}
	return nc, nil
}

// Connect dials NATS and keeps reconnecting forever, logging every
// disconnect and reconnect: a service outlives NATS restarts.
func Connect(cfg Config, name string, log *slog.Logger) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("nats disconnected", "error", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Warn("nats async error", "subject", subject, "error", err)
		}),
	}
	nc, err := nats.Connect(cfg.URL, append(opts, cfg.SecurityOptions()...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats at %s: %w", cfg.RedactedURL(), err)
	}
	return nc, nil
}

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

	"github.com/jetsource/jetsource/internal/config"
)

// Config is the NATS part of a binary's configuration; daemon.MapNATS names
// its environment variables.
//
// One way to authenticate at most: Creds (a JWT credentials file), NKey
// (an nkey seed file), User and Password, Token, or a user and password
// in URL.
type Config struct {
	// URL is one server or a comma-separated list (a cluster).
	URL      string
	Creds    string
	NKey     string
	User     string
	Password Secret
	Token    Secret
	// InboxPrefix is where replies come back; with deploy/nats/auth.conf
	// each role may only receive on _INBOX.<role>. Empty: _INBOX.
	InboxPrefix string
	// TLSCert and TLSKey are a client certificate and its key; TLSCA a CA
	// bundle to verify the servers.
	TLSCert, TLSKey, TLSCA string
}

// DefaultConfig is a local server without credentials.
func DefaultConfig() Config { return Config{URL: nats.DefaultURL} }

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

// Validate reports every problem at once, as config.FieldErrors.
func (c Config) Validate() error {
	var errs []error
	if strings.TrimSpace(c.URL) == "" {
		errs = append(errs, config.Invalid("URL", c.URL, "must name a server"))
	}
	urlUser := false
	for _, u := range splitURLs(c.URL) {
		parsed, err := url.Parse(u)
		if err != nil {
			// url.Parse quotes the input, secrets included.
			errs = append(errs, config.Invalid("URL", c.RedactedURL(), "holds %s, which is not a URL", redactURL(u)))
			continue
		}
		urlUser = urlUser || parsed.User != nil
	}
	var methods []string
	for _, m := range []struct {
		field string
		set   bool
	}{{"Creds", c.Creds != ""}, {"NKey", c.NKey != ""}, {"User", c.User != ""}, {"Token", c.Token != ""}, {"URL", urlUser}} {
		if m.set {
			methods = append(methods, m.field)
		}
	}
	if len(methods) > 1 {
		// Reported on each field that authenticates, so each is named.
		for _, f := range methods {
			errs = append(errs, config.Invalid(f, "(set)", "is one of %d ways to authenticate set at once; set one", len(methods)))
		}
	}
	if c.Password != "" && c.User == "" {
		errs = append(errs, config.Invalid("User", c.User, "must be set with the password"))
	}
	if p := c.InboxPrefix; p != "" && (strings.ContainsAny(p, "*> \t") || strings.HasPrefix(p, ".") || strings.HasSuffix(p, ".") || strings.Contains(p, "..")) {
		errs = append(errs, config.Invalid("InboxPrefix", p, "must be a subject without wildcards"))
	}
	if c.TLSCert != "" && c.TLSKey == "" {
		errs = append(errs, config.Invalid("TLSKey", c.TLSKey, "must be set with the client certificate"))
	}
	if c.TLSKey != "" && c.TLSCert == "" {
		errs = append(errs, config.Invalid("TLSCert", c.TLSCert, "must be set with the client key"))
	}
	for _, f := range []struct{ field, path string }{{"Creds", c.Creds}, {"NKey", c.NKey},
		{"TLSCert", c.TLSCert}, {"TLSKey", c.TLSKey}, {"TLSCA", c.TLSCA}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			errs = append(errs, config.Invalid(f.field, f.path, "cannot be read: %v", errors.Unwrap(err)))
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

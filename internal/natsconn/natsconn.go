// Package natsconn connects the JetSource binaries to NATS with the
// options every one of them shares: server list, credentials, TLS and
// endless reconnects.
package natsconn

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// Config is the NATS part of a binary's configuration. The envconfig tags
// name the environment variables; only cmd/ reads them.
type Config struct {
	// URL is one server or a comma-separated list (a cluster).
	URL     string `envconfig:"NATS_URL" default:"nats://127.0.0.1:4222"`
	Creds   string `envconfig:"NATS_CREDS"`
	TLSCert string `envconfig:"NATS_TLS_CERT"`
	TLSKey  string `envconfig:"NATS_TLS_KEY"`
	TLSCA   string `envconfig:"NATS_TLS_CA"`
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	if strings.TrimSpace(c.URL) == "" {
		errs = append(errs, errors.New("NATS_URL is empty"))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("NATS_TLS_CERT and NATS_TLS_KEY must be set together"))
	}
	for name, path := range map[string]string{"NATS_CREDS": c.Creds, "NATS_TLS_CERT": c.TLSCert, "NATS_TLS_KEY": c.TLSKey, "NATS_TLS_CA": c.TLSCA} {
		if path == "" {
			continue
		}
		if _, err := os.Stat(path); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// SecurityOptions are the credentials and TLS options of cfg.
func (c Config) SecurityOptions() []nats.Option {
	var opts []nats.Option
	if c.Creds != "" {
		opts = append(opts, nats.UserCredentials(c.Creds))
	}
	if c.TLSCert != "" {
		opts = append(opts, nats.ClientCert(c.TLSCert, c.TLSKey))
	}
	if c.TLSCA != "" {
		opts = append(opts, nats.RootCAs(c.TLSCA))
	}
	return opts
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
		return nil, fmt.Errorf("connect to nats at %s: %w", cfg.URL, err)
	}
	return nc, nil
}

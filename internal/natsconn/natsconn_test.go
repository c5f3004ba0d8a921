package natsconn_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/jetsource/jetsource/internal/natsconn"
)

const password = "s3cret-pa55"

// startServer runs a server with the given authorization block.
func startServer(t *testing.T, auth string) *server.Server {
	t.Helper()
	opts := &server.Options{}
	if err := opts.ProcessConfigString("listen: 127.0.0.1:-1\n" + auth); err != nil {
		t.Fatal(err)
	}
	opts.NoLog, opts.NoSigs = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(s.Shutdown)
	return s
}

// TestAuthMethods connects with each way of authenticating, and is refused
// with a wrong secret; no error message carries the secret.
func TestAuthMethods(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	seedFile := filepath.Join(t.TempDir(), "user.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	other, _ := nkeys.CreateUser()
	otherSeed, _ := other.Seed()
	otherFile := filepath.Join(t.TempDir(), "other.nk")
	if err := os.WriteFile(otherFile, otherSeed, 0o600); err != nil {
		t.Fatal(err)
	}

	users := startServer(t, `authorization { users: [{user: svc, password: "`+password+`", permissions: {subscribe: "_INBOX.svc.>"}}] }`)
	nkeyed := startServer(t, `authorization { users: [{nkey: `+pub+`}] }`)
	token := startServer(t, `authorization { token: "`+password+`" }`)
	host := func(s *server.Server) string { return strings.TrimPrefix(s.ClientURL(), "nats://") }

	for _, tc := range []struct {
		name     string
		cfg      natsconn.Config
		refused  bool
		useInbox bool
	}{
		{name: "user and password", cfg: natsconn.Config{URL: users.ClientURL(), User: "svc", Password: password, InboxPrefix: "_INBOX.svc"}, useInbox: true},
		{name: "wrong password", cfg: natsconn.Config{URL: users.ClientURL(), User: "svc", Password: password + "x"}, refused: true},
		{name: "no credentials", cfg: natsconn.Config{URL: users.ClientURL()}, refused: true},
		{name: "user in the URL", cfg: natsconn.Config{URL: "nats://svc:" + password + "@" + host(users), InboxPrefix: "_INBOX.svc"}, useInbox: true},
		{name: "wrong password in the URL", cfg: natsconn.Config{URL: "nats://svc:" + password + "x@" + host(users)}, refused: true},
		{name: "nkey seed file", cfg: natsconn.Config{URL: nkeyed.ClientURL(), NKey: seedFile}},
		{name: "unknown nkey", cfg: natsconn.Config{URL: nkeyed.ClientURL(), NKey: otherFile}, refused: true},
		{name: "token", cfg: natsconn.Config{URL: token.ClientURL(), Token: password}},
		{name: "wrong token", cfg: natsconn.Config{URL: token.ClientURL(), Token: password + "x"}, refused: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			nc, err := natsconn.Dial(tc.cfg, "test")
			if tc.refused {
				if err == nil {
					nc.Close()
					t.Fatal("connected; want the server to refuse")
				}
				if strings.Contains(err.Error(), password) {
					t.Fatalf("error shows the secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer nc.Close()
			if tc.useInbox {
				// The user may receive only under _INBOX.svc: a message
				// reaches its inbox only with the prefix applied.
				sub, err := nc.SubscribeSync(nc.NewInbox())
				if err != nil {
					t.Fatal(err)
				}
				if err := nc.Publish(sub.Subject, []byte("hi")); err != nil {
					t.Fatal(err)
				}
				if _, err := sub.NextMsg(5 * time.Second); err != nil {
					t.Fatalf("inbox %s: %v", sub.Subject, err)
				}
			}
			if err := nc.Flush(); err != nil {
				t.Fatalf("flush: %v", err)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  natsconn.Config
		want []string
	}{
		{name: "two methods", cfg: natsconn.Config{URL: "nats://u:p@h:4222", User: "u", Creds: file},
			want: []string{"Creds is (set): is one of 3 ways to authenticate set at once", "User is (set)", "URL is (set)"}},
		{name: "password without user", cfg: natsconn.Config{URL: "nats://h", Password: "p"}, want: []string{"User is : must be set with the password"}},
		{name: "inbox prefix", cfg: natsconn.Config{URL: "nats://h", InboxPrefix: "_INBOX.>"}, want: []string{"InboxPrefix is _INBOX.>: must be a subject without wildcards"}},
		{name: "missing files", cfg: natsconn.Config{URL: "nats://h", NKey: dir + "/none", TLSCert: file}, want: []string{"NKey is " + dir + "/none: cannot be read", "TLSKey is : must be set with the client certificate"}},
		{name: "bad URL", cfg: natsconn.Config{URL: "nats://u:" + password + "@h:x"}, want: []string{"nats://[redacted]@h:x, which is not a URL"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v, want it to say %q", err, w)
				}
			}
			if err != nil && strings.Contains(err.Error(), password) {
				t.Errorf("Validate() shows the secret: %v", err)
			}
		})
	}
	if err := (natsconn.Config{URL: "nats://a:4222, nats://b:4222", User: "u", Password: "p", InboxPrefix: "_INBOX.u", TLSCA: file}).Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
}

func TestRedactedURL(t *testing.T) {
	for in, want := range map[string]string{
		"nats://h:4222":                           "nats://h:4222",
		"nats://u:" + password + "@h:4222":        "nats://u:xxxxx@h:4222",
		"tls://" + password + "@h:4222":           "tls://xxxxx@h:4222",
		"nats://u:p@a:1,nats://b:2, nats://t@c:3": "nats://u:xxxxx@a:1,nats://b:2,nats://xxxxx@c:3",
	} {
		if got := (natsconn.Config{URL: in}).RedactedURL(); got != want {
			t.Errorf("RedactedURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestSecretsNeverFormatted: printing, logging or encoding a Config does not
// show its password or token.
func TestSecretsNeverFormatted(t *testing.T) {
	cfg := natsconn.Config{URL: "nats://h", User: "u", Password: password, Token: password}
	var out bytes.Buffer
	slog.New(slog.NewJSONHandler(&out, nil)).Info("config", "nats", cfg, "password", cfg.Password)
	slog.New(slog.NewTextHandler(&out, nil)).Info("config", "nats", cfg, "token", cfg.Token)
	fmt.Fprintf(&out, "%v %+v %#v %s", cfg, cfg, cfg, cfg.Password)
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	out.Write(js)
	if strings.Contains(out.String(), password) {
		t.Fatalf("the secret shows:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "[redacted]") {
		t.Fatalf("no [redacted] marker:\n%s", out.String())
	}
}

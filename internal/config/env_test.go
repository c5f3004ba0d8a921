package config_test

import (
	"bytes"
	"errors"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jetsource/jetsource/internal/config"
)

// inner and outer are a component's configuration and one that nests it.
type inner struct {
	Count int
	Wait  time.Duration
}

func (c inner) Validate() error {
	var errs []error
	if c.Count < 1 {
		errs = append(errs, config.Invalid("Count", c.Count, "must be at least 1"))
	}
	if c.Wait > time.Minute {
		errs = append(errs, config.Invalid("Wait", c.Wait, "must be at most 1m"))
	}
	return errors.Join(errs...)
}

type outer struct {
	Name  string
	URL   string
	Inner inner
	Again int // shares a variable with Inner.Count
	Level slog.Level
}

func (c outer) Validate() error {
	var name error
	if c.Name == "" {
		name = config.Invalid("Name", c.Name, "must be set")
	}
	return errors.Join(name, config.Nest("Inner", c.Inner.Validate()), errors.New("a problem of no field"))
}

func environ(vars ...string) func(string) (string, bool) {
	m := map[string]string{}
	for _, kv := range vars {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func bind(cfg *outer, lookup func(string) (string, bool)) *config.Env {
	env := config.NewEnv(lookup, cfg)
	env.String("X_NAME", "the name", &cfg.Name)
	env.URL("X_URL", "a server", &cfg.URL)
	env.Int("X_COUNT", "how many", &cfg.Inner.Count, &cfg.Again)
	env.Duration("X_WAIT", "how long", &cfg.Inner.Wait)
	env.Level("X_LEVEL", "how loud", &cfg.Level)
	return env
}

func TestEnvSetsFieldsAndLeavesDefaults(t *testing.T) {
	cfg := outer{Inner: inner{Count: 3, Wait: time.Second}}
	env := bind(&cfg, environ("X_NAME=n", "X_COUNT=7", "X_LEVEL=debug"))
	if cfg.Name != "n" || cfg.Inner.Count != 7 || cfg.Again != 7 || cfg.Inner.Wait != time.Second || cfg.Level != slog.LevelDebug {
		t.Fatalf("config %+v", cfg)
	}
	if err := env.Check(nil); err != nil {
		t.Fatal(err)
	}
}

// TestEnvCheckReportsEveryProblemOnceByVariable: parse errors and
// validation errors together, each by its variable and the text as given;
// a field whose variable did not parse is not reported again; a problem of
// two fields bound to one variable appears once; errors of no field pass
// through.
func TestEnvCheckReportsEveryProblemOnceByVariable(t *testing.T) {
	cfg := outer{Inner: inner{Count: 3}}
	env := bind(&cfg, environ("X_COUNT=0", "X_WAIT=soon", "X_LEVEL=loud", "X_URL=nats://u:secret@h:4222,nats://h2:4222"))
	cfg.Inner.Wait = 2 * time.Minute // as if the default were out of range
	err := env.Check(cfg.Validate())
	want := []string{
		`X_WAIT="soon": not a duration such as 500ms, 5s or 1m30s`,
		`X_LEVEL="loud": must be debug, info, warn or error`,
		`X_NAME is unset: must be set`,
		`X_COUNT="0": must be at least 1`,
		`a problem of no field`,
	}
	got := strings.Split(err.Error(), "\n")
	if len(got) != len(want) {
		t.Fatalf("problems:\n%v\nwant:\n%s", err, strings.Join(want, "\n"))
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("missing %q in:\n%v", w, err)
		}
	}
	if strings.Contains(err.Error(), "Wait") {
		t.Errorf("a field that failed to parse is reported again:\n%v", err)
	}
}

func TestEnvMasksPasswords(t *testing.T) {
	cfg := outer{Inner: inner{Count: 1}, Name: "n"}
	env := config.NewEnv(environ("X_URL=postgres://u:secret@h/db?sslmode=x", "X_DSN=host=h password=secret"), &cfg)
	env.URL("X_URL", "", &cfg.URL)
	env.URL("X_DSN", "", &cfg.Name)
	err := env.Check(errors.Join(config.Invalid("URL", cfg.URL, "is wrong"), config.Invalid("Name", cfg.Name, "is wrong")))
	if err == nil || strings.Contains(err.Error(), "secret") || !strings.Contains(err.Error(), `X_URL="postgres://u:xxxxx@h/db?sslmode=x"`) ||
		!strings.Contains(err.Error(), `X_DSN="(not shown: it may hold a password)"`) {
		t.Fatalf("%v", err)
	}
}

func TestEnvOverrideNamesTheFlag(t *testing.T) {
	cfg := outer{Inner: inner{Count: 1}}
	env := bind(&cfg, environ("X_NAME=from-env"))
	cfg.Name = ""
	env.Override("--name", "", &cfg.Name)
	if err := env.Check(cfg.Validate()); err == nil || !strings.Contains(err.Error(), `--name="": must be set`) {
		t.Fatalf("%v", err)
	}
}

func TestEnvUsageShowsDefaultsAsAPersonWritesThem(t *testing.T) {
	cfg := outer{Inner: inner{Count: 3, Wait: 2 * time.Minute}, Level: slog.LevelInfo}
	env := bind(&cfg, environ())
	var out bytes.Buffer
	if err := env.Usage(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`X_NAME\s+-\s+the name`, `X_COUNT\s+3\s+how many`, `X_WAIT\s+2m\s+how long`, `X_LEVEL\s+info\s+how loud`} {
		if !regexp.MustCompile(want).MatchString(out.String()) {
			t.Errorf("usage does not match %s:\n%s", want, out.String())
		}
	}
}

func TestNestAndProblems(t *testing.T) {
	err := config.Nest("Outer", errors.Join(config.Invalid("A", 1, "bad"), errors.Join(config.Invalid("B", 2, "bad"))))
	var paths []string
	for _, p := range config.Problems(err) {
		var fe *config.FieldError
		if errors.As(p, &fe) {
			paths = append(paths, fe.Field)
		}
	}
	if strings.Join(paths, ",") != "Outer.A,Outer.B" {
		t.Fatalf("paths %v", paths)
	}
	if config.Nest("X", nil) != nil {
		t.Fatal("Nest(nil) is not nil")
	}
}

package deploy_test

import (
	"bufio"
	"os"
	"path"
	"regexp"
	"strings"
	"testing"
)

// TestDockerfile reads deploy/Dockerfile line by line (no Docker here) and
// checks what the manifests rely on: a static, stripped build of
// ./cmd/$BINARY and the healthcheck, a distroless final stage running as
// UID 65532, port 9090, and /healthcheck where compose looks for it.
func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	// Join continuation lines, drop comments.
	var instructions []string
	cur := ""
	for line := range strings.Lines(string(data)) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur += strings.TrimSuffix(line, "\\") + " "
			continue
		}
		instructions = append(instructions, cur+line)
		cur = ""
	}

	var stages []string
	for _, in := range instructions {
		if strings.HasPrefix(in, "FROM ") {
			stages = append(stages, in)
		}
	}
	if len(stages) != 2 {
		t.Fatalf("want a build stage and a final stage, got %v", stages)
	}
	if !regexp.MustCompile(`^FROM (--platform=\S+ )?golang:1\.26(\.\d+)?(-\S+)? AS build$`).MatchString(stages[0]) {
		t.Errorf("build stage %q: want golang:1.26 AS build", stages[0])
	}
	if !regexp.MustCompile(`^FROM gcr\.io/distroless/static-debian\d+:nonroot$`).MatchString(stages[1]) {
		t.Errorf("final stage %q: want distroless static nonroot", stages[1])
	}

	final := false
	var build, runtime []string
	for _, in := range instructions {
		if in == stages[1] {
			final = true
		}
		if final {
			runtime = append(runtime, in)
		} else {
			build = append(build, in)
		}
	}
	buildText := strings.Join(build, "\n")
	for _, want := range []string{"CGO_ENABLED=0", "GOTOOLCHAIN=local", "-trimpath", `-ldflags="-s -w"`, "./cmd/$BINARY", "./deploy/healthcheck", "ARG BINARY="} {
		if !strings.Contains(buildText, want) {
			t.Errorf("build stage lacks %s", want)
		}
	}
	for _, want := range []string{"USER 65532:65532", "EXPOSE 9090", `ENTRYPOINT ["/app"]`, "COPY --from=build /out/healthcheck /healthcheck"} {
		if !containsLine(runtime, want) {
			t.Errorf("final stage lacks %q", want)
		}
	}
	for _, in := range runtime {
		if strings.HasPrefix(in, "RUN ") {
			t.Errorf("final stage runs %q, but distroless has no shell", in)
		}
	}
}

// TestDockerignore: the build context keeps what go build needs.
func TestDockerignore(t *testing.T) {
	f, err := os.Open("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var patterns []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" && !strings.HasPrefix(line, "#") {
			patterns = append(patterns, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	needed := []string{"go.mod", "go.sum", "cmd/aggregator/main.go", "cmd/query/main.go", "contract/subject.go", "internal/es/store.go", "deploy/healthcheck/main.go"}
	for _, file := range needed {
		for _, p := range patterns {
			if excludes(p, file) {
				t.Errorf(".dockerignore pattern %q excludes %s, which the build needs", p, file)
			}
		}
	}
	if !containsLine(patterns, ".git") {
		t.Error(".dockerignore should exclude .git")
	}
}

// excludes reports whether a .dockerignore pattern (without ** or !)
// matches file or one of its parent directories.
func excludes(pattern, file string) bool {
	pattern = strings.TrimPrefix(path.Clean(pattern), "/")
	for p := file; p != "." && p != "/"; p = path.Dir(p) {
		if ok, _ := path.Match(pattern, p); ok {
			return true
		}
	}
	return false
}

func containsLine(lines []string, want string) bool {
	for _, l := range lines {
		if l == want {
			return true
		}
	}
	return false
}

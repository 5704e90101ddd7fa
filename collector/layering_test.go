package collector

import (
	"os/exec"
	"strings"
	"testing"
)

// cliPackage is the query CLI. It prints stored events in the agent's own
// JSON schema, so it may use the agent's event types and their protobuf
// mapping (cliAgentDeps), and nothing else of the agent.
const cliPackage = "github.com/watchpost/watchpost/collector/cmd/watchpost"

var cliAgentDeps = map[string]bool{
	"github.com/watchpost/watchpost/agent/event":   true,
	"github.com/watchpost/watchpost/agent/shipper": true,
}

// TestNoAgentImports keeps the collector's binaries and packages independent
// of the agent: shared contracts live in proto/ and internal/. The CLI is
// the one exception, and only for the event schema.
func TestNoAgentImports(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go tool not in PATH")
	}
	list := func(args ...string) []string {
		out, err := exec.Command("go", append([]string{"list"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("go list %v: %v\n%s", args, err, out)
		}
		return strings.Fields(string(out))
	}
	isAgent := func(p string) bool {
		return strings.HasPrefix(p, "github.com/watchpost/watchpost/agent/") || p == "github.com/watchpost/watchpost/agent"
	}
	var server []string
	for _, p := range list("github.com/watchpost/watchpost/collector/...") {
		if p != cliPackage {
			server = append(server, p)
		}
	}
	for _, p := range list(append([]string{"-deps", "-f", "{{.ImportPath}}"}, server...)...) {
		if isAgent(p) {
			t.Errorf("the collector depends on agent package %s", p)
		}
	}
	for _, p := range list("-deps", "-f", "{{.ImportPath}}", cliPackage) {
		if isAgent(p) && !cliAgentDeps[p] {
			t.Errorf("the CLI depends on agent package %s beyond the event schema", p)
		}
	}
}

package collector

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoAgentImports keeps the collector's binaries and packages independent
// of the agent: shared contracts live in proto/ and internal/.
func TestNoAgentImports(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go tool not in PATH")
	}
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", "github.com/watchpost/watchpost/collector/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "github.com/watchpost/watchpost/agent/") || p == "github.com/watchpost/watchpost/agent" {
			t.Errorf("the collector depends on agent package %s", p)
		}
	}
}

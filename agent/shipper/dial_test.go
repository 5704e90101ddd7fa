package shipper

import (
	"strings"
	"testing"
)

func TestDialTarget(t *testing.T) {
	target, opts := dialTarget("collector.plant:7443")
	if target != "collector.plant:7443" || len(opts) != 1 {
		t.Fatalf("one address: %q, %d options (the shuffled pick_first config)", target, len(opts))
	}
	target, opts = dialTarget(" c1.plant:7443, 10.0.0.2:7443 ,")
	if !strings.HasPrefix(target, "watchpost:///") || len(opts) != 2 {
		t.Fatalf("a list: %q, %d options (service config and the resolver)", target, len(opts))
	}
}

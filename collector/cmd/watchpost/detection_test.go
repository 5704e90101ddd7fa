package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/watchpost/watchpost/agent/config"
	"github.com/watchpost/watchpost/collector"
	"github.com/watchpost/watchpost/collector/collectortest"
	"github.com/watchpost/watchpost/internal/agenttest"
)

// requireRoot: the test runs the real agent, which loads eBPF programs.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("WATCHPOST_REQUIRE_PRIVILEGED") == "1" {
		t.Fatal("the test runs the real agent: needs root, and WATCHPOST_REQUIRE_PRIVILEGED=1 forbids skipping")
	}
	t.Skip("the test runs the real agent, which loads eBPF programs: needs root (run `sudo make test`)")
}

const credRule = "wp-host-credential-search"

// search performs the rule's behaviour for real: grep looking for private
// keys under dir/name.
func search(t *testing.T, dir, name string) string {
	t.Helper()
	d := filepath.Join(dir, name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "key"), []byte("-----BEGIN OPENSSH PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("grep", "-r", "-l", "BEGIN OPENSSH PRIVATE KEY", d).CombinedOutput(); err != nil {
		t.Fatalf("grep: %v %s", err, out)
	}
	return d
}

// control raises another rule's alert: once it is seen, every event before
// it has been matched.
func control(t *testing.T, ag *agenttest.Agent, dir, name string) {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("chmod", "4755", p).CombinedOutput(); err != nil {
		t.Fatalf("chmod: %v %s", err, out)
	}
	ag.Wait(t, "wp-host-setuid-file", p)
}

// TestAlertExceptionCLI: a real detection reaches the collector; `watchpost
// alerts except ID --by exe` sends an exception to the agent, which stops
// alerting on the same behaviour within seconds and counts it as
// suppressed; after a restart without the collector, the exception still
// holds; `watchpost exceptions` and `watchpost hosts` show it.
func TestAlertExceptionCLI(t *testing.T) {
	requireRoot(t)
	const id = "gw-cli-except"
	col, pki := collectortest.Loopback(t, []string{id}, func(cfg *collector.Config) {
		cfg.Query.Tokens = []collector.Token{{Name: "soc", Token: readToken, Role: collector.RoleRead}, {Name: "ops", Token: adminToken, Role: collector.RoleAdmin}}
	})
	srv := "--server=" + col.QueryAddr()
	state := t.TempDir()
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ag := agenttest.Start(t, agenttest.Options{ID: id, CollectorAddr: col.Addr(), PKI: pki, CommandsDir: state})

	first := search(t, dir, "first")
	ag.Wait(t, credRule, first)
	var alertID string
	deadline := time.Now().Add(30 * time.Second)
	for alertID == "" {
		out, err := cli(t, "alerts", srv, "--token", readToken, "--rule", credRule, "--technique", "T1552")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, first) {
				alertID = strings.Fields(line)[0]
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the alert never reached the collector:\n%s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	out, err := cli(t, "alerts", "events", alertID, srv, "--token", readToken)
	if err != nil || !strings.Contains(out, "CommandLine = grep -r -l BEGIN OPENSSH PRIVATE KEY "+first) || !strings.Contains(out, "exec") {
		t.Fatalf("alerts events: %v\n%s", err, out)
	}
	if _, err := cli(t, "alerts", "except", alertID, "--by", "exe", srv, "--token", readToken); err == nil || !strings.Contains(err.Error(), "admin") {
		t.Fatalf("a read token added an exception: %v", err)
	}
	sent := time.Now()
	out, err = cli(t, "alerts", "except", alertID, "--by", "exe", "--comment", "key inventory job", srv, "--token", adminToken)
	if err != nil || !regexp.MustCompile(`exception ex-[0-9a-f]+ sent to `+id+` \(command \d+\): rules=`+credRule+` exe=/usr/bin/grep`).MatchString(out) {
		t.Fatalf("alerts except: %v\n%s", err, out)
	}
	for len(ag.App.Detect.RemoteExceptions()) == 0 {
		if time.Since(sent) > 20*time.Second {
			t.Fatal("the agent did not apply the exception")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("exception applied on the agent %s after the CLI sent it", time.Since(sent).Round(time.Millisecond))

	second := search(t, dir, "second")
	control(t, ag, dir, "control-1")
	if got := ag.Find(credRule, second); len(got) != 0 {
		t.Fatalf("alerted despite the exception: %s", got[0].JSON)
	}
	if n := ag.Suppressed(credRule); n != 1 {
		t.Fatalf("suppressed %d, want 1", n)
	}
	// The acknowledgement reaches the collector after the agent applied it.
	deadline = time.Now().Add(20 * time.Second)
	for {
		out, err = cli(t, "exceptions", srv, "--token", readToken)
		if err == nil && strings.Contains(out, id+": applied") && strings.Contains(out, "key inventory job") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("exceptions: %v\n%s", err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The clean stop's last heartbeat carries the count to the collector.
	ag.Stop(t)
	deadline = time.Now().Add(20 * time.Second)
	for {
		hosts, err := col.Store().Hosts(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(hosts) == 1 && len(hosts[0].GetDetection().GetSuppressed()) == 1 && hosts[0].GetDetection().GetSuppressed()[0].Count == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hosts: %v", hosts)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if out, err = cli(t, "hosts", srv, "--token", readToken); err != nil || !strings.Contains(out, "1 suppressed") {
		t.Fatalf("hosts: %v\n%s", err, out)
	}

	// Restarted with no collector at all: the agent's own log holds it.
	ag = agenttest.Start(t, agenttest.Options{ID: id, CommandsDir: state})
	third := search(t, dir, "third")
	control(t, ag, dir, "control-2")
	if got := ag.Find(credRule, third); len(got) != 0 {
		t.Fatalf("alerted after the restart: %s", got[0].JSON)
	}
	if n := ag.Suppressed(credRule); n != 1 {
		t.Fatalf("suppressed %d after the restart, want 1", n)
	}
}

// markerRule is a user rule on `true` run with an argument that contains
// marker.
func markerRule(marker, extra string) string {
	return "title: Plant marker\nid: plant-marker\nlogsource: {product: linux, category: process_creation}\n" +
		"detection:\n  sel:\n    Image|endswith: /true\n    CommandLine|contains: " + marker + "\n" + extra +
		"  condition: sel\nlevel: medium\ntags: [attack.t0807]\n"
}

// TestRulesReloadCLI: a rules directory edited under a running agent
// reloads; an edit that breaks the file keeps its previous version firing
// and reports the file, line and construct in `watchpost hosts` before
// the next regular heartbeat; the fix loads the new version.
func TestRulesReloadCLI(t *testing.T) {
	requireRoot(t)
	const id = "gw-cli-reload"
	col, pki := collectortest.Loopback(t, []string{id}, func(cfg *collector.Config) {
		cfg.Query.Tokens = []collector.Token{{Name: "soc", Token: readToken, Role: collector.RoleRead}}
	})
	srv := "--server=" + col.QueryAddr()
	rules := t.TempDir()
	file := filepath.Join(rules, "plant.yml")
	write := func(body string) time.Time {
		t.Helper()
		// Written whole under another name and renamed, as editors and
		// configuration tools do.
		if err := os.WriteFile(file+".tmp", []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(file+".tmp", file); err != nil {
			t.Fatal(err)
		}
		return time.Now()
	}
	write(markerRule("reload-v1-", ""))
	ag := agenttest.Start(t, agenttest.Options{ID: id, CollectorAddr: col.Addr(), PKI: pki, CommandsDir: t.TempDir(),
		Mutate: func(c *config.Config) { c.Detection.RulesDir = rules }})
	run := func(arg string) {
		t.Helper()
		if out, err := exec.Command("/usr/bin/true", arg).CombinedOutput(); err != nil {
			t.Fatalf("true: %v %s", err, out)
		}
	}
	run("reload-v1-a")
	ag.Wait(t, "plant-marker", "reload-v1-a")

	hosts := func(until func(string) bool, within time.Duration, what string) {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			out, err := cli(t, "hosts", srv, "--token", readToken)
			if err == nil && until(out) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("hosts after %s: %s: %v\n%s", within, what, err, out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// The regular heartbeat comes every 10 s: the error must show sooner.
	broke := write(markerRule("reload-v2-", "  bad:\n    CommandLine|expand: '%x%'\n"))
	want := file + ":9: detection.bad.CommandLine|expand"
	hosts(func(out string) bool { return strings.Contains(out, "1 errors: "+want) }, 8*time.Second, "the load error")
	t.Logf("load error in `watchpost hosts` %s after the edit", time.Since(broke).Round(time.Millisecond))
	if errs := ag.App.Detect.Status().Errors; len(errs) != 1 || !strings.HasPrefix(errs[0], want) {
		t.Fatalf("agent's detection errors %q", errs)
	}
	run("reload-v1-b") // the previous version still holds
	ag.Wait(t, "plant-marker", "reload-v1-b")

	write(markerRule("reload-v3-", ""))
	hosts(func(out string) bool { return strings.Contains(out, id) && !strings.Contains(out, "errors:") }, 8*time.Second, "the error cleared")
	run("reload-v1-c")
	run("reload-v3-d")
	ag.Wait(t, "plant-marker", "reload-v3-d")
	if got := ag.Find("plant-marker", "reload-v1-c"); len(got) != 0 {
		t.Fatalf("the replaced version still fired: %s", got[0].JSON)
	}
}

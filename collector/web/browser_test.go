package web_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"image/color"
	"image/png"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/klauspost/compress/zstd"
	"github.com/rs/zerolog"

	"github.com/watchpost/watchpost/agent/app"
	"github.com/watchpost/watchpost/agent/config"
	"github.com/watchpost/watchpost/agent/shipper"
	"github.com/watchpost/watchpost/collector"
	"github.com/watchpost/watchpost/collector/certs"
	"github.com/watchpost/watchpost/collector/collectortest"
	"github.com/watchpost/watchpost/collector/store"
	"github.com/watchpost/watchpost/collector/web"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

const (
	readToken  = "dashboard-read-token-0123456789"
	adminToken = "dashboard-admin-token-0123456789"
	agentID    = "wp-dashboard-gw"
	// silentID is an agent that sends one heartbeat and an event, then
	// nothing: the overview must show it silent, with its alert.
	silentID = "wp-dashboard-silent"
)

// requireRoot skips without root (the real agent loads eBPF programs),
// unless WATCHPOST_REQUIRE_PRIVILEGED=1 (CI) makes that a failure.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("WATCHPOST_REQUIRE_PRIVILEGED") == "1" {
		t.Fatal("the browser test runs the real agent: needs root, and WATCHPOST_REQUIRE_PRIVILEGED=1 forbids skipping")
	}
	t.Skip("the browser test runs the real agent, which loads eBPF programs: needs root (run `sudo make test`)")
}

// chromiumPath finds Debian's chromium (scripts/install-browser.sh).
func chromiumPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("chromium")
	if err == nil {
		return p
	}
	if os.Getenv("WATCHPOST_REQUIRE_PRIVILEGED") == "1" {
		t.Fatal("chromium is not installed: run scripts/install-browser.sh")
	}
	t.Skip("chromium is not installed: run scripts/install-browser.sh")
	return ""
}

// artifacts is where screenshots go: docs/dashboard in the repository
// with WATCHPOST_SCREENSHOTS=docs (`make screenshots`), else
// $WATCHPOST_ARTIFACTS/dashboard, or a temporary directory.
func artifacts(t *testing.T) string {
	t.Helper()
	if os.Getenv("WATCHPOST_SCREENSHOTS") == "docs" {
		dir := filepath.Join("..", "..", "docs", "dashboard")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	dir := t.TempDir()
	if base := os.Getenv("WATCHPOST_ARTIFACTS"); base != "" {
		dir = filepath.Join(base, "dashboard")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// startCollector runs a collector on loopback with tokens configured, so
// the dashboard requires a login there too.
func startCollector(t *testing.T) (*collector.Collector, string) {
	t.Helper()
	return collectortest.Loopback(t, []string{agentID, silentID}, func(cfg *collector.Config) {
		cfg.Query.Tokens = []collector.Token{{Name: "operator", Token: readToken, Role: collector.RoleRead}, {Name: "admin", Token: adminToken, Role: collector.RoleAdmin}}
	})
}

// startAgent runs the real agent in this process, shipping to c.
func startAgent(t *testing.T, c *collector.Collector, pki string) {
	t.Helper()
	cert, key := certs.AgentFiles(agentID)
	cfg := config.Default()
	cfg.Baseline.Dir = t.TempDir()
	cfg.Host = agentID
	cfg.Output = config.OutputCollector
	cfg.MetricsAddr = ""
	cfg.Collector.Address = c.Addr()
	cfg.Collector.CA = filepath.Join(pki, certs.CAFile)
	cfg.Collector.Cert = filepath.Join(pki, cert)
	cfg.Collector.Key = filepath.Join(pki, key)
	cfg.Kernel.Events = []string{"exec", "exit", "clone", "net_connect", "net_accept", "file_open"}
	// One monitor policy for a program that does not exist: the host
	// details list it, and it never acts.
	cfg.Response.PolicyFile = filepath.Join(t.TempDir(), "policies.yaml")
	doc := "policies:\n  - id: no-absent-tool\n    action: kill_exec\n    selector: {exe: [" + filepath.Join(t.TempDir(), "absent") + "]}\n"
	if err := os.WriteFile(cfg.Response.PolicyFile, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, cfg, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
			app.Options{Ready: func(*app.Agent) { close(ready) }})
	}()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("agent stopped before it was ready: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
	})
}

// offline records what the page asked for: every request outside
// 127.0.0.1 is failed and counted, as are failed loads, exceptions and
// console errors.
type offline struct {
	mu       sync.Mutex
	requests int
	outside  []string
	failed   []string
	errors   []string
}

func (o *offline) add(list *[]string, s string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	*list = append(*list, s)
}

// watch enables interception on the tab of ctx.
func (o *offline) watch(t *testing.T, ctx context.Context) {
	t.Helper()
	if err := chromedp.Listen(ctx, func(ev any) {
		switch e := ev.(type) {
		case *network.EventLoadingFailed:
			if !e.Canceled { // views close their event streams when they change
				o.add(&o.failed, string(e.Type)+": "+e.ErrorText)
			}
		case *runtime.EventExceptionThrown:
			desc := e.ExceptionDetails.Text
			if e.ExceptionDetails.Exception != nil {
				desc += " " + e.ExceptionDetails.Exception.Description
			}
			o.add(&o.errors, "exception: "+desc)
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError {
				o.add(&o.errors, "console.error")
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	paused := chromedp.Events(ctx, fetch.RequestPaused)
	go func() {
		for ev, err := range paused {
			if err != nil {
				return
			}
			u, perr := url.Parse(ev.Request.URL)
			o.mu.Lock()
			o.requests++
			o.mu.Unlock()
			if perr == nil && u.Hostname() == "127.0.0.1" && (u.Scheme == "http" || u.Scheme == "https") {
				_, _ = chromedp.Call(ctx, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: ev.RequestID})
				continue
			}
			o.add(&o.outside, ev.Request.URL)
			_, _ = chromedp.Call(ctx, fetch.FailRequest, fetch.FailRequestParams{RequestID: ev.RequestID, ErrorReason: network.ErrorReasonInternetDisconnected})
		}
	}()
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, fetch.Enable, fetch.EnableParams{Patterns: []*fetch.RequestPattern{{URLPattern: "*"}}}); err != nil {
		t.Fatal(err)
	}
}

func (o *offline) check(t *testing.T, page string) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.outside) != 0 || len(o.failed) != 0 || len(o.errors) != 0 {
		t.Fatalf("%s: requests outside 127.0.0.1 %q, failed loads %q, page errors %q", page, o.outside, o.failed, o.errors)
	}
	if o.requests == 0 {
		t.Fatalf("%s: interception saw no request at all", page)
	}
}

// browser is one test's headless Chromium at 1400x900, offline (no name
// resolves, every request outside 127.0.0.1 fails the test), with the
// steps, polls and screenshots the browser tests share.
type browser struct {
	t     *testing.T
	ctx   context.Context
	o     offline
	shots string
}

// newBrowser starts Chromium for t (stopped at its end); screenshots go
// to shots.
func newBrowser(t *testing.T, chromium, shots string) *browser {
	t.Helper()
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		// No name resolves to anything: the page has only 127.0.0.1.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 900),
	)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil { // starts the browser without a deadline
		t.Fatal(err)
	}
	b := &browser{t: t, ctx: ctx, shots: shots}
	b.o.watch(t, ctx)
	return b
}

// step runs actions within 45 s; on failure it says where the page was,
// what it reported and what it showed.
func (b *browser) step(name string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	sctx, scancel := context.WithTimeout(b.ctx, 45*time.Second)
	defer scancel()
	if err := chromedp.Do(sctx, actions...); err != nil {
		b.o.mu.Lock()
		defer b.o.mu.Unlock()
		loc, _ := chromedp.Run(b.ctx, chromedp.Location())
		body, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText.slice(0, 2000) : ''`))
		b.t.Fatalf("%s: %v (at %s; page errors %q, failed loads %q; page text %q)", name, err, loc, b.o.errors, b.o.failed, body)
	}
}

// eval evaluates a JavaScript expression that yields a list of strings.
func (b *browser) eval(expr string) []string {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]string](expr))
	if err != nil {
		b.t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// shot checks that no table cell wraps a timestamp, saves the page as
// name.png and checks that it is not blank.
func (b *browser) shot(name string) {
	b.t.Helper()
	if bad := b.eval(wrappedTimes); len(bad) != 0 {
		b.t.Fatalf("%s: timestamps wrapped in table cells: %q", name, bad)
	}
	png, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	checkNonBlank(b.t, name, png)
	p := filepath.Join(b.shots, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s", p)
}

// poll waits up to 40 s for a JavaScript expression to be true.
func poll(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(40*time.Second))
}

// checkNonBlank fails unless a screenshot has content: enough distinct
// colours on a grid of samples, and text-dark pixels among them.
func checkNonBlank(t *testing.T, name string, b []byte) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	r := img.Bounds()
	colours := map[color.RGBA]bool{}
	dark := 0
	for y := r.Min.Y; y < r.Max.Y; y += 7 {
		for x := r.Min.X; x < r.Max.X; x += 7 {
			c := color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)
			colours[c] = true
			if int(c.R)+int(c.G)+int(c.B) < 200 {
				dark++
			}
		}
	}
	if r.Dx() < 1000 || len(colours) < 16 || dark < 50 {
		t.Fatalf("screenshot %s looks blank: %dx%d, %d colours, %d dark samples", name, r.Dx(), r.Dy(), len(colours), dark)
	}
}

// wrappedTimes lists table cells in which a timestamp is broken over lines.
const wrappedTimes = `(() => {
  const re = /\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?/g;
  const bad = [];
  for (const td of document.querySelectorAll('td')) {
    if (td.offsetParent === null) continue;
    const w = document.createTreeWalker(td, NodeFilter.SHOW_TEXT);
    for (let n; (n = w.nextNode());) {
      for (const m of n.data.matchAll(re)) {
        const r = document.createRange();
        r.setStart(n, m.index);
        r.setEnd(n, m.index + m[0].length);
        const tops = new Set([...r.getClientRects()].filter(x => x.width > 0).map(x => Math.round(x.top)));
        if (tops.size > 1) bad.push(m[0] + ' in ' + td.textContent.slice(0, 80));
      }
    }
  }
  return bad;
})()`

// overflow reports what sticks out of the window sideways.
const overflow = `(() => {
  const w = document.documentElement.clientWidth;
  const out = [];
  if (document.documentElement.scrollWidth > w) out.push('page ' + document.documentElement.scrollWidth + ' > ' + w);
  for (const t of document.querySelectorAll('table')) {
    const r = t.getBoundingClientRect();
    if (r.width > 0 && r.right > w + 0.5) out.push('#' + t.id + ' right edge ' + r.right + ' > ' + w);
  }
  return out;
})()`

// seedSilentAgent makes silentID a real agent that went quiet: one
// heartbeat (1 s interval, so it is silent after 3 s) and one stored
// health event over mTLS ingest, then nothing.
func seedSilentAgent(t *testing.T, c *collector.Collector, pki string) {
	t.Helper()
	now := time.Now()
	b, err := shipper.NewBatchBuilder(zstd.SpeedFastest)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ev := &watchpostv1.Event{
		Header:  &watchpostv1.Header{Type: watchpostv1.EventType_EVENT_TYPE_HEALTH, TimeUnixNano: now.UnixNano(), Seq: 1, Host: silentID},
		Process: &watchpostv1.Process{Pid: 812, Comm: "watchpost-agent", Exe: "/usr/bin/watchpost-agent"},
		Detail: &watchpostv1.Event_Health{Health: &watchpostv1.Health{Version: "1.0.0", Kernel: "6.1.0-28-amd64", CapturePath: "tracepoint",
			Produced: 1200, Delivered: 1200}},
	}
	if err := b.Add(ev); err != nil {
		t.Fatal(err)
	}
	ingestAs(t, c.Addr(), pki, silentID,
		&watchpostv1.IngestRequest{Msg: &watchpostv1.IngestRequest_Heartbeat{Heartbeat: &watchpostv1.Heartbeat{
			Seq: 1, BootId: "boot-hmi", RunId: "run-hmi", InstanceId: "inst-hmi", Host: silentID, Version: "1.0.0",
			Kernel: "6.1.0-28-amd64", CapturePath: "tracepoint", Programs: []string{"tp_btf/sched_process_exec"},
			IntervalNanos: int64(time.Second), TimeUnixNano: now.UnixNano()}}},
		&watchpostv1.IngestRequest{Msg: &watchpostv1.IngestRequest_Batch{Batch: b.Seal(silentID, "boot-hmi", "run-hmi", 1)}})
}

// TestDashboardInBrowser drives every page of the dashboard in headless
// Chromium at 1400x900 against a real collector fed by the real agent and
// by a seeded agent that went silent: the overview shows the seeded alert
// and the silent host; the alerts page lists, explains and (admin)
// acknowledges and resolves it; a command run on this host appears live
// (after the backfill of an earlier one) with its user and a failed
// connect with its errno name; filtering, pause, search, the process
// view; hosts without sideways overflow at 1280 px and counters on
// demand; the industrial view; the rate chart with a legend entry per
// series; logout. No table cell wraps a timestamp. Each page's screenshot
// is checked for content. The browser may reach 127.0.0.1 only; every
// page must load without any other request or failure.
func TestDashboardInBrowser(t *testing.T) {
	requireRoot(t)
	chromium := chromiumPath(t)
	shots := artifacts(t)
	c, pki := startCollector(t)
	startAgent(t, c, pki)
	seedSilentAgent(t, c, pki)
	base := c.DashboardURL()

	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	marker := "wp-dashboard-" + hex.EncodeToString(rnd[:])

	b := newBrowser(t, chromium, shots)
	ctx, o, step, eval, shot := b.ctx, &b.o, b.step, b.eval, b.shot

	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	rowWith := func(table, s string) string {
		return fmt.Sprintf(`[...document.querySelectorAll('#%s tbody tr')].find(r => r.textContent.includes(%q))`, table, s)
	}
	run := func(args ...string) int {
		t.Helper()
		cmd := exec.Command("/bin/true", args...)
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
		return cmd.Process.Pid
	}
	stored := func(text string) {
		t.Helper()
		deadline := time.Now().Add(40 * time.Second)
		for {
			res, err := c.Store().Query(context.Background(), store.Query{Filter: store.Filter{Text: text}, Limit: 10})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Events) > 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("no stored event with %q", text)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	login := func(token, who string) {
		t.Helper()
		step("login as "+who, chromedp.WaitVisible(chromedp.CSS("#login-form")), chromedp.SetValue(chromedp.CSS("#token"), token),
			chromedp.Click(chromedp.CSS("#login-form button")), chromedp.WaitVisible(chromedp.CSS("#nav")),
			poll(fmt.Sprintf(`document.querySelector('#who').textContent === %q`, who)))
	}

	// The seeded agent is silent once 3 of its 1 s intervals passed, and
	// the collector raised its missed-heartbeat alert.
	var seeded *watchpostv1.Alert
	deadline := time.Now().Add(20 * time.Second)
	for seeded == nil {
		as, err := c.Store().Alerts(context.Background(), store.AlertFilter{AgentID: silentID, Kinds: []watchpostv1.AlertKind{watchpostv1.AlertKind_ALERT_KIND_MISSED_HEARTBEAT}}, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(as) == 1 {
			seeded = as[0]
		} else if time.Now().After(deadline) {
			t.Fatal("no missed-heartbeat alert for the silent agent")
		}
		time.Sleep(100 * time.Millisecond)
	}
	sid := strconv.FormatUint(seeded.Id, 10)

	// Login: a wrong token is refused, the read token gets in, on the overview.
	step("login page", chromedp.Navigate(base), chromedp.WaitVisible(chromedp.CSS("#login-form")))
	shot("login")
	step("wrong token", chromedp.SendKeys(chromedp.CSS("#token"), "not-the-token-0123456789"), chromedp.Click(chromedp.CSS("#login-form button")),
		poll(`document.querySelector('#login-error').textContent === 'unknown token'`))
	login(readToken, "operator (read)")

	// Overview: the seeded alert by severity and host, the silent host.
	step("overview", poll(fmt.Sprintf(`(() => {
		const hi = document.querySelector('#ov-severity a[data-severity=high] .count');
		const a = document.querySelector('#ov-alerts tr[data-agent=%q]');
		const h = document.querySelector('#ov-hosts tr[data-agent=%q][data-status=silent]');
		return hi && Number(hi.textContent) >= 1 && a && a.textContent.includes('missed_heartbeat') && h && h.textContent.includes('no heartbeat for');
	})()`, silentID, silentID)))
	// The host is the certificate identity, as the agent names itself.
	if got := text(fmt.Sprintf(`#ov-alerts tr[data-agent=%q]`, silentID)); !strings.Contains(got, silentID) || !strings.Contains(got, seeded.Message) {
		t.Fatalf("overview alert row %q lacks the host or the message %q", got, seeded.Message)
	}
	if got := text("#ov-hosts-line"); !strings.Contains(got, "2 hosts:") || !strings.Contains(got, "1 silent") {
		t.Fatalf("overview hosts line %q", got)
	}
	shot("overview")

	// Alerts: the seeded alert listed open, its events behind it; a read
	// session cannot triage.
	step("alerts", chromedp.Click(chromedp.CSS(`#ov-alerts tr[data-agent="`+silentID+`"] a[href^="#/alerts"]`)),
		poll(fmt.Sprintf(`(r => r && r.dataset.state === 'open' && r.dataset.severity === 'high')(document.querySelector('#alerts-table tr.alert[data-id="%s"]'))`, sid)))
	if hidden, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector('#triage-bar').hidden`)); !hidden {
		t.Fatal("the triage actions are offered to a read session")
	}
	step("alert events", chromedp.Click(chromedp.CSS(`#alerts-table tr.alert[data-id="`+sid+`"] button.details`)),
		poll(fmt.Sprintf(`(r => r && !r.hidden && r.querySelector('#alert-events-%s tbody tr[data-type=health]'))(document.querySelector('#alerts-table tr.details[data-id="%s"]'))`, sid, sid)))
	if got := text(`#alerts-table tr.details[data-id="` + sid + `"]`); !strings.Contains(got, "Events behind it (1)") || !strings.Contains(got, silentID+" / "+silentID) {
		t.Fatalf("alert details %q", got)
	}
	shot("alerts")

	// Live: an event stored before the page opened is there (backfill),
	// then a command run on this host appears, with its user.
	early := run(marker + "-early")
	stored(marker + "-early")
	step("live backfill", chromedp.Navigate(base+"#/live?type=exec&exe=true"), poll(rowWith("live-table", marker+"-early")),
		poll(`document.querySelector('#live-status').textContent === 'live'`))
	pid := run(marker)
	step("live event", poll(fmt.Sprintf(`document.querySelector('#live-table tbody tr[data-pid="%d"][data-type=exec]')`, pid)))
	row := eval(fmt.Sprintf(`[...document.querySelectorAll('#live-table tbody tr[data-pid="%d"][data-type=exec]')].map(r => r.querySelector('td.user').textContent)`, pid))
	if len(row) != 1 || !strings.HasPrefix(row[0], strconv.Itoa(os.Getuid())) {
		t.Fatalf("user cell of the exec row: %q", row)
	}
	// A failed open shows its errno by name (made by a child: the agent
	// runs in this process and leaves its own events out).
	dir := t.TempDir()
	missing := filepath.Join(dir, marker, "setpoints.csv")
	step("live file opens", chromedp.Navigate(base+"#/live?"+url.Values{"type": {"file_open"}, "path": {dir}}.Encode()),
		poll(`document.querySelector('#live-status').textContent === 'live'`))
	if out, err := exec.Command("/bin/sh", "-c", `: > "$1"`, "sh", missing).CombinedOutput(); err == nil || !strings.Contains(string(out), "nonexistent") {
		t.Fatalf("sh writing %s: %v %s, want it to fail with ENOENT", missing, err, out)
	}
	step("errno name", poll(fmt.Sprintf(`(r => r && r.textContent.includes(%q))(%s)`, missing+" (write) failed: ENOENT", rowWith("live-table", missing))))
	step("live, everything", chromedp.Navigate(base+"#/live"), poll(`document.querySelector('#live-status').textContent === 'live'`),
		poll(`document.querySelectorAll('#live-table tbody tr').length > 20`))
	shot("live")

	// Filter: exec events of "true" only; a second command appears, nothing else.
	step("filter", chromedp.SetValue(chromedp.CSS(`#live-filters input[name=type]`), "exec"),
		chromedp.SetValue(chromedp.CSS(`#live-filters input[name=exe]`), "true"),
		chromedp.Click(chromedp.CSS("#live-filters button[type=submit]")),
		poll(`location.hash === '#/live?type=exec&exe=true' && document.querySelector('#live-status').textContent === 'live'`))
	pid2 := run(marker, "filtered")
	step("filtered event", poll(rowWith("live-table", marker+" filtered")))
	rows := eval(`[...document.querySelectorAll('#live-table tbody tr')].map(r => r.dataset.type + ' ' + r.dataset.host + ' ' + r.dataset.pid)`)
	// The backfill brings the earlier commands of the window too: every
	// row is an exec of true, and the last one is the filtered command.
	if len(rows) == 0 || rows[0] != fmt.Sprintf("exec %s %d", agentID, pid2) {
		t.Fatalf("filtered live rows %q, want exec %s %d first", rows, agentID, pid2)
	}
	for _, r := range rows {
		if !strings.HasPrefix(r, "exec "+agentID+" ") {
			t.Fatalf("filtered live rows %q: not only exec events", rows)
		}
	}

	// Pause holds new events back; resume shows them.
	step("pause", chromedp.Click(chromedp.CSS("#pause")), poll(`document.querySelector('#live-status').textContent === 'paused'`))
	pid3 := run(marker, "paused")
	step("held while paused", poll(`document.querySelector('#live-status').textContent === 'paused · 1 new'`))
	step("resume", chromedp.Click(chromedp.CSS("#pause")), poll(rowWith("live-table", marker+" paused")))

	// Search and the process view of a command: its parent is this test process.
	step("search", chromedp.Navigate(base+"#/search?"+url.Values{"host": {agentID}, "type": {"exec"}, "exe": {"true"}, "text": {marker}}.Encode()),
		poll(`document.querySelectorAll('#search-table tbody tr').length === 4 && document.querySelector('#search-status').textContent === '4 events'`))
	shot("search")
	step("process link", chromedp.Click(chromedp.CSS(fmt.Sprintf(`#search-table tr[data-pid="%d"] a.proc`, pid))),
		chromedp.WaitVisible(chromedp.CSS("#process-title")))
	if got, want := text("#process-title"), fmt.Sprintf("true [%d] on %s", pid, agentID); got != want {
		t.Fatalf("process title %q, want %q", got, want)
	}
	step("ancestry", poll(fmt.Sprintf(`document.querySelector('#ancestry li').textContent.includes('[%d]')`, os.Getpid())))
	if got := text(".kv"); !strings.Contains(got, "/bin/true "+marker) && !strings.Contains(got, "true "+marker) {
		t.Fatalf("process details %q lack the arguments", got)
	}
	shot("process")

	// Hosts: health as the collector stored it from the agent's heartbeats,
	// at a glance; the counters on demand; nothing sideways at 1280 px.
	var host struct{ version, kernel, capture string }
	deadline = time.Now().Add(40 * time.Second)
	for {
		hosts, err := c.Store().Hosts(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var mine *watchpostv1.HostInfo
		for _, h := range hosts {
			if h.AgentId == agentID {
				mine = h
			}
		}
		if mine != nil && mine.Kernel != "" && mine.CapturePath != "" {
			host.version, host.kernel, host.capture = mine.Version, mine.Kernel, mine.CapturePath
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no heartbeat with the agent's health: %v", hosts)
		}
		time.Sleep(500 * time.Millisecond)
	}
	step("hosts at 1280 px", chromedp.EmulateViewport(1280, 900), chromedp.Navigate(base+"#/hosts"),
		poll(fmt.Sprintf(`(r => r && r.textContent.includes(%q) && r.textContent.includes(%q))(document.querySelector('#hosts-table tr.host[data-agent=%q]'))`, host.version, host.capture, agentID)),
		poll(fmt.Sprintf(`document.querySelector('#hosts-table tr.host[data-agent=%q]').dataset.status === 'silent'`, silentID)))
	if out := eval(overflow); len(out) != 0 {
		t.Fatalf("hosts page overflows sideways at 1280 px: %q", out)
	}
	if got := text(fmt.Sprintf(`#hosts-table tr.host[data-agent=%q] td.kernel`, agentID)); got != host.kernel {
		t.Fatalf("kernel cell %q, want %q", got, host.kernel)
	}
	step("host details", chromedp.Click(chromedp.CSS(fmt.Sprintf(`#hosts-table tr.host[data-agent=%q] button.details`, agentID))),
		poll(fmt.Sprintf(`(r => !r.hidden && r.textContent.includes('Counters by kind and reason') && r.textContent.includes(%q))(document.querySelector('#hosts-table tr.details[data-agent=%q]'))`, host.kernel, agentID)))
	if out := eval(overflow); len(out) != 0 {
		t.Fatalf("hosts page with details overflows sideways at 1280 px: %q", out)
	}
	if got := text(fmt.Sprintf(`#hosts-table tr.details[data-agent=%q] tr[data-policy="no-absent-tool"]`, agentID)); !strings.Contains(got, "kill_exec") ||
		!strings.Contains(got, "monitoring") {
		t.Fatalf("host details' policy row %q", got)
	}
	shot("hosts")
	step("back to 1400 px", chromedp.EmulateViewport(1400, 900))

	step("industrial", chromedp.Navigate(base+"#/industrial"), chromedp.WaitVisible(chromedp.CSS("#industrial-filters")),
		poll(`document.querySelectorAll('#view h2').length === 3`))
	shot("industrial")

	// Rates: one legend entry, named, per series drawn (every series the
	// server sends has events in the window); a class broken down by type.
	checkLegend := func(what string) []string {
		t.Helper()
		// The legend lists the series, and the time axis unless it is static.
		got := eval(`[...document.querySelectorAll('#chart .u-legend .u-series')].map(e => e.textContent.trim()).filter(t => t !== 'Time')`)
		drawn := eval(`document.querySelector('#chart').dataset.series.split(',')`)
		if len(got) == 0 || strings.Join(got, ",") != strings.Join(drawn, ",") || slices.Contains(got, "") || slices.Contains(got, "--") {
			t.Fatalf("%s: legend %q, want one entry per series drawn %q", what, got, drawn)
		}
		return got
	}
	step("rates", chromedp.Navigate(base+"#/rates"), poll(`document.querySelector('#chart .uplot canvas') !== null && document.querySelectorAll('#chart .u-legend .u-series').length > 0`))
	if got := checkLegend("every class"); !slices.Contains(got, "process") || !slices.Contains(got, "file") {
		t.Fatalf("class legend %q lacks process or file", got)
	}
	if got := eval(`(s => { s.value = 'process'; s.dispatchEvent(new Event('change')); return [s.value]; })(document.querySelector('#rates-class'))`); len(got) != 1 || got[0] != "process" {
		t.Fatalf("class picker: %q", got)
	}
	step("rates of one class", poll(`location.hash === '#/rates?class=process' && [...document.querySelectorAll('#chart .u-legend .u-series')].some(e => e.textContent.trim() === 'exec')`))
	checkLegend("process by type")
	shot("rates")
	o.check(t, "every view")

	// Logout: the session is gone on the server, not only in the page.
	cookies, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{base}})
	if err != nil || len(cookies.Cookies) != 1 || cookies.Cookies[0].Name != web.CookieName || !cookies.Cookies[0].HTTPOnly ||
		cookies.Cookies[0].SameSite != network.CookieSameSiteStrict {
		t.Fatalf("session cookie before logout: %+v %v", cookies, err)
	}
	old := cookies.Cookies[0].Value
	step("logout", chromedp.Click(chromedp.CSS("#logout")), chromedp.WaitVisible(chromedp.CSS("#login-form")))
	status, err := chromedp.Run(ctx, chromedp.Evaluate[int](`fetch('api/session').then(r => r.status)`, chromedp.EvalAwaitPromise))
	if err != nil || status != http.StatusUnauthorized {
		t.Fatalf("session after logout in the browser: %d %v", status, err)
	}
	req, _ := http.NewRequest(http.MethodGet, base+"api/session", nil)
	req.AddCookie(&http.Cookie{Name: web.CookieName, Value: old})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the old session cookie still works: %d", resp.StatusCode)
	}
	cookies, err = chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{base}})
	if err != nil || len(cookies.Cookies) != 0 {
		t.Fatalf("cookies after logout: %+v %v", cookies, err)
	}

	// Triage as admin: acknowledge the seeded alert with a note, then resolve it.
	login(adminToken, "admin (admin)")
	step("alerts as admin", chromedp.Navigate(base+"#/alerts?agent="+silentID),
		poll(fmt.Sprintf(`!document.querySelector('#triage-bar').hidden && document.querySelector('#alerts-table tr.alert[data-id="%s"]')`, sid)))
	step("acknowledge", chromedp.Click(chromedp.CSS(`#alerts-table tr.alert[data-id="`+sid+`"] input.pick`)),
		chromedp.SetValue(chromedp.CSS("#triage-note"), "HMI 3 powered down for maintenance"),
		chromedp.Click(chromedp.CSS("#triage-ack")),
		poll(fmt.Sprintf(`(r => r && r.dataset.state === 'acknowledged' && r.textContent.includes('by admin'))(document.querySelector('#alerts-table tr.alert[data-id="%s"]'))`, sid)))
	step("resolve", chromedp.Click(chromedp.CSS(`#alerts-table tr.alert[data-id="`+sid+`"] input.pick`)), chromedp.Click(chromedp.CSS("#triage-resolve")),
		poll(fmt.Sprintf(`!document.querySelector('#alerts-table tr.alert[data-id="%s"]')`, sid)))
	as, err := c.Store().Alerts(context.Background(), store.AlertFilter{AgentID: silentID, States: []watchpostv1.AlertState{watchpostv1.AlertState_ALERT_STATE_RESOLVED}}, 10)
	if err != nil || len(as) != 1 || as[0].Id != seeded.Id || as[0].AcknowledgedBy != "admin" || as[0].ResolvedBy != "admin" || as[0].Note != "HMI 3 powered down for maintenance" {
		t.Fatalf("the seeded alert after triage: %v %v", as, err)
	}
	step("resolved list", chromedp.Navigate(base+"#/alerts?state=resolved&agent="+silentID),
		poll(fmt.Sprintf(`(r => r && r.dataset.state === 'resolved')(document.querySelector('#alerts-table tr.alert[data-id="%s"]'))`, sid)))
	o.check(t, "triage")
	t.Logf("pids: %d %d %d %d; marker %s; %d requests, all to 127.0.0.1", early, pid, pid2, pid3, marker, o.requests)
}

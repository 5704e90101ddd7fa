package web_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/rs/zerolog"

	"github.com/watchpost/watchpost/agent/app"
	"github.com/watchpost/watchpost/agent/config"
	"github.com/watchpost/watchpost/collector"
	"github.com/watchpost/watchpost/collector/certs"
	"github.com/watchpost/watchpost/collector/collectortest"
	"github.com/watchpost/watchpost/collector/web"
)

const (
	readToken  = "dashboard-read-token-0123456789"
	adminToken = "dashboard-admin-token-0123456789"
	agentID    = "wp-dashboard-gw"
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

// artifacts is where screenshots go: $WATCHPOST_ARTIFACTS/dashboard, or a
// temporary directory.
func artifacts(t *testing.T) string {
	t.Helper()
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
	return collectortest.Loopback(t, []string{agentID}, func(cfg *collector.Config) {
		cfg.Query.Tokens = []collector.Token{{Name: "operator", Token: readToken, Role: collector.RoleRead}, {Name: "admin", Token: adminToken, Role: collector.RoleAdmin}}
	})
}

// startAgent runs the real agent in this process, shipping to c.
func startAgent(t *testing.T, c *collector.Collector, pki string) {
	t.Helper()
	cert, key := certs.AgentFiles(agentID)
	cfg := config.Default()
	cfg.Host = agentID
	cfg.Output = config.OutputCollector
	cfg.MetricsAddr = ""
	cfg.Collector.Address = c.Addr()
	cfg.Collector.CA = filepath.Join(pki, certs.CAFile)
	cfg.Collector.Cert = filepath.Join(pki, cert)
	cfg.Collector.Key = filepath.Join(pki, key)
	cfg.Kernel.Events = []string{"exec", "exit", "clone", "net_connect", "net_accept"}
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

// TestDashboardInBrowser drives the dashboard in headless Chromium against
// a real collector fed by the real agent: login, a command run on this host
// appearing live, filtering, its process view, host health, search, the
// industrial and rate views, logout. The browser may reach 127.0.0.1 only;
// every page must load without any other request or failure.
func TestDashboardInBrowser(t *testing.T) {
	requireRoot(t)
	chromium := chromiumPath(t)
	shots := artifacts(t)
	c, pki := startCollector(t)
	startAgent(t, c, pki)
	base := c.DashboardURL()

	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	marker := "wp-dashboard-" + hex.EncodeToString(rnd[:])

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
		chromedp.WindowSize(1440, 900),
	)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(alloc)
	defer cancel()
	if err := chromedp.Do(ctx); err != nil { // starts the browser without a deadline
		t.Fatal(err)
	}
	var o offline
	o.watch(t, ctx)

	step := func(name string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, scancel := context.WithTimeout(ctx, 45*time.Second)
		defer scancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			o.mu.Lock()
			defer o.mu.Unlock()
			loc, _ := chromedp.Run(ctx, chromedp.Location())
			body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ''`))
			t.Fatalf("%s: %v (at %s; page errors %q, failed loads %q; page text %q)", name, err, loc, o.errors, o.failed, body)
		}
	}
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		p := filepath.Join(shots, name+".png")
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", p)
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	poll := func(expr string) chromedp.Action[chromedp.Void] {
		return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(40*time.Second))
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

	// Login: a wrong token is refused, the read token gets in.
	step("login page", chromedp.Navigate(base), chromedp.WaitVisible(chromedp.CSS("#login-form")))
	shot("01-login")
	step("wrong token", chromedp.SendKeys(chromedp.CSS("#token"), "not-the-token-0123456789"), chromedp.Click(chromedp.CSS("#login-form button")),
		poll(`document.querySelector('#login-error').textContent === 'unknown token'`))
	step("login", chromedp.SetValue(chromedp.CSS("#token"), readToken), chromedp.Click(chromedp.CSS("#login-form button")),
		chromedp.WaitVisible(chromedp.CSS("#nav")), poll(`document.querySelector('#live-status').textContent === 'live'`))
	if got := text("#who"); got != "operator (read)" {
		t.Fatalf("signed in as %q", got)
	}

	// Live feed: a command run on this host appears.
	pid := run(marker)
	step("live event", poll(rowWith("live-table", marker)))
	shot("02-live")

	// Filter: exec events of "true" only; a second command appears, nothing else.
	step("filter", chromedp.SetValue(chromedp.CSS(`#live-filters input[name=type]`), "exec"),
		chromedp.SetValue(chromedp.CSS(`#live-filters input[name=exe]`), "true"),
		chromedp.Click(chromedp.CSS("#live-filters button[type=submit]")),
		poll(`location.hash === '#/live?type=exec&exe=true' && document.querySelector('#live-status').textContent === 'live'`))
	pid2 := run(marker, "filtered")
	step("filtered event", poll(rowWith("live-table", marker+" filtered")))
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#live-table tbody tr')].map(r => r.dataset.type + ' ' + r.dataset.host + ' ' + r.dataset.pid)`))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{fmt.Sprintf("exec %s %d", agentID, pid2)}; strings.Join(rows, "|") != strings.Join(want, "|") {
		t.Fatalf("filtered live rows %q, want %q", rows, want)
	}
	shot("03-live-filtered")

	// Pause holds new events back; resume shows them.
	step("pause", chromedp.Click(chromedp.CSS("#pause")), poll(`document.querySelector('#live-status').textContent === 'paused'`))
	pid3 := run(marker, "paused")
	step("held while paused", poll(`document.querySelector('#live-status').textContent === 'paused · 1 new'`))
	step("resume", chromedp.Click(chromedp.CSS("#pause")), poll(rowWith("live-table", marker+" paused")))

	// Process view of the first command: its parent is this test process.
	step("open process", chromedp.Navigate(base+"#/search?"+url.Values{"host": {agentID}, "type": {"exec"}, "text": {marker}}.Encode()),
		poll(fmt.Sprintf(`document.querySelectorAll('#search-table tbody tr').length === 3 && document.querySelector('#search-status').textContent === '3 events'`)))
	shot("04-search")
	step("process link", chromedp.Click(chromedp.CSS(fmt.Sprintf(`#search-table tr[data-pid="%d"] a.proc`, pid))),
		chromedp.WaitVisible(chromedp.CSS("#process-title")))
	if got, want := text("#process-title"), fmt.Sprintf("true [%d] on %s", pid, agentID); got != want {
		t.Fatalf("process title %q, want %q", got, want)
	}
	step("ancestry", poll(fmt.Sprintf(`document.querySelector('#ancestry li').textContent.includes('[%d]')`, os.Getpid())))
	if got := text(".kv"); !strings.Contains(got, "/bin/true "+marker) && !strings.Contains(got, "true "+marker) {
		t.Fatalf("process details %q lack the arguments", got)
	}
	shot("05-process")

	// Host health, as the collector stored it from the agent's heartbeats.
	var host struct{ version, kernel, capture string }
	deadline := time.Now().Add(40 * time.Second)
	for {
		hosts, err := c.Store().Hosts(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(hosts) == 1 && hosts[0].Kernel != "" && hosts[0].CapturePath != "" {
			host.version, host.kernel, host.capture = hosts[0].Version, hosts[0].Kernel, hosts[0].CapturePath
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no heartbeat with the agent's health: %v", hosts)
		}
		time.Sleep(500 * time.Millisecond)
	}
	step("hosts", chromedp.Navigate(base+"#/hosts"),
		poll(fmt.Sprintf(`(r => r && r.textContent.includes(%q) && r.textContent.includes(%q))(document.querySelector('#hosts-table tr[data-agent=%q]'))`, host.kernel, host.capture, agentID)))
	row := text(fmt.Sprintf(`#hosts-table tr[data-agent=%q]`, agentID))
	for _, want := range []string{agentID, host.version, host.kernel, host.capture, "ok"} {
		if !strings.Contains(row, want) {
			t.Fatalf("host row %q lacks %q", row, want)
		}
	}
	// The alerts column: "none", or a count with kinds and the latest
	// messages (the real agent may or may not have raised any).
	if head := text(`#hosts-table thead`); !strings.Contains(head, "alerts (24 h)") {
		t.Fatalf("hosts table header %q lacks the alerts column", head)
	}
	if cell := text(fmt.Sprintf(`#hosts-table tr[data-agent=%q] td.alerts`, agentID)); cell != "none" && !strings.Contains(cell, "alert") {
		t.Fatalf("alerts cell of the host row: %q", cell)
	}
	shot("06-hosts")

	step("industrial", chromedp.Navigate(base+"#/industrial"), chromedp.WaitVisible(chromedp.CSS("#industrial-filters")),
		poll(`document.querySelectorAll('#view h2').length === 3`))
	shot("07-industrial")
	step("rates", chromedp.Navigate(base+"#/rates"), poll(`document.querySelector('#chart .uplot canvas') !== null && document.querySelector('.u-legend').textContent.includes('exec')`))
	shot("08-rates")
	o.check(t, "every view")

	// Logout: the session is gone on the server, not only in the page.
	cookies, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{base}})
	if err != nil || len(cookies.Cookies) != 1 || cookies.Cookies[0].Name != web.CookieName || !cookies.Cookies[0].HTTPOnly ||
		cookies.Cookies[0].SameSite != network.CookieSameSiteStrict {
		t.Fatalf("session cookie before logout: %+v %v", cookies, err)
	}
	old := cookies.Cookies[0].Value
	step("logout", chromedp.Click(chromedp.CSS("#logout")), chromedp.WaitVisible(chromedp.CSS("#login-form")))
	shot("09-logged-out")
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
	o.check(t, "logout")
	t.Logf("pids: %d %d %d; marker %s; %d requests, all to 127.0.0.1", pid, pid2, pid3, marker, o.requests)
}

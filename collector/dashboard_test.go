package collector_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/watchpost/watchpost/collector/certs"
	"github.com/watchpost/watchpost/collector/web"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// browser is an HTTP client with a cookie jar, as the dashboard's pages use it.
type browser struct {
	t    *testing.T
	base string // https://127.0.0.1:port or http://...
	c    *http.Client
	csrf string
}

func newBrowser(t *testing.T, base string, tlsCfg *tls.Config) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: tlsCfg}
	t.Cleanup(tr.CloseIdleConnections)
	return &browser{t: t, base: base, c: &http.Client{Jar: jar, Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browser) do(method, path string, body string, hdr map[string]string) (*http.Response, []byte) {
	b.t.Helper()
	req, err := http.NewRequest(method, b.base+path, strings.NewReader(body))
	if err != nil {
		b.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return resp, data
}

func (b *browser) get(path string) (int, []byte) {
	resp, data := b.do(http.MethodGet, path, "", nil)
	return resp.StatusCode, data
}

// post sends JSON with the session's CSRF token.
func (b *browser) post(path, body string) (int, []byte) {
	resp, data := b.do(http.MethodPost, path, body, map[string]string{"Content-Type": "application/json", web.CSRFHeader: b.csrf})
	return resp.StatusCode, data
}

func (b *browser) login(token string) *http.Response {
	b.t.Helper()
	resp, data := b.do(http.MethodPost, "/ui/api/login", `{"token":"`+token+`"}`, map[string]string{"Content-Type": "application/json"})
	if resp.StatusCode != http.StatusOK {
		b.t.Fatalf("login: %d %s", resp.StatusCode, data)
	}
	var s struct{ CSRF string }
	if err := json.Unmarshal(data, &s); err != nil || len(s.CSRF) != 43 {
		b.t.Fatalf("login answer %s: %v", data, err)
	}
	b.csrf = s.CSRF
	return resp
}

func decodeJSON[T any](t *testing.T, data []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("%s: %v", data, err)
	}
	return v
}

func TestDashboardLoginRequiredOffLoopback(t *testing.T) {
	p := newPKI(t)
	cfg := testConfig(t, p, t.TempDir())
	// Not loopback: tokens and TLS are mandatory. The test connects over 127.0.0.1 only.
	cfg.Query.Listen = "0.0.0.0:0"
	cfg.Query.CertFile, cfg.Query.KeyFile = p.file(certs.ServerFile), p.file(certs.ServerKeyFile)
	c := startCollector(t, cfg)
	_, port, _ := net.SplitHostPort(c.QueryAddr())
	pem, err := os.ReadFile(p.file(certs.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	b := newBrowser(t, "https://127.0.0.1:"+port, &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13})
	hostname, _ := os.Hostname()
	if got, want := c.DashboardURL(), "https://"+net.JoinHostPort(hostname, port)+"/ui/"; got != want {
		t.Fatalf("DashboardURL %q, want %q", got, want)
	}

	for _, path := range []string{"/ui/api/session", "/ui/api/hosts", "/ui/api/events", "/ui/api/stream", "/ui/api/process?host=h&pid=1", "/ui/api/industrial", "/ui/api/rates"} {
		if code, body := b.get(path); code != http.StatusUnauthorized || string(body) != `{"error":"login required"}`+"\n" {
			t.Fatalf("%s without a session: %d %s", path, code, body)
		}
	}
	if code, _ := b.get("/ui/"); code != http.StatusOK {
		t.Fatalf("login page: %d", code)
	}
	resp, body := b.do(http.MethodPost, "/ui/api/login", `{"token":"not-a-token-0123456789"}`, map[string]string{"Content-Type": "application/json"})
	if resp.StatusCode != http.StatusUnauthorized || string(body) != `{"error":"unknown token"}`+"\n" || len(resp.Cookies()) != 0 {
		t.Fatalf("bad token: %d %s %v", resp.StatusCode, body, resp.Cookies())
	}
	resp, body = b.do(http.MethodPost, "/ui/api/login", "token="+readToken, map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Fatalf("form login: %d %s", resp.StatusCode, body)
	}

	resp = b.login(readToken)
	ck := resp.Cookies()
	if len(ck) != 1 || ck[0].Name != web.CookieName || !ck[0].HttpOnly || !ck[0].Secure || ck[0].SameSite != http.SameSiteStrictMode ||
		ck[0].Path != "/ui/" || ck[0].MaxAge != 8*3600 || len(ck[0].Value) != 43 {
		t.Fatalf("session cookie %+v", ck)
	}
	code, body := b.get("/ui/api/session")
	if s := decodeJSON[map[string]any](t, body); code != http.StatusOK || s["name"] != "reader" || s["role"] != "read" || s["login_required"] != true || s["csrf"] != b.csrf {
		t.Fatalf("session: %d %s", code, body)
	}
	if code, body := b.get("/ui/api/hosts"); code != http.StatusOK || !strings.HasPrefix(string(body), `{"hosts":[],"health":[],"now_ns":"`) {
		t.Fatalf("hosts with a session: %d %s", code, body)
	}
}

func TestDashboardOpenOnLoopbackWithoutTokens(t *testing.T) {
	p := newPKI(t)
	cfg := testConfig(t, p, t.TempDir())
	cfg.Query.Tokens = nil
	c := startCollector(t, cfg)
	b := newBrowser(t, "http://"+c.QueryAddr(), nil)
	if code, body := b.get("/ui/api/session"); code != http.StatusOK || string(body) != `{"login_required":false,"name":"local","role":"admin"}`+"\n" {
		t.Fatalf("session: %d %s", code, body)
	}
	if code, _ := b.get("/ui/api/hosts"); code != http.StatusOK {
		t.Fatalf("hosts: %d", code)
	}
	resp, body := b.do(http.MethodPost, "/ui/api/login", `{"token":"`+readToken+`"}`, map[string]string{"Content-Type": "application/json"})
	if resp.StatusCode != http.StatusBadRequest || len(resp.Cookies()) != 0 {
		t.Fatalf("login without login: %d %s", resp.StatusCode, body)
	}
	// Without sessions, cross-origin state changes are still refused.
	resp, body = b.do(http.MethodPost, "/ui/api/retention", "{}", map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"})
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site retention: %d %s", resp.StatusCode, body)
	}
	if code, body := b.post("/ui/api/retention", "{}"); code != http.StatusOK || string(body) != "{}" {
		t.Fatalf("same-origin retention: %d %s", code, body)
	}
}

func TestDashboardRoles(t *testing.T) {
	p := newPKI(t)
	c := startCollector(t, testConfig(t, p, t.TempDir()))
	reader := newBrowser(t, "http://"+c.QueryAddr(), nil)
	reader.login(readToken)
	if code, body := reader.post("/ui/api/retention", "{}"); code != http.StatusForbidden || string(body) != `{"error":"role read cannot do this; it needs admin"}`+"\n" {
		t.Fatalf("read role, retention: %d %s", code, body)
	}
	admin := newBrowser(t, "http://"+c.QueryAddr(), nil)
	admin.login(adminToken)
	if code, _ := admin.get("/ui/api/retention"); code != http.StatusMethodNotAllowed {
		t.Fatalf("GET retention: %d", code)
	}
	resp, body := admin.do(http.MethodPost, "/ui/api/retention", "{}", map[string]string{"Content-Type": "application/json"})
	if resp.StatusCode != http.StatusForbidden || string(body) != `{"error":"missing or wrong X-Watchpost-CSRF header"}`+"\n" {
		t.Fatalf("admin without csrf: %d %s", resp.StatusCode, body)
	}
	resp, _ = admin.do(http.MethodPost, "/ui/api/retention", "{}", map[string]string{"Content-Type": "application/json", web.CSRFHeader: admin.csrf, "Sec-Fetch-Site": "cross-site"})
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site admin post: %d", resp.StatusCode)
	}
	if code, body := admin.post("/ui/api/retention", "{}"); code != http.StatusOK || string(body) != "{}" {
		t.Fatalf("admin retention: %d %s", code, body)
	}
	// Logout needs the CSRF token, then deletes the session.
	resp, _ = reader.do(http.MethodPost, "/ui/api/logout", "", nil)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("logout without csrf: %d", resp.StatusCode)
	}
	if code, _ := reader.post("/ui/api/logout", ""); code != http.StatusNoContent {
		t.Fatalf("logout: %d", code)
	}
	if code, _ := reader.get("/ui/api/session"); code != http.StatusUnauthorized {
		t.Fatalf("session after logout: %d", code)
	}
	if code, _ := admin.get("/ui/api/session"); code != http.StatusOK {
		t.Fatalf("another user's session after logout: %d", code)
	}
}

func TestDashboardStaticAssets(t *testing.T) {
	p := newPKI(t)
	c := startCollector(t, testConfig(t, p, t.TempDir()))
	b := newBrowser(t, "http://"+c.QueryAddr(), nil)
	const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
		"font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
	for _, tc := range []struct{ path, file, ctype string }{
		{"/ui/", "web/static/index.html", "text/html; charset=utf-8"},
		{"/ui/static/app.js", "web/static/app.js", "text/javascript; charset=utf-8"},
		{"/ui/static/app.css", "web/static/app.css", "text/css; charset=utf-8"},
		{"/ui/vendor/uplot/uPlot.iife.min.js", "web/vendor/uplot/uPlot.iife.min.js", "text/javascript; charset=utf-8"},
		{"/ui/vendor/uplot/uPlot.min.css", "web/vendor/uplot/uPlot.min.css", "text/css; charset=utf-8"},
		{"/ui/vendor/uplot/LICENSE", "web/vendor/uplot/LICENSE", "text/plain; charset=utf-8"},
	} {
		want, err := os.ReadFile(tc.file)
		if err != nil {
			t.Fatal(err)
		}
		resp, body := b.do(http.MethodGet, tc.path, "", nil)
		h := resp.Header
		if resp.StatusCode != http.StatusOK || h.Get("Content-Type") != tc.ctype || !bytes.Equal(body, want) ||
			h.Get("Content-Security-Policy") != csp || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("X-Frame-Options") != "DENY" {
			t.Fatalf("%s: %d %q csp %q, %d bytes (want %d)", tc.path, resp.StatusCode, h.Get("Content-Type"), h.Get("Content-Security-Policy"), len(body), len(want))
		}
	}
	for _, path := range []string{"/ui/static/nope.js", "/ui/static/", "/ui/vendor/uplot/uPlot.d.ts", "/ui/static/..%2fweb.go"} {
		if code, _ := b.get(path); code != http.StatusNotFound {
			t.Fatalf("%s: %d, want 404", path, code)
		}
	}
	resp, _ := b.do(http.MethodGet, "/", "", nil)
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/ui/" {
		t.Fatalf("/: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	// The page refers to nothing outside the collector.
	for _, f := range []string{"web/static/index.html", "web/static/app.js", "web/static/app.css", "web/vendor/uplot/uPlot.min.css"} {
		data, _ := os.ReadFile(f)
		if bytes.Contains(data, []byte("http://")) || bytes.Contains(data, []byte("https://")) || bytes.Contains(data, []byte("//cdn")) {
			t.Fatalf("%s refers to an outside address", f)
		}
	}
}

// sse reads server-sent events.
type sse struct {
	r    *bufio.Reader
	body io.Closer
}

func (s *sse) next(t *testing.T) (event, data string) {
	t.Helper()
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the stream: %v", err)
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "" && event != "":
			return event, data
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data = strings.TrimPrefix(line, "data: ")
		}
	}
}

func (b *browser) stream(ctx context.Context, query url.Values) *sse {
	b.t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.base+"/ui/api/stream?"+query.Encode(), nil)
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		b.t.Fatalf("stream: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return &sse{r: bufio.NewReader(resp.Body), body: resp.Body}
}

func TestDashboardStreamDeliversEvents(t *testing.T) {
	p := newPKI(t)
	c := startCollector(t, testConfig(t, p, t.TempDir()))
	b := newBrowser(t, "http://"+c.QueryAddr(), nil)
	b.login(readToken)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := b.stream(ctx, url.Values{"host": {"agent-a"}, "type": {"exec"}})
	if ev, data := s.next(t); ev != "ready" || data != "{}" {
		t.Fatalf("first message %q %q", ev, data)
	}
	storeTestBatches(t, c.Addr(), p)
	var seqs []uint64
	for len(seqs) < 100 {
		ev, data := s.next(t)
		if ev != "events" {
			t.Fatalf("message %q %s", ev, data)
		}
		var msg struct {
			Events  []json.RawMessage
			Dropped uint64
		}
		if err := json.Unmarshal([]byte(data), &msg); err != nil || msg.Dropped != 0 {
			t.Fatalf("%s: %v", data, err)
		}
		for _, e := range decodeEvents(t, msg.Events) {
			if e.Header.Type != watchpostv1.EventType_EVENT_TYPE_EXEC || e.Header.Host != "agent-a" || e.Process.Exe != "/usr/sbin/modbusd" {
				t.Fatalf("unexpected event %v", e)
			}
			seqs = append(seqs, e.Header.Seq)
		}
	}
	if len(seqs) != 100 || seqs[0] != 1 || seqs[99] != 397 {
		t.Fatalf("stream got %d events %d..%d, want 100 events 1..397", len(seqs), seqs[0], seqs[len(seqs)-1])
	}
	// Logging out ends the session's streams.
	if code, _ := b.post("/ui/api/logout", ""); code != http.StatusNoContent {
		t.Fatalf("logout: %d", code)
	}
	if ev, _ := s.next(t); ev != "logout" {
		t.Fatalf("after logout: %q", ev)
	}
	if _, err := s.r.ReadByte(); err != io.EOF {
		t.Fatalf("stream still open after logout: %v", err)
	}
	if code, _ := b.get("/ui/api/stream"); code != http.StatusUnauthorized {
		t.Fatalf("stream after logout: %d", code)
	}
}

func TestDashboardSearchPages(t *testing.T) {
	p := newPKI(t)
	c := startCollector(t, testConfig(t, p, t.TempDir()))
	storeTestBatches(t, c.Addr(), p)
	b := newBrowser(t, "http://"+c.QueryAddr(), nil)
	b.login(readToken)
	type page struct {
		Events       []json.RawMessage
		More         bool
		NextBeforeNS string `json:"next_before_ns"`
	}
	seqs := func(pg page) []uint64 {
		var out []uint64
		for _, e := range decodeEvents(t, pg.Events) {
			out = append(out, e.Header.Seq)
		}
		return out
	}
	// exec events of agent-a are seq 1, 5, ... 397 (event i is exec when i%4 == 0).
	q := "/ui/api/events?host=agent-a&type=exec&limit=40"
	var all []uint64
	for n := 0; ; n++ {
		code, body := b.get(q)
		if code != http.StatusOK {
			t.Fatalf("%s: %d %s", q, code, body)
		}
		pg := decodeJSON[page](t, body)
		s := seqs(pg)
		all = append(all, s...)
		if !pg.More {
			if n != 2 || len(s) != 20 || pg.NextBeforeNS != "" {
				t.Fatalf("last page %d has %d events, next %q", n, len(s), pg.NextBeforeNS)
			}
			break
		}
		if len(s) != 40 || pg.NextBeforeNS != strconv.FormatInt(baseTime.Add(time.Duration(s[39]-1)*time.Millisecond).UnixNano(), 10) {
			t.Fatalf("page %d: %d events, next %s", n, len(s), pg.NextBeforeNS)
		}
		q = "/ui/api/events?host=agent-a&type=exec&limit=40&before_ns=" + pg.NextBeforeNS
	}
	if len(all) != 100 {
		t.Fatalf("%d events over the pages", len(all))
	}
	for i, s := range all {
		if want := uint64(397 - 4*i); s != want {
			t.Fatalf("event %d has seq %d, want %d (newest first, no gaps, no repeats)", i, s, want)
		}
	}
	if code, body := b.get("/ui/api/events?pid=x"); code != http.StatusBadRequest || string(body) != `{"error":"pid: \"x\" is not a process id"}`+"\n" {
		t.Fatalf("bad filter: %d %s", code, body)
	}
}

// decodeEvents parses the dashboard's JSON events (protojson, proto names).
func decodeEvents(t *testing.T, raws []json.RawMessage) []*watchpostv1.Event {
	t.Helper()
	out := make([]*watchpostv1.Event, len(raws))
	for i, raw := range raws {
		out[i] = &watchpostv1.Event{}
		if err := protojson.Unmarshal(raw, out[i]); err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
	}
	return out
}

// storePlantBatch stores, for agent-b (host agent-b): pid 7000 forking
// 7001, which execs /opt/plc/writer and opens /dev/ttyUSB0 for writing, and
// pid 7002 opening a packet socket.
func storePlantBatch(t *testing.T, addr string, p pki) {
	t.Helper()
	b := dialIngest(t, addr, agentTLS(t, p.dir, "agent-b"))
	batch := buildBatch(t, "agent-b", 2, 2000, 2004, func(i int, ev *watchpostv1.Event) {
		ev.Industrial = nil
		switch i {
		case 0:
			ev.Header.Type = watchpostv1.EventType_EVENT_TYPE_CLONE
			ev.Process.Pid, ev.Process.Tid = 7000, 7000
			ev.Detail = &watchpostv1.Event_Clone{Clone: &watchpostv1.Clone{ChildPid: 7001, ChildTid: 7001}}
		case 1, 2:
			ev.Process.Pid, ev.Process.Tid, ev.Process.Ppid = 7001, 7001, 7000
			ev.Process.Comm, ev.Process.Exe, ev.Process.Args = "writer", "/opt/plc/writer", []string{"/opt/plc/writer", "--port", "/dev/ttyUSB0"}
			if i == 1 {
				ev.Header.Type = watchpostv1.EventType_EVENT_TYPE_EXEC
				ev.Detail = &watchpostv1.Event_Exec{Exec: &watchpostv1.Exec{Argc: 3}}
				return
			}
			ev.Header.Type = watchpostv1.EventType_EVENT_TYPE_FILE_OPEN
			ev.Detail = &watchpostv1.Event_File{File: &watchpostv1.File{Path: "/dev/ttyUSB0", Write: true, Result: 4, Rdev: "188:0", DevKind: "char"}}
			ev.Industrial = &watchpostv1.Industrial{Fieldbus: "ttyUSB", Device: "/dev/ttyUSB0"}
		case 3:
			ev.Header.Type = watchpostv1.EventType_EVENT_TYPE_NET_SOCKET
			ev.Process.Pid, ev.Process.Tid, ev.Process.Comm, ev.Process.Exe = 7002, 7002, "tcpdump", "/usr/bin/tcpdump"
			ev.Detail = &watchpostv1.Event_Net{Net: &watchpostv1.Net{Family: "packet", Protocol: "eth:0x0003", SockType: "raw"}}
			ev.Industrial = &watchpostv1.Industrial{Sniffing: true}
		}
	})
	if ack, err := b.send(batch); err != nil || ack.Status != watchpostv1.AckStatus_ACK_STATUS_STORED {
		t.Fatalf("plant batch: %v %v", ack, err)
	}
}

func TestDashboardProcessView(t *testing.T) {
	p := newPKI(t)
	c := startCollector(t, testConfig(t, p, t.TempDir()))
	storeTestBatches(t, c.Addr(), p)
	storePlantBatch(t, c.Addr(), p)
	b := newBrowser(t, "http://"+c.QueryAddr(), nil)
	b.login(readToken)
	type view struct {
		Host, BootID string
		PID          uint32
		Process      json.RawMessage
		Ancestry     []json.RawMessage
		Children     []struct {
			PID   uint32
			Event json.RawMessage
		}
		Files, Net []json.RawMessage
		Other      []json.RawMessage
		Truncated  bool
	}
	types := func(raws []json.RawMessage) (out []string) {
		for _, e := range decodeEvents(t, raws) {
			out = append(out, fmt.Sprintf("%d:%s", e.Header.Seq, strings.ToLower(strings.TrimPrefix(e.Header.Type.String(), "EVENT_TYPE_"))))
		}
		return out
	}
	// pid 1001 of agent-a: events 1, 51, ... 351: file opens and exits alternate.
	code, body := b.get("/ui/api/process?host=agent-a&pid=1001")
	if code != http.StatusOK {
		t.Fatalf("process: %d %s", code, body)
	}
	v := decodeJSON[view](t, body)
	if got, want := strings.Join(types(v.Files), " "), "2:file_open 102:file_open 202:file_open 302:file_open"; got != want {
		t.Fatalf("files %q, want %q", got, want)
	}
	if got, want := strings.Join(types(v.Other), " "), "52:exit 152:exit 252:exit 352:exit"; got != want || len(v.Net) != 0 || len(v.Children) != 0 || v.Truncated {
		t.Fatalf("other %q (want %q), net %d, children %d, truncated %v", got, want, len(v.Net), len(v.Children), v.Truncated)
	}
	if string(v.Ancestry[0]) != `{"pid":1,"comm":"systemd","exe":"/usr/lib/systemd/systemd"}` || len(v.Ancestry) != 1 ||
		!strings.Contains(string(v.Process), `"exe":"/usr/sbin/modbusd"`) || v.Host != "agent-a" || v.PID != 1001 {
		t.Fatalf("process %s, ancestry %s", v.Process, v.Ancestry)
	}
	// pid 7000 forked 7001, which exec'd the writer.
	code, body = b.get("/ui/api/process?host=agent-b&pid=7000")
	v = decodeJSON[view](t, body)
	if code != http.StatusOK || len(v.Children) != 1 || v.Children[0].PID != 7001 {
		t.Fatalf("parent: %d %s", code, body)
	}
	if kid := decodeEvents(t, []json.RawMessage{v.Children[0].Event})[0]; kid.Header.Type != watchpostv1.EventType_EVENT_TYPE_EXEC || kid.Process.Exe != "/opt/plc/writer" {
		t.Fatalf("child event %v", kid)
	}
	for path, want := range map[string]int{
		"/ui/api/process?host=agent-b&pid=9999":         http.StatusNotFound,
		"/ui/api/process?pid=7000":                      http.StatusBadRequest,
		"/ui/api/process?host=agent-b&pid=7000&start=1": http.StatusNotFound, // another instance of the pid
	} {
		if code, body := b.get(path); code != want {
			t.Fatalf("%s: %d %s, want %d", path, code, body, want)
		}
	}
}

func TestDashboardIndustrialView(t *testing.T) {
	p := newPKI(t)
	c := startCollector(t, testConfig(t, p, t.TempDir()))
	storeTestBatches(t, c.Addr(), p)
	storePlantBatch(t, c.Addr(), p)
	b := newBrowser(t, "http://"+c.QueryAddr(), nil)
	b.login(readToken)
	code, body := b.get("/ui/api/industrial?since=" + baseTime.Add(-time.Hour).Format(time.RFC3339))
	if code != http.StatusOK {
		t.Fatalf("industrial: %d %s", code, body)
	}
	type actor struct {
		Host, Exe, Comm string
		PID             uint32
	}
	var v struct {
		Flows []struct {
			actor
			Protocol, Peer, Direction string
			Port                      uint32
			Events                    uint64
		}
		Devices []struct {
			actor
			Fieldbus, Device      string
			Opens, Writes, Failed uint64
		}
		Sniffers []struct {
			actor
			Protocol string
			Events   uint64
		}
		NetTruncated, FileTruncated bool `json:"-"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("%+v | %+v | %+v", v.Flows, v.Devices, v.Sniffers)
	// agent-a: net events i%4==2 of 0..399 (last: i=398, pid 1048); agent-b: of 1000..1039 (last: i=1038, pid 1038%50+1000).
	want := "[{actor:{Host:agent-a Exe:/usr/sbin/modbusd Comm:modbusd PID:1048} Protocol:modbus Peer:10.0.0.9 Direction:outbound Port:502 Events:100} " +
		"{actor:{Host:agent-b Exe:/usr/sbin/modbusd Comm:modbusd PID:1038} Protocol:modbus Peer:10.0.0.9 Direction:outbound Port:502 Events:10}] | " +
		"[{actor:{Host:agent-b Exe:/opt/plc/writer Comm:writer PID:7001} Fieldbus:ttyUSB Device:/dev/ttyUSB0 Opens:1 Writes:1 Failed:0}] | " +
		"[{actor:{Host:agent-b Exe:/usr/bin/tcpdump Comm:tcpdump PID:7002} Protocol:packet/eth:0x0003 Events:1}]"
	if got != want {
		t.Fatalf("industrial view\n got %s\nwant %s", got, want)
	}
	if code, body := b.get("/ui/api/industrial?host=agent-b&protocol=dnp3&since=" + baseTime.Add(-time.Hour).Format(time.RFC3339)); code != http.StatusOK ||
		!strings.HasPrefix(string(body), `{"flows":[],"devices":[{`) {
		t.Fatalf("dnp3 on agent-b: %d %s", code, body)
	}
}

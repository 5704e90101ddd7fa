package collector_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// request sends an HTTP request to the query listener with the given Host
// and extra headers; it returns the status and body.
func request(t *testing.T, method, url, host string, hdr map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestDNSRebindingRefused performs a DNS rebinding attack on the no-token
// loopback listener: a page of attacker.example whose name now resolves to
// 127.0.0.1 reads events and posts to the retention endpoint. Its Host
// header is refused on every path (API, dashboard, metrics); a browser's
// cross-site POST with a loopback Host is refused too; the operator's own
// requests (localhost, 127.0.0.1, an allowed name) work.
func TestDNSRebindingRefused(t *testing.T) {
	p := newPKI(t)
	cfg := testConfig(t, p, t.TempDir())
	cfg.Query.Tokens = nil // loopback without tokens: open to local callers
	cfg.Query.AllowedHosts = []string{"collector.plant.local"}
	c := startCollector(t, cfg)
	storeTestBatches(t, c.Addr(), p)
	defer http.DefaultClient.CloseIdleConnections()
	base := "http://" + c.QueryAddr()
	_, port, _ := strings.Cut(c.QueryAddr(), ":")

	refused := 0
	for _, tc := range []struct{ method, path string }{
		{"GET", "/api/v1/events"}, {"GET", "/api/v1/hosts"}, {"POST", "/api/v1/retention"}, {"POST", "/api/v1/alerts"},
		{"POST", "/api/v1/exceptions"}, {"GET", "/ui/api/events"}, {"POST", "/ui/api/retention"}, {"GET", "/metrics"},
	} {
		code, body := request(t, tc.method, base+tc.path, "attacker.example:"+port, nil)
		if code != http.StatusForbidden || !strings.Contains(body, `host \"attacker.example:`+port+`\" is not one this loopback listener answers for`) {
			t.Fatalf("%s %s with Host attacker.example: %d %s", tc.method, tc.path, code, body)
		}
		refused++
	}
	// The same request from a cross-site page with a loopback Host (the
	// browser sends Sec-Fetch-Site and Origin): refused without effect.
	for _, hdr := range []map[string]string{
		{"Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"},
		{"Origin": "http://attacker.example", "Content-Type": "text/plain"},
	} {
		for _, path := range []string{"/api/v1/retention", "/api/v1/alerts", "/api/v1/exceptions"} {
			if code, body := request(t, "POST", base+path, "", hdr); code != http.StatusForbidden {
				t.Fatalf("cross-origin POST %s %v: %d %s", path, hdr, code, body)
			}
		}
	}
	for _, host := range []string{"", "localhost:" + port, "[::1]:" + port, "collector.plant.local:" + port, "LOCALHOST."} {
		if code, body := request(t, "GET", base+"/api/v1/events?limit=2", host, nil); code != http.StatusOK || !strings.Contains(body, `"events"`) {
			t.Fatalf("GET with Host %q: %d %s", host, code, body)
		}
	}
	if code, body := request(t, "POST", base+"/api/v1/retention", "", map[string]string{"Sec-Fetch-Site": "same-origin"}); code != http.StatusOK {
		t.Fatalf("same-origin POST: %d %s", code, body)
	}
	if got := c.Stats().QueryRefused["host"]; got != uint64(refused) {
		t.Fatalf("query refused for the host: %d, want %d", got, refused)
	}
	if got := storedCount(t, c.Store(), "agent-a"); got != 400 {
		t.Fatalf("agent-a events after the attack: %d, want 400", got)
	}
}

// TestTokenGuessingThrottled guesses bearer tokens against the query API
// over gRPC and HTTP: the first auth_failure_burst wrong tokens are
// answered Unauthenticated, every later one ResourceExhausted (HTTP 429)
// without being compared, and the valid token keeps working meanwhile.
func TestTokenGuessingThrottled(t *testing.T) {
	p := newPKI(t)
	cfg := testConfig(t, p, t.TempDir())
	cfg.Query.AuthFailuresPerSecond = 0.001 // no refill during the test
	cfg.Query.AuthFailureBurst = 5
	c := startCollector(t, cfg)
	conn, err := grpc.NewClient(c.QueryAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	q := watchpostv1.NewQueryServiceClient(conn)
	codesSeen := map[codes.Code]int{}
	for i := 0; i < 40; i++ {
		ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer guess-"+strings.Repeat("x", i)+"-0123456789")
		_, err := q.ListHosts(ctx, &watchpostv1.ListHostsRequest{})
		codesSeen[status.Code(err)]++
	}
	if codesSeen[codes.Unauthenticated] != 5 || codesSeen[codes.ResourceExhausted] != 35 {
		t.Fatalf("40 guesses: %v, want 5 Unauthenticated and 35 ResourceExhausted", codesSeen)
	}
	ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+readToken)
	if _, err := q.ListHosts(ctx, &watchpostv1.ListHostsRequest{}); err != nil {
		t.Fatalf("the valid token during the attack: %v", err)
	}
	defer http.DefaultClient.CloseIdleConnections()
	code, body := request(t, "GET", "http://"+c.QueryAddr()+"/api/v1/hosts", "", map[string]string{"Authorization": "Bearer guess-http-0123456789"})
	if code != http.StatusTooManyRequests || !strings.Contains(body, "too many unknown tokens") {
		t.Fatalf("HTTP guess: %d %s", code, body)
	}
	if got := c.Stats().QueryRefused["auth_throttled"]; got != 36 {
		t.Fatalf("throttled guesses counted: %d, want 36", got)
	}
}

// TestTimeBoundsOutOfRange: --until 9999-... (past what an int64 of
// nanoseconds holds) is a clear error naming the parameter, not an empty
// result.
func TestTimeBoundsOutOfRange(t *testing.T) {
	p := newPKI(t)
	c := startCollector(t, testConfig(t, p, t.TempDir()))
	defer http.DefaultClient.CloseIdleConnections()
	for param, want := range map[string]string{
		"until=9999-12-31T00:00:00Z": `until: \"9999-12-31T00:00:00Z\" is outside 1970-01-01T00:00:00Z .. 2262-04-11T23:47:16Z`,
		"since=1600-01-01T00:00:00Z": `since: \"1600-01-01T00:00:00Z\" is outside`,
	} {
		code, body := request(t, "GET", "http://"+c.QueryAddr()+"/api/v1/events?"+param, "", map[string]string{"Authorization": "Bearer " + readToken})
		if code != http.StatusBadRequest || !strings.Contains(body, want) {
			t.Fatalf("%s: %d %s", param, code, body)
		}
	}
}

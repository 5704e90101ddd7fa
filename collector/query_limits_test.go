package collector_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/watchpost/watchpost/collector"
	"github.com/watchpost/watchpost/collector/store"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// floodTinyBatches sends n batches of per events from agent (sequence
// numbers from seq) on one stream without waiting for each ack, and
// returns once all are acknowledged as stored.
func floodTinyBatches(t *testing.T, cl *ingestClient, agent string, seq uint64, n, per int, mutate func(i int, ev *watchpostv1.Event)) {
	t.Helper()
	sent := make(chan error, 1)
	go func() {
		for k := range n {
			b := buildBatch(t, agent, seq+uint64(k), k*per, (k+1)*per, func(i int, ev *watchpostv1.Event) {
				if mutate != nil {
					mutate(k*per+i, ev)
				}
			})
			if err := cl.stream.Send(&watchpostv1.IngestRequest{Msg: &watchpostv1.IngestRequest_Batch{Batch: b}}); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	for k := range n {
		resp, err := cl.stream.Recv()
		if err != nil {
			t.Fatalf("ack %d of %d: %v", k, n, err)
		}
		if a := resp.GetAck(); a == nil || a.Status != watchpostv1.AckStatus_ACK_STATUS_STORED {
			t.Fatalf("ack %d of %d: %v", k, n, resp)
		}
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
}

// TestQueriesBoundedUnderATinyBatchFlood performs finding 5 of the hostile
// gateway review: agent-a floods the store with 4,000 batches of 5 events,
// then 100-year text searches and every other client read (the gRPC
// query API, the HTTP API, the dashboard's views) are fired 4 times each,
// all at once, while agent-b keeps sending. Every request answers within
// query.timeout (plus the time to encode the answer): the searches with
// the newest events found in max_scan_rows rows, marked cost_limited, or
// refused ResourceExhausted naming query.max_concurrent or query.timeout;
// every refusal is counted; agent-b's batches are all acknowledged and
// stored meanwhile.
func TestQueriesBoundedUnderATinyBatchFlood(t *testing.T) {
	p := newPKI(t)
	cfg := testConfig(t, p, t.TempDir())
	cfg.Query.Tokens = nil // loopback without tokens: the CLI, the API and the dashboard open to local callers
	cfg.Query.Timeout = 500 * time.Millisecond
	cfg.Query.MaxConcurrent = 2
	cfg.Query.MaxLimit = 1000
	cfg.Query.MaxScanRows = 5000
	c := startCollector(t, cfg)
	defer http.DefaultClient.CloseIdleConnections()

	// The flood, with one detection alert (event 2, naming event 1) for
	// the alert paths.
	const batches, per = 4000, 5
	var ref *watchpostv1.EventRef
	floodTinyBatches(t, dialIngest(t, c.Addr(), agentTLS(t, p.dir, "agent-a")), "agent-a", 1, batches, per, func(i int, ev *watchpostv1.Event) {
		switch i {
		case 1:
			ref = &watchpostv1.EventRef{Seq: ev.Header.Seq, Type: ev.Header.Type, TimeUnixNano: ev.Header.TimeUnixNano, BootNs: ev.Header.BootNs, Pid: ev.Process.Pid}
		case 2:
			ev.Header.Type = watchpostv1.EventType_EVENT_TYPE_ALERT
			ev.Detail = &watchpostv1.Event_Alert{Alert: &watchpostv1.DetectionAlert{RuleId: "wp-test-1", Title: "test rule", Level: "high",
				Source: "pack:host", Events: []*watchpostv1.EventRef{ref}}}
		}
	})
	if n := storedCount(t, c.Store(), "agent-a"); n != batches*per {
		t.Fatalf("agent-a: %d events stored, want %d", n, batches*per)
	}
	q := queryClient(t, c.QueryAddr())
	la, err := q.ListAlerts(context.Background(), &watchpostv1.ListAlertsRequest{Kinds: []watchpostv1.AlertKind{watchpostv1.AlertKind_ALERT_KIND_DETECTION}})
	if err != nil || len(la.Alerts) != 1 {
		t.Fatalf("detection alerts: %v %v", la, err)
	}
	alertID := la.Alerts[0].Id

	now := time.Now()
	since, until := now.AddDate(-50, 0, 0), now.AddDate(50, 0, 0)
	search := &watchpostv1.EventFilter{Text: "no such text", SinceUnixNano: since.UnixNano(), UntilUnixNano: until.UnixNano()}
	hs := url.Values{"text": {"no such text"}, "since": {since.UTC().Format(time.RFC3339)}, "until": {until.UTC().Format(time.RFC3339)}}.Encode()
	base := "http://" + c.QueryAddr()

	// A request's outcome: nil (answered), or its gRPC status.
	type outcome struct {
		path string
		took time.Duration
		st   *status.Status
		// searched: a text search's answer, checked for its cost bound.
		costLimited bool
		rows        uint64
		searched    bool
	}
	grpcCall := func(path string, call func(ctx context.Context) (*watchpostv1.QueryEventsResponse, error)) func() outcome {
		return func() outcome {
			start := time.Now()
			resp, err := call(context.Background())
			o := outcome{path: path, took: time.Since(start), st: status.Convert(err)}
			if err == nil && resp != nil {
				o.searched, o.costLimited, o.rows = true, resp.CostLimited, resp.RowsScanned
			}
			return o
		}
	}
	httpCall := func(path string) func() outcome {
		return func() outcome {
			start := time.Now()
			resp, err := http.Get(base + path)
			if err != nil {
				t.Errorf("%s: %v", path, err)
				return outcome{path: path}
			}
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			o := outcome{path: path, took: time.Since(start), st: status.New(codes.OK, "")}
			switch resp.StatusCode {
			case http.StatusOK:
				if strings.Contains(path, "text=") {
					var out struct {
						CostLimited bool   `json:"cost_limited"`
						Rows        string `json:"rows_scanned"`
					}
					if err := json.Unmarshal(body, &out); err != nil {
						t.Errorf("%s: %v", path, err)
					}
					o.searched, o.costLimited = true, out.CostLimited
					_, _ = fmt.Sscan(out.Rows, &o.rows)
				}
			case http.StatusTooManyRequests:
				var e struct {
					Message string `json:"message"`
					Error   string `json:"error"`
				}
				_ = json.Unmarshal(body, &e)
				o.st = status.New(codes.ResourceExhausted, e.Message+e.Error)
			default:
				o.st = status.New(codes.Unknown, fmt.Sprintf("HTTP %d: %s", resp.StatusCode, body))
			}
			return o
		}
	}
	none := func(path string, call func(ctx context.Context) error) func() outcome {
		return grpcCall(path, func(ctx context.Context) (*watchpostv1.QueryEventsResponse, error) { return nil, call(ctx) })
	}
	requests := []func() outcome{
		grpcCall("grpc QueryEvents", func(ctx context.Context) (*watchpostv1.QueryEventsResponse, error) {
			return q.QueryEvents(ctx, &watchpostv1.QueryEventsRequest{Filter: search, Limit: 100})
		}),
		none("grpc ListAlerts", func(ctx context.Context) error {
			_, err := q.ListAlerts(ctx, &watchpostv1.ListAlertsRequest{SinceUnixNano: since.UnixNano(), UntilUnixNano: until.UnixNano()})
			return err
		}),
		none("grpc AlertEvents", func(ctx context.Context) error {
			_, err := q.AlertEvents(ctx, &watchpostv1.AlertEventsRequest{AlertId: alertID})
			return err
		}),
		none("grpc ListHosts", func(ctx context.Context) error {
			_, err := q.ListHosts(ctx, &watchpostv1.ListHostsRequest{})
			return err
		}),
		none("grpc ListExceptions", func(ctx context.Context) error {
			_, err := q.ListExceptions(ctx, &watchpostv1.ListExceptionsRequest{})
			return err
		}),
		httpCall("/api/v1/events?" + hs),
		httpCall("/api/v1/alerts?since=" + url.QueryEscape(since.UTC().Format(time.RFC3339))),
		httpCall(fmt.Sprintf("/api/v1/alerts/%d/events", alertID)),
		httpCall("/api/v1/hosts"),
		httpCall("/api/v1/exceptions"),
		httpCall("/ui/api/events?" + hs),
		httpCall("/ui/api/alert-list"),
		httpCall(fmt.Sprintf("/ui/api/alert-events?id=%d", alertID)),
		httpCall("/ui/api/overview"),
		httpCall("/ui/api/hosts"),
		httpCall("/ui/api/process?host=agent-a&pid=1001"),
		httpCall("/ui/api/industrial?since=" + url.QueryEscape(since.UTC().Format(time.RFC3339))),
	}

	// agent-b sends one batch at a time for as long as the queries run.
	b := dialIngest(t, c.Addr(), agentTLS(t, p.dir, "agent-b"))
	stop := make(chan struct{})
	var bSent int
	var bSlowest time.Duration
	bDone := make(chan struct{})
	go func() {
		defer close(bDone)
		for seq := uint64(1); ; seq++ {
			select {
			case <-stop:
				return
			default:
			}
			start := time.Now()
			ack, err := b.send(buildBatch(t, "agent-b", seq, int(seq)*10, int(seq)*10+10, nil))
			if err != nil || ack.Status != watchpostv1.AckStatus_ACK_STATUS_STORED {
				t.Errorf("agent-b batch %d: %v %v", seq, ack, err)
				return
			}
			bSent += 10
			bSlowest = max(bSlowest, time.Since(start))
		}
	}()

	const copies = 4
	outs := make(chan outcome, copies*len(requests))
	var wg sync.WaitGroup
	for range copies {
		for _, r := range requests {
			wg.Add(1)
			go func() { defer wg.Done(); outs <- r() }()
		}
	}
	wg.Wait()
	close(stop)
	<-bDone
	close(outs)

	refused, answered, searches := 0, 0, 0
	for o := range outs {
		if o.took > cfg.Query.Timeout+750*time.Millisecond {
			t.Errorf("%s took %v, beyond query.timeout %v", o.path, o.took, cfg.Query.Timeout)
		}
		switch o.st.Code() {
		case codes.OK:
			answered++
			if o.searched {
				searches++
				if !o.costLimited || o.rows > cfg.Query.MaxScanRows {
					t.Errorf("%s: a 100-year search over %d events answered with cost_limited %v after %d rows; want cost_limited within %d rows",
						o.path, batches*per, o.costLimited, o.rows, cfg.Query.MaxScanRows)
				}
			}
		case codes.ResourceExhausted:
			refused++
			if m := o.st.Message(); !strings.Contains(m, "query.max_concurrent (2)") && !strings.Contains(m, "query.timeout (500ms)") {
				t.Errorf("%s refused without naming the limit: %q", o.path, m)
			}
		default:
			t.Errorf("%s: %v", o.path, o.st)
		}
	}
	s := c.Stats().QueryRefused
	t.Logf("%d requests: %d answered (%d searches cost-limited), %d refused (max_concurrent %d, timeout %d); agent-b: %d events, slowest ack %v",
		copies*len(requests), answered, searches, refused, s["max_concurrent"], s["timeout"], bSent, bSlowest)
	if got := s["max_concurrent"] + s["timeout"]; got != uint64(refused) {
		t.Errorf("refusals counted %d, seen %d", got, refused)
	}
	if bSent == 0 || bSlowest > time.Second {
		t.Errorf("agent-b: %d events acknowledged, slowest ack %v; want acks within 1s while the queries run", bSent, bSlowest)
	}
	if n := storedCount(t, c.Store(), "agent-b"); n != bSent {
		t.Errorf("agent-b: %d events stored, %d acknowledged", n, bSent)
	}
}

// stuckStore is a store whose client reads, once stuck is set, take as
// long as their context lets them; a text search for "hold" takes until
// release is closed, whatever its context.
type stuckStore struct {
	store.Store
	stuck            atomic.Bool
	holding, release chan struct{}
}

func (s *stuckStore) wait(ctx context.Context) error {
	if !s.stuck.Load() {
		return nil
	}
	<-ctx.Done()
	return ctx.Err()
}

func (s *stuckStore) Query(ctx context.Context, q store.Query) (store.QueryResult, error) {
	if s.stuck.Load() && q.Filter.Text == "hold" {
		close(s.holding)
		<-s.release
		return store.QueryResult{}, ctx.Err()
	}
	if err := s.wait(ctx); err != nil {
		return store.QueryResult{}, err
	}
	return s.Store.Query(ctx, q)
}

func (s *stuckStore) Alerts(ctx context.Context, f store.AlertFilter, limit int) ([]*watchpostv1.Alert, error) {
	if err := s.wait(ctx); err != nil {
		return nil, fmt.Errorf("listing alerts: %w", err)
	}
	return s.Store.Alerts(ctx, f, limit)
}

func (s *stuckStore) AlertByID(ctx context.Context, id uint64) (*watchpostv1.Alert, error) {
	if err := s.wait(ctx); err != nil {
		return nil, err
	}
	return s.Store.AlertByID(ctx, id)
}

func (s *stuckStore) Hosts(ctx context.Context) ([]*watchpostv1.HostInfo, error) {
	if err := s.wait(ctx); err != nil {
		return nil, err
	}
	return s.Store.Hosts(ctx)
}

func (s *stuckStore) Commands(ctx context.Context, agentID string) ([]store.StoredCommand, error) {
	if err := s.wait(ctx); err != nil {
		return nil, err
	}
	return s.Store.Commands(ctx, agentID)
}

// TestEveryClientReadIsBounded: with a store whose reads never finish on
// their own, every request that reads it for a client (the gRPC query
// API, the HTTP API, the dashboard's views) is refused ResourceExhausted
// within query.timeout: first while another request holds the only
// query.max_concurrent slot ("query.max_concurrent (1)"), then while its
// own read outlasts the deadline ("query.timeout (300ms)"); each refusal
// is counted by its reason. A request that skipped the limits would hang.
func TestEveryClientReadIsBounded(t *testing.T) {
	p := newPKI(t)
	cfg := testConfig(t, p, t.TempDir())
	cfg.Query.Tokens = nil
	cfg.Query.Timeout = 300 * time.Millisecond
	cfg.Query.MaxConcurrent = 1
	sq, err := store.OpenSQLite(filepath.Join(t.TempDir(), "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sq.Close() })
	st := &stuckStore{Store: sq, holding: make(chan struct{}), release: make(chan struct{})}
	c, err := collector.New(cfg, collector.Deps{Logger: zerolog.Nop(), Store: st})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Shutdown(context.Background()) })
	defer http.DefaultClient.CloseIdleConnections()
	storeTestBatches(t, c.Addr(), p)
	q := queryClient(t, c.QueryAddr())
	base := "http://" + c.QueryAddr()
	hc := &http.Client{Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()

	type path struct {
		name string
		call func(ctx context.Context) error
	}
	grpcPath := func(name string, call func(ctx context.Context) error) path { return path{name, call} }
	httpPath := func(u string) path {
		return path{u, func(ctx context.Context) error {
			resp, err := hc.Get(base + u)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			var e struct{ Message, Error string }
			_ = json.Unmarshal(body, &e)
			if resp.StatusCode == http.StatusTooManyRequests {
				return status.Error(codes.ResourceExhausted, e.Message+e.Error)
			}
			return fmt.Errorf("HTTP %d: %s", resp.StatusCode, body)
		}}
	}
	paths := []path{
		grpcPath("grpc QueryEvents", func(ctx context.Context) error {
			_, err := q.QueryEvents(ctx, &watchpostv1.QueryEventsRequest{Filter: &watchpostv1.EventFilter{Text: "modbusd"}})
			return err
		}),
		grpcPath("grpc ListAlerts", func(ctx context.Context) error {
			_, err := q.ListAlerts(ctx, &watchpostv1.ListAlertsRequest{})
			return err
		}),
		grpcPath("grpc AlertEvents", func(ctx context.Context) error {
			_, err := q.AlertEvents(ctx, &watchpostv1.AlertEventsRequest{AlertId: 1})
			return err
		}),
		grpcPath("grpc ListHosts", func(ctx context.Context) error {
			_, err := q.ListHosts(ctx, &watchpostv1.ListHostsRequest{})
			return err
		}),
		grpcPath("grpc ListExceptions", func(ctx context.Context) error {
			_, err := q.ListExceptions(ctx, &watchpostv1.ListExceptionsRequest{})
			return err
		}),
		grpcPath("grpc AddException", func(ctx context.Context) error {
			_, err := q.AddException(ctx, &watchpostv1.AddExceptionRequest{AlertId: 1})
			return err
		}),
		grpcPath("grpc BaselineCommand", func(ctx context.Context) error {
			_, err := q.BaselineCommand(ctx, &watchpostv1.BaselineCommandRequest{Action: &watchpostv1.BaselineCommandRequest_AllowAlertId{AllowAlertId: 1}})
			return err
		}),
		httpPath("/api/v1/events?text=modbusd"),
		httpPath("/api/v1/alerts"),
		httpPath("/api/v1/alerts/1/events"),
		httpPath("/api/v1/hosts"),
		httpPath("/api/v1/exceptions"),
		httpPath("/ui/api/events?text=modbusd"),
		httpPath("/ui/api/alerts"),
		httpPath("/ui/api/alert-list"),
		httpPath("/ui/api/alert-events?id=1"),
		httpPath("/ui/api/overview"),
		httpPath("/ui/api/hosts"),
		httpPath("/ui/api/process?host=agent-a&pid=1001"),
		httpPath("/ui/api/industrial"),
	}
	st.stuck.Store(true)
	run := func(phase, want string) {
		t.Helper()
		for _, pa := range paths {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			start := time.Now()
			err := pa.call(ctx)
			took := time.Since(start)
			cancel()
			if s := status.Convert(err); s.Code() != codes.ResourceExhausted || !strings.Contains(s.Message(), want) {
				t.Errorf("%s, %s: %v; want ResourceExhausted naming %s", phase, pa.name, err, want)
			}
			if took > cfg.Query.Timeout+500*time.Millisecond {
				t.Errorf("%s, %s: answered after %v; query.timeout is %v", phase, pa.name, took, cfg.Query.Timeout)
			}
		}
	}

	// One search holds the only slot.
	held := make(chan error, 1)
	go func() {
		_, err := q.QueryEvents(context.Background(), &watchpostv1.QueryEventsRequest{Filter: &watchpostv1.EventFilter{Text: "hold"}})
		held <- err
	}()
	<-st.holding
	run("slot held", "query.max_concurrent (1) requests kept the store busy for all of query.timeout (300ms)")
	close(st.release)
	if err := <-held; status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "query: took longer than query.timeout (300ms)") {
		t.Fatalf("the holder: %v", err)
	}
	run("reads stuck", "took longer than query.timeout (300ms)")
	s := c.Stats().QueryRefused
	if s["max_concurrent"] != uint64(len(paths)) || s["timeout"] != uint64(len(paths))+1 {
		t.Errorf("refusals counted %v; want max_concurrent %d, timeout %d", s, len(paths), len(paths)+1)
	}
}

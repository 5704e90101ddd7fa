package collector_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/watchpost/watchpost/agent/event"
	"github.com/watchpost/watchpost/agent/shipper"
	"github.com/watchpost/watchpost/collector"
	"github.com/watchpost/watchpost/collector/certs"
	"github.com/watchpost/watchpost/collector/store"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

const (
	readToken  = "read-token-0123456789"
	adminToken = "admin-token-0123456789"
)

// pki is a CA with certificates for two agents, plus a second, unrelated CA.
type pki struct {
	dir, otherDir string
}

func newPKI(t testing.TB) pki {
	t.Helper()
	p := pki{dir: filepath.Join(t.TempDir(), "pki"), otherDir: filepath.Join(t.TempDir(), "other")}
	for _, d := range []string{p.dir, p.otherDir} {
		if err := certs.Generate(certs.Options{Dir: d, Agents: []string{"agent-a", "agent-b"}, Hosts: []string{"127.0.0.1", "localhost"}}); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func (p pki) file(name string) string { return filepath.Join(p.dir, name) }

func testConfig(t testing.TB, p pki, dataDir string) collector.Config {
	cfg := collector.DefaultConfig()
	cfg.DataDir = dataDir
	cfg.Ingest.Listen = "127.0.0.1:0"
	cfg.Ingest.CertFile = p.file(certs.ServerFile)
	cfg.Ingest.KeyFile = p.file(certs.ServerKeyFile)
	cfg.Ingest.ClientCAFile = p.file(certs.CAFile)
	cfg.Query.Listen = "127.0.0.1:0"
	cfg.Query.Tokens = []collector.Token{{Name: "reader", Token: readToken, Role: collector.RoleRead}, {Name: "admin", Token: adminToken, Role: collector.RoleAdmin}}
	cfg.ShutdownTimeout = 5 * time.Second
	return cfg
}

func startCollector(t testing.TB, cfg collector.Config) *collector.Collector {
	t.Helper()
	c, err := collector.New(cfg, collector.Deps{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Shutdown(context.Background()) })
	return c
}

// agentTLS is the client TLS config of agent name, from dir's CA.
func agentTLS(t testing.TB, dir, name string) *tls.Config {
	t.Helper()
	cert, key := certs.AgentFiles(name)
	cfg, err := shipper.ClientTLS(filepath.Join(dir, certs.CAFile), filepath.Join(dir, cert), filepath.Join(dir, key), "")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// ingestClient is a raw ingest stream for tests that craft batches.
type ingestClient struct {
	conn   *grpc.ClientConn
	stream grpc.BidiStreamingClient[watchpostv1.IngestRequest, watchpostv1.IngestResponse]
}

func dialIngest(t testing.TB, addr string, tlsCfg *tls.Config) *ingestClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := watchpostv1.NewIngestServiceClient(conn).Ingest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &ingestClient{conn: conn, stream: st}
}

// send sends a batch and returns the ack, or the stream's error.
func (c *ingestClient) send(b *watchpostv1.Batch) (*watchpostv1.Ack, error) {
	if err := c.stream.Send(&watchpostv1.IngestRequest{Msg: &watchpostv1.IngestRequest_Batch{Batch: b}}); err != nil && err != io.EOF {
		return nil, err
	}
	resp, err := c.stream.Recv()
	if err != nil {
		return nil, err
	}
	return resp.GetAck(), nil
}

var baseTime = time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)

// testEvent is event i of a deterministic mix of kinds.
func testEvent(i int, host string) *event.Event {
	ev := &event.Event{
		Time: baseTime.Add(time.Duration(i) * time.Millisecond), BootNS: uint64(1e9 + i), Seq: uint64(i + 1), Host: host, CPU: uint32(i % 2),
		Process: event.Process{PID: uint32(1000 + i%50), PPID: 1, UID: 0, LoginUID: 1000, SessionID: 3, Comm: "modbusd",
			Exe: "/usr/sbin/modbusd", Args: []string{"modbusd", "-c", "/etc/modbusd.conf"}, Cwd: "/"},
		Ancestry: []event.Ancestor{{PID: 1, Comm: "systemd", Exe: "/usr/lib/systemd/systemd"}},
	}
	switch i % 4 {
	case 0:
		ev.Kind = event.KindExec
		ev.Exec = &event.Exec{Argc: 3, ExeInode: 42, ExeDev: "8:1"}
	case 1:
		ev.Kind = event.KindFileOpen
		ev.File = &event.File{Path: fmt.Sprintf("/var/lib/plc/project-%d.st", i), Flags: 0x241, Write: true, Result: 3}
	case 2:
		ev.Kind = event.KindNetConnect
		ev.Net = &event.Net{Family: "inet", Protocol: "tcp", SrcAddr: "10.0.0.5", SrcPort: uint16(40000 + i%1000), DstAddr: "10.0.0.9", DstPort: 502, Direction: "outbound"}
		ev.Industrial = &event.Industrial{Protocol: "modbus"}
	case 3:
		ev.Kind = event.KindExit
		ev.Exit = &event.Exit{Code: 0, LifetimeNS: 5e6}
	}
	return ev
}

// buildBatch encodes events [from, to) into one batch.
func buildBatch(t testing.TB, agent string, seq uint64, from, to int, mutate func(i int, ev *watchpostv1.Event)) *watchpostv1.Batch {
	t.Helper()
	b, err := shipper.NewBatchBuilder(zstd.SpeedFastest)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var pev watchpostv1.Event
	for i := from; i < to; i++ {
		shipper.ToProto(testEvent(i, agent), &pev)
		if mutate != nil {
			mutate(i-from, &pev)
		}
		if err := b.Add(&pev); err != nil {
			t.Fatal(err)
		}
	}
	return b.Seal(agent, "boot-1", "run-1", seq)
}

// storedCount is the number of events stored for an agent.
func storedCount(t testing.TB, s store.Store, agent string) int {
	t.Helper()
	res, err := s.Query(context.Background(), store.Query{Filter: store.Filter{AgentID: agent}, Limit: 1_000_000})
	if err != nil {
		t.Fatal(err)
	}
	return len(res.Events)
}

func hostsCount(t testing.TB, s store.Store) int {
	t.Helper()
	h, err := s.Hosts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return len(h)
}

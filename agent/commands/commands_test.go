package commands_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/watchpost/watchpost/agent/commands"
	"github.com/watchpost/watchpost/agent/detect"
	"github.com/watchpost/watchpost/agent/shipper"
	"github.com/watchpost/watchpost/collector"
	"github.com/watchpost/watchpost/collector/certs"
	"github.com/watchpost/watchpost/collector/collectortest"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// agent is the command side of an agent: a detection engine, the command
// log and a shipper connected to the collector.
type agent struct {
	eng *detect.Engine
	log *commands.Log
	shp *shipper.Shipper
}

func startAgent(t *testing.T, col *collector.Collector, pki, id, state string) *agent {
	t.Helper()
	eng, err := detect.New(detect.Config{Packs: detect.Packs(), Host: id}, detect.Deps{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := commands.Open(state, zerolog.Nop(), eng.CommandHandler())
	if err != nil {
		t.Fatal(err)
	}
	cert, key := certs.AgentFiles(id)
	s, err := shipper.New(shipper.Config{Address: col.Addr(), AgentID: id, Host: id, BootID: "boot-1",
		CAFile: filepath.Join(pki, certs.CAFile), CertFile: filepath.Join(pki, cert), KeyFile: filepath.Join(pki, key),
		HeartbeatInterval: 100 * time.Millisecond, BackoffInitial: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond},
		shipper.Deps{Logger: zerolog.Nop(), Commands: cl})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	a := &agent{eng: eng, log: cl, shp: s}
	t.Cleanup(a.stop)
	return a
}

func (a *agent) stop() {
	if a.shp != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = a.shp.Shutdown(ctx)
		_ = a.log.Close()
		a.shp = nil
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ids(list []detect.Exception) []string {
	var out []string
	for _, e := range list {
		out = append(out, e.ID)
	}
	return out
}

// TestCommandChannel sends exceptions to a real agent stream over mutual
// TLS: to one agent and to every agent, delivered, applied, acknowledged
// and persisted; replayed after a restart without the collector; sent
// again to an agent that was offline when they were issued; removed; and
// dropped when the agent meets a collector with another epoch.
func TestCommandChannel(t *testing.T) {
	col, pki := collectortest.Loopback(t, []string{"gw1", "gw2"}, nil)
	conn, err := grpc.NewClient(col.QueryAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	q := watchpostv1.NewQueryServiceClient(conn)
	ctx := context.Background()
	state1, state2 := t.TempDir(), t.TempDir()

	gw1 := startAgent(t, col, pki, "gw1", state1)
	add := func(req *watchpostv1.AddExceptionRequest) *watchpostv1.AddExceptionResponse {
		t.Helper()
		resp, err := q.AddException(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	r1 := add(&watchpostv1.AddExceptionRequest{AgentId: "gw1", Exception: &watchpostv1.DetectionException{
		Id: "backup", Rules: []string{"wp-host-bulk-delete"}, Exe: []string{"/usr/bin/restic"}}})
	waitFor(t, "gw1 to apply its exception", func() bool { return len(gw1.eng.RemoteExceptions()) == 1 })
	if got := gw1.eng.RemoteExceptions()[0]; got.ID != "backup" || got.Exe[0] != "/usr/bin/restic" || got.Origin != "command 1 by local" {
		t.Fatalf("applied exception %+v", got)
	}
	// Acknowledged: the collector lists the delivery.
	waitFor(t, "the acknowledgement", func() bool {
		l, err := q.ListExceptions(ctx, &watchpostv1.ListExceptionsRequest{AgentId: "gw1"})
		return err == nil && len(l.Exceptions) == 1 && len(l.Exceptions[0].Deliveries) == 1 &&
			l.Exceptions[0].Deliveries[0].Status == watchpostv1.CommandStatus_COMMAND_STATUS_APPLIED
	})
	// An agent-invalid exception is refused by the agent and says why.
	bad := add(&watchpostv1.AddExceptionRequest{AgentId: "gw1", Exception: &watchpostv1.DetectionException{Id: "bad", Peer: []string{"not-an-address"}}})
	waitFor(t, "the refusal", func() bool {
		l, _ := q.ListExceptions(ctx, &watchpostv1.ListExceptionsRequest{AgentId: "gw1"})
		for _, e := range l.GetExceptions() {
			if e.CommandSeq == bad.CommandSeq && len(e.Deliveries) == 1 {
				return e.Deliveries[0].Status == watchpostv1.CommandStatus_COMMAND_STATUS_FAILED && e.Deliveries[0].Message != ""
			}
		}
		return false
	})
	// An exception for every agent, issued while gw2 is offline.
	add(&watchpostv1.AddExceptionRequest{AllAgents: true, Exception: &watchpostv1.DetectionException{Id: "fleet", Unit: []string{"backup.service"}}})
	waitFor(t, "gw1 to apply the fleet exception", func() bool { return len(gw1.eng.RemoteExceptions()) == 2 })
	gw2 := startAgent(t, col, pki, "gw2", state2)
	waitFor(t, "gw2, offline when it was issued, to get it", func() bool { return len(gw2.eng.RemoteExceptions()) == 1 })
	if got := ids(gw2.eng.RemoteExceptions()); got[0] != "fleet" {
		t.Fatalf("gw2 exceptions %v", got)
	}

	// Restart gw1 with the collector unreachable: the log replays both.
	gw1.stop()
	eng, err := detect.New(detect.Config{Packs: detect.Packs(), Host: "gw1"}, detect.Deps{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := commands.Open(state1, zerolog.Nop(), eng.CommandHandler())
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(eng.RemoteExceptions()); len(got) != 2 || got[0] != "backup" || got[1] != "fleet" {
		t.Fatalf("replayed exceptions %v", got)
	}
	epoch, applied := cl.State()
	_ = cl.Close()
	if epoch == "" || applied < r1.CommandSeq {
		t.Fatalf("replayed state: epoch %q applied %d", epoch, applied)
	}

	// Back online: a removal arrives and applies once.
	gw1 = startAgent(t, col, pki, "gw1", state1)
	if got := len(gw1.eng.RemoteExceptions()); got != 2 {
		t.Fatalf("%d exceptions after the restart", got)
	}
	if _, err := q.RemoveException(ctx, &watchpostv1.RemoveExceptionRequest{Id: "backup"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the removal", func() bool { return len(gw1.eng.RemoteExceptions()) == 1 })
	l, err := q.ListExceptions(ctx, &watchpostv1.ListExceptionsRequest{})
	if err != nil || len(l.Exceptions) != 2 { // fleet, and the refused one
		t.Fatalf("exceptions in force: %v %v", l, err)
	}

	// Another collector (a new store: another epoch) clears what the old
	// one ordered.
	gw1.stop()
	col2, pki2 := collectortest.Loopback(t, []string{"gw1"}, nil)
	gw1 = startAgent(t, col2, pki2, "gw1", state1)
	waitFor(t, "the new epoch to clear the exceptions", func() bool {
		e, _ := gw1.log.State()
		return len(gw1.eng.RemoteExceptions()) == 0 && e != epoch && e != ""
	})
	if _, err := os.Stat(filepath.Join(state1, "commands.log")); err != nil {
		t.Fatal(err)
	}
}

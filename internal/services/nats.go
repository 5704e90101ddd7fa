package services

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// NATSServerVersion is the nats-server release the fleet is tested with.
const NATSServerVersion = "v2.15.2"

// NATSServerBinary returns the nats-server program: $WATCHPOST_NATS_SERVER,
// or the one built from github.com/nats-io/nats-server/v2 at
// NATSServerVersion into the user's cache directory, building it the first
// time (announced on stderr; about a minute).
func NATSServerBinary(ctx context.Context) (string, error) {
	if p := os.Getenv("WATCHPOST_NATS_SERVER"); p != "" {
		return p, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "watchpost", "nats-server-"+NATSServerVersion)
	bin := filepath.Join(dir, "nats-server")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("nats-server %w and no go tool to build it: set WATCHPOST_NATS_SERVER", ErrMissing)
	}
	fmt.Fprintf(os.Stderr, "building nats-server %s into %s (once)\n", NATSServerVersion, dir)
	cmd := exec.CommandContext(ctx, gobin, "install", "github.com/nats-io/nats-server/v2@"+NATSServerVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
	cmd.Dir = os.TempDir() // outside any module: the project's go.mod is not touched
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building nats-server: %w\n%s", err, out)
	}
	return bin, nil
}

// NATSNode is one nats-server process of a cluster.
type NATSNode struct {
	Name        string
	Port        int // clients
	ClusterPort int
	LeafPort    int    // leaf node connections from sites
	Dir         string // JetStream store
	conf        string
	bin         string
	p           *proc
}

// NATSCluster is a JetStream cluster of nats-server processes on loopback.
type NATSCluster struct {
	Nodes []*NATSNode
	dir   string
}

// StartNATSCluster starts n nodes (1 for a single JetStream server, 3 for
// an R3 cluster) under a new directory in parent ("" for a temporary one).
// Each node also accepts leaf node connections (LeafPort).
func StartNATSCluster(ctx context.Context, parent string, n int) (*NATSCluster, error) {
	return startNATS(ctx, parent, n, "", nil)
}

// StartNATSSite starts one JetStream node in its own domain, connected as
// a leaf node to the hub cluster: a plant's node.
func StartNATSSite(ctx context.Context, parent, domain string, hub *NATSCluster) (*NATSCluster, error) {
	return startNATS(ctx, parent, 1, domain, hub)
}

func startNATS(ctx context.Context, parent string, n int, domain string, hub *NATSCluster) (*NATSCluster, error) {
	bin, err := NATSServerBinary(ctx)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(parent, "wp-nats-")
	if err != nil {
		return nil, fmt.Errorf("creating the nats directory: %w", err)
	}
	c := &NATSCluster{dir: dir}
	for i := 0; i < n; i++ {
		node := &NATSNode{Name: fmt.Sprintf("n%d", i+1), bin: bin}
		if node.Port, err = FreePort(); err == nil {
			if node.ClusterPort, err = FreePort(); err == nil {
				node.LeafPort, err = FreePort()
			}
		}
		if err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
		if domain != "" {
			node.Name = domain
		}
		node.Dir = filepath.Join(dir, node.Name)
		node.conf = filepath.Join(dir, node.Name+".conf")
		c.Nodes = append(c.Nodes, node)
	}
	for _, node := range c.Nodes {
		var routes []string
		for _, o := range c.Nodes {
			if o != node {
				routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", o.ClusterPort))
			}
		}
		js := ""
		if domain != "" {
			js = fmt.Sprintf("  domain: %s\n", domain)
		}
		conf := fmt.Sprintf("server_name: %s\nlisten: 127.0.0.1:%d\nmax_payload: 8MB\n"+
			"jetstream {\n%s  store_dir: %q\n  max_file_store: 4GB\n  max_memory_store: 64MB\n}\n", node.Name, node.Port, js, node.Dir)
		if hub != nil {
			var remotes []string
			for _, h := range hub.Nodes {
				remotes = append(remotes, fmt.Sprintf("\"nats-leaf://127.0.0.1:%d\"", h.LeafPort))
			}
			conf += fmt.Sprintf("leafnodes {\n  reconnect: 1s\n  remotes: [ { urls: [%s] } ]\n}\n", strings.Join(remotes, ", "))
		} else {
			conf += fmt.Sprintf("leafnodes {\n  listen: 127.0.0.1:%d\n}\n", node.LeafPort)
		}
		if n > 1 {
			conf += fmt.Sprintf("cluster {\n  name: watchpost\n  listen: 127.0.0.1:%d\n  routes: [%s]\n}\n",
				node.ClusterPort, strings.Join(routes, ", "))
		}
		if err := os.WriteFile(node.conf, []byte(conf), 0o600); err != nil {
			c.Close()
			return nil, fmt.Errorf("writing %s: %w", node.conf, err)
		}
	}
	for i := range c.Nodes {
		if err := c.Start(ctx, i); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// Start starts node i (again, after Kill or Stop: same ports and store).
func (c *NATSCluster) Start(ctx context.Context, i int) error {
	node := c.Nodes[i]
	p, err := startProc(exec.Command(node.bin, "-c", node.conf))
	if err != nil {
		return err
	}
	node.p = p
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := waitTCP(ctx, "127.0.0.1:"+strconv.Itoa(node.Port), p.exited); err != nil {
		p.stop(syscall.SIGKILL, 0)
		return fmt.Errorf("nats-server %s: %w\n%s", node.Name, err, p.log.String())
	}
	return nil
}

// Kill ends node i with SIGKILL.
func (c *NATSCluster) Kill(i int) { c.Nodes[i].p.stop(syscall.SIGKILL, 0) }

// URLs are the client URLs of every node.
func (c *NATSCluster) URLs() []string {
	var out []string
	for _, n := range c.Nodes {
		out = append(out, fmt.Sprintf("nats://127.0.0.1:%d", n.Port))
	}
	return out
}

// Log is what node i printed.
func (c *NATSCluster) Log(i int) string { return c.Nodes[i].p.log.String() }

// Close stops every node and removes the directory.
func (c *NATSCluster) Close() {
	for _, n := range c.Nodes {
		n.p.stop(syscall.SIGTERM, 10*time.Second)
	}
	_ = os.RemoveAll(c.dir)
}

// Pids are the running nodes' process ids.
func (c *NATSCluster) Pids() []int {
	var out []int
	for _, n := range c.Nodes {
		out = append(out, n.p.pid())
	}
	return out
}

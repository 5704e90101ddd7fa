// Package container attributes events to containers: the container id and
// runtime from the process's cgroup path, and, where a runtime's API is
// reachable (the containerd socket, a CRI socket), the image, the
// container's name and its pod's name and namespace.
//
// The pipeline calls Enrich for every event. It never blocks: the cgroup
// of an unseen cgroup id is read once from /proc (a small file), and
// runtime metadata is looked up by a background goroutine fed through a
// bounded queue. Metadata the runtime announces (containerd's container
// create events, its container list at start) is cached before the
// container's first process runs. Everything is bounded; a runtime that is
// absent or does not know a container leaves the fields empty.
package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/watchpost/watchpost/agent/event"
)

// Runtime kinds a socket can speak.
const (
	KindContainerd = "containerd" // containerd's own API (ctr, nerdctl, Kubernetes on containerd, Docker's moby namespace)
	KindCRI        = "cri"        // the Kubernetes CRI (CRI-O, or containerd's CRI plugin)
)

// Runtime is one runtime API socket.
type Runtime struct {
	Kind string `yaml:"kind"`
	Path string `yaml:"path"`
}

// Config configures attribution.
type Config struct {
	Enabled  bool
	Runtimes []Runtime
	// CacheSize bounds the containers remembered (with their metadata).
	CacheSize int
	// LookupTimeout bounds one call to a runtime.
	LookupTimeout time.Duration
	// ProcRoot is the host's /proc (the cgroup of each process is read there).
	ProcRoot string
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Enabled: true,
		Runtimes: []Runtime{
			{Kind: KindContainerd, Path: "/run/containerd/containerd.sock"},
			{Kind: KindCRI, Path: "/var/run/crio/crio.sock"},
		},
		CacheSize:     4096,
		LookupTimeout: 2 * time.Second,
		ProcRoot:      "/proc",
	}
}

// Validate names the bad setting.
func (c Config) Validate() error {
	if !c.Enabled {
		return nil
	}
	if c.CacheSize < 16 {
		return fmt.Errorf("container.cache_size: %d is below 16", c.CacheSize)
	}
	if c.LookupTimeout < 10*time.Millisecond || c.LookupTimeout > time.Minute {
		return fmt.Errorf("container.lookup_timeout: %s is not between 10ms and 1m", c.LookupTimeout)
	}
	for i, r := range c.Runtimes {
		if r.Kind != KindContainerd && r.Kind != KindCRI {
			return fmt.Errorf("container.runtimes[%d].kind: %q is not containerd or cri", i, r.Kind)
		}
		if !filepath.IsAbs(r.Path) {
			return fmt.Errorf("container.runtimes[%d].path: %q is not an absolute path", i, r.Path)
		}
	}
	return nil
}

// Meta is what a runtime says about a container.
type Meta struct {
	Image        string
	Name         string
	PodName      string
	PodNamespace string
}

// Stats counts the resolver's work.
type Stats struct {
	Containers    int    // containers known now
	CgroupReads   uint64 // /proc/PID/cgroup files read
	CgroupMisses  uint64 // events whose process was gone before its cgroup could be read
	Lookups       uint64 // runtime lookups made
	LookupErrors  uint64 // lookups that failed (runtime unreachable, timeout)
	LookupUnknown uint64 // lookups no runtime knew the container for
	Prefetched    uint64 // containers announced by a runtime before their first event
	QueueFull     uint64 // lookups not queued because the queue was full (retried later)
	Evictions     uint64 // cache resets at the bound
}

// entry is one container as the pipeline sees it. meta is written by the
// lookup goroutine and read with one atomic load per event.
type entry struct {
	loc       Location
	meta      atomic.Pointer[Meta]
	requested atomic.Int64 // unix nanoseconds of the last lookup request, 0: none
}

// retryAfter is how long a container no runtime knew waits before it is
// looked up again.
const retryAfter = 30 * time.Second

// notContainer marks cgroups that hold no container.
var notContainer = &entry{}

// perProcess marks cgroup ids that do not identify the container (cgroup v1
// hosts: the unified hierarchy holds every container in one cgroup).
var perProcess = &entry{}

type pidKey struct {
	pid   uint32
	start uint64
}

// Resolver attributes events to containers.
type Resolver struct {
	cfg Config
	log zerolog.Logger

	// Owned by the pipeline goroutine (Enrich).
	byCgroup map[uint64]*entry
	byPID    map[pidKey]*entry
	byID     map[string]*entry

	// Metadata announced by runtimes, taken by Enrich when the container
	// is first seen.
	mu    sync.Mutex
	known map[string]*Meta

	queue    chan *entry
	runtimes []client
	stats    struct {
		cgroupReads, cgroupMisses, lookups, lookupErrors, lookupUnknown,
		prefetched, queueFull, evictions atomic.Uint64
	}
	containers atomic.Int64

	cancel context.CancelFunc
	group  *errgroup.Group
	stop   sync.Once
}

// client is one runtime API.
type client interface {
	// Lookup returns the container's metadata, or found=false.
	Lookup(ctx context.Context, loc Location) (m Meta, found bool, err error)
	// Watch announces containers (those that exist, then new ones) until
	// ctx ends; runtimes without an event stream return at once.
	Watch(ctx context.Context, announce func(id string, m Meta)) error
	Close() error
	String() string
}

// New builds a resolver; runtime connections are made lazily.
func New(cfg Config, log zerolog.Logger) (*Resolver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Resolver{
		cfg: cfg, log: log.With().Str("component", "container").Logger(),
		byCgroup: make(map[uint64]*entry), byPID: make(map[pidKey]*entry), byID: make(map[string]*entry),
		known: make(map[string]*Meta), queue: make(chan *entry, 256),
	}
	for _, rt := range cfg.Runtimes {
		switch rt.Kind {
		case KindContainerd:
			r.runtimes = append(r.runtimes, newContainerd(rt.Path, cfg.LookupTimeout))
		case KindCRI:
			r.runtimes = append(r.runtimes, newCRI(rt.Path, cfg.LookupTimeout))
		}
	}
	return r, nil
}

// Start runs the lookup goroutine and the runtimes' watchers.
func (r *Resolver) Start(ctx context.Context) error {
	if !r.cfg.Enabled {
		return nil
	}
	ctx, r.cancel = context.WithCancel(ctx)
	r.group, ctx = errgroup.WithContext(ctx)
	r.group.Go(func() error { r.lookups(ctx); return nil })
	for _, c := range r.runtimes {
		r.group.Go(func() error { r.watch(ctx, c); return nil })
	}
	return nil
}

// Shutdown stops the goroutines and closes the runtime connections. It is
// idempotent and safe without Start.
func (r *Resolver) Shutdown(context.Context) error {
	var err error
	r.stop.Do(func() {
		if r.cancel != nil {
			r.cancel()
			_ = r.group.Wait()
		}
		for _, c := range r.runtimes {
			err = errors.Join(err, c.Close())
		}
	})
	return err
}

// Stats returns the counters.
func (r *Resolver) Stats() Stats {
	return Stats{
		Containers:  int(r.containers.Load()),
		CgroupReads: r.stats.cgroupReads.Load(), CgroupMisses: r.stats.cgroupMisses.Load(),
		Lookups: r.stats.lookups.Load(), LookupErrors: r.stats.lookupErrors.Load(),
		LookupUnknown: r.stats.lookupUnknown.Load(), Prefetched: r.stats.prefetched.Load(),
		QueueFull: r.stats.queueFull.Load(), Evictions: r.stats.evictions.Load(),
	}
}

// Enrich fills the event's container fields. Call it from one goroutine
// (the pipeline), after the process table has filled the process.
func (r *Resolver) Enrich(ev *event.Event) {
	if !r.cfg.Enabled {
		return
	}
	p := &ev.Process
	if ev.Kind == event.KindExit {
		defer delete(r.byPID, pidKey{p.PID, p.StartBootNS})
	}
	e := r.byCgroup[p.CgroupID]
	if e == perProcess {
		e = r.byPID[pidKey{p.PID, p.StartBootNS}]
		if e == nil {
			e = r.resolve(p, true)
		}
	} else if e == nil {
		e = r.resolve(p, false)
	}
	if e == nil || e == notContainer {
		return
	}
	p.Container = e.loc.ID
	p.ContainerRuntime = e.loc.Runtime
	m := e.meta.Load()
	if m == nil {
		r.request(e)
		return
	}
	p.ContainerImage, p.ContainerName, p.PodName, p.PodNamespace = m.Image, m.Name, m.PodName, m.PodNamespace
	if *m == (Meta{}) && e.loc.Runtime != RuntimeNspawn {
		r.request(e) // no runtime knew it: ask again after retryAfter
	}
}

// resolve reads the process's cgroup file and caches what it says.
func (r *Resolver) resolve(p *event.Process, pidOnly bool) *entry {
	b, err := os.ReadFile(filepath.Join(r.cfg.ProcRoot, strconv.FormatUint(uint64(p.PID), 10), "cgroup"))
	if err != nil {
		r.stats.cgroupMisses.Add(1)
		return nil
	}
	r.stats.cgroupReads.Add(1)
	unified, v1 := cgroupPaths(b)
	loc, ok := Locate(unified)
	if !ok && len(v1) > 0 {
		// A cgroup v1 (or hybrid) host: the unified hierarchy does not
		// separate containers, so its cgroup id cannot be cached; the v1
		// paths tell, per process.
		if !pidOnly {
			r.cacheCgroup(p.CgroupID, perProcess)
			pidOnly = true
		}
		for _, path := range v1 {
			if loc, ok = Locate(path); ok {
				break
			}
		}
	}
	e := notContainer
	if ok {
		e = r.container(loc)
	}
	if pidOnly {
		if len(r.byPID) >= 4*r.cfg.CacheSize {
			clear(r.byPID)
			r.stats.evictions.Add(1)
		}
		r.byPID[pidKey{p.PID, p.StartBootNS}] = e
	} else {
		r.cacheCgroup(p.CgroupID, e)
	}
	return e
}

func (r *Resolver) cacheCgroup(id uint64, e *entry) {
	if len(r.byCgroup) >= 4*r.cfg.CacheSize {
		clear(r.byCgroup)
		r.stats.evictions.Add(1)
	}
	r.byCgroup[id] = e
}

// container returns the one entry of a container id.
func (r *Resolver) container(loc Location) *entry {
	if e, ok := r.byID[loc.ID]; ok {
		return e
	}
	if len(r.byID) >= r.cfg.CacheSize {
		// Every cache points into byID: reset them together.
		clear(r.byID)
		clear(r.byCgroup)
		clear(r.byPID)
		r.stats.evictions.Add(1)
	}
	e := &entry{loc: loc}
	r.mu.Lock()
	if m, ok := r.known[loc.ID]; ok {
		e.meta.Store(m)
	}
	r.mu.Unlock()
	r.byID[loc.ID] = e
	r.containers.Store(int64(len(r.byID)))
	return e
}

// request queues a lookup without blocking; a full queue is counted and
// the next event of the container asks again.
func (r *Resolver) request(e *entry) {
	if len(r.runtimes) == 0 || e.loc.Runtime == RuntimeNspawn {
		return
	}
	now := time.Now().UnixNano()
	if last := e.requested.Load(); last != 0 && now-last < int64(retryAfter) {
		return // asked already; a lookup is pending or was answered recently
	}
	select {
	case r.queue <- e:
		e.requested.Store(now)
	default:
		r.stats.queueFull.Add(1)
	}
}

// lookups serves the queue: the runtimes are asked in configuration order.
func (r *Resolver) lookups(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-r.queue:
			r.lookup(ctx, e)
		}
	}
}

func (r *Resolver) lookup(ctx context.Context, e *entry) {
	r.mu.Lock()
	m, ok := r.known[e.loc.ID]
	r.mu.Unlock()
	if ok && *m != (Meta{}) {
		e.meta.Store(m)
		return
	}
	failed := false
	for _, c := range r.runtimes {
		r.stats.lookups.Add(1)
		meta, found, err := c.Lookup(ctx, e.loc)
		if err != nil {
			r.stats.lookupErrors.Add(1)
			failed = true
			continue
		}
		if found {
			e.meta.Store(&meta)
			return
		}
	}
	if !failed {
		r.stats.lookupUnknown.Add(1)
	}
	// Nobody knew it: remember that (the fields stay empty) and retry later.
	e.meta.Store(&Meta{})
}

// watch keeps one runtime's announcements flowing into the known set,
// reconnecting with a backoff; an absent socket is checked again later.
func (r *Resolver) watch(ctx context.Context, c client) {
	backoff := time.Second
	reachable := true
	for ctx.Err() == nil {
		err := c.Watch(ctx, r.announce)
		if ctx.Err() != nil {
			return
		}
		if err != nil && reachable {
			r.log.Info().Err(err).Str("runtime", c.String()).Msg("container runtime not reachable; container ids only until it is")
			reachable = false
		} else if err == nil {
			reachable = true
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, retryAfter)
	}
}

// announce records a runtime's metadata for a container.
func (r *Resolver) announce(id string, m Meta) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.known) >= r.cfg.CacheSize {
		clear(r.known)
		r.stats.evictions.Add(1)
	}
	r.known[id] = &m
	r.stats.prefetched.Add(1)
}

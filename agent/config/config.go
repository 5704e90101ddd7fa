// Package config is the agent's configuration: defaults, then the YAML
// file, then command-line flags, then Validate, which names the bad key.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/watchpost/watchpost/agent/baseline"
	"github.com/watchpost/watchpost/agent/container"
	"github.com/watchpost/watchpost/agent/detect"
	"github.com/watchpost/watchpost/agent/event"
	"github.com/watchpost/watchpost/agent/industrial"
	"github.com/watchpost/watchpost/agent/industrial/inspect"
	"github.com/watchpost/watchpost/agent/kernel"
	"github.com/watchpost/watchpost/agent/netctx"
	"github.com/watchpost/watchpost/agent/pipeline"
	"github.com/watchpost/watchpost/agent/proctable"
	"github.com/watchpost/watchpost/agent/respond"
)

// Outputs the agent can write to.
const (
	OutputStdout    = "stdout"
	OutputCollector = "collector"
	OutputBoth      = "both"
)

// Config is the whole agent configuration. YAML keys are documented in
// docs/configuration.md.
type Config struct {
	Host           string        `yaml:"host"`
	Output         string        `yaml:"output"`
	LogLevel       string        `yaml:"log_level"`
	HealthInterval time.Duration `yaml:"health_interval"`
	MetricsAddr    string        `yaml:"metrics_addr"`
	Kernel         Kernel        `yaml:"kernel"`
	ProcessTable   ProcessTable  `yaml:"process_table"`
	Filters        Filters       `yaml:"filters"`
	ExecEnv        ExecEnv       `yaml:"exec_env"`
	Industrial     Industrial    `yaml:"industrial"`
	Collector      Collector     `yaml:"collector"`
	Spool          Spool         `yaml:"spool"`
	// ProcRoot is the host's proc file system: /proc, or where the host's
	// /proc is mounted when the agent runs in a container (/host/proc).
	ProcRoot string `yaml:"proc_root"`
	// CgroupRoot is the host's cgroup v2 root (cgroup path filters,
	// container attribution).
	CgroupRoot string    `yaml:"cgroup_root"`
	Container  Container `yaml:"container"`
	Detection  Detection `yaml:"detection"`
	Response   Response  `yaml:"response"`
	Commands   Commands  `yaml:"commands"`
	Baseline   Baseline  `yaml:"baseline"`
	Network    Network   `yaml:"network"`
}

// Baseline configures the learned per-host baseline (docs/baseline.md).
type Baseline struct {
	Enabled bool `yaml:"enabled"`
	// Dir holds the baseline file (in the agent's state directory).
	Dir string `yaml:"dir"`
	// Learning is the uptime learned before new items alert.
	Learning time.Duration `yaml:"learning"`
	// AllowLearning: after an operator allows an item, its program learns
	// its other new items for this long.
	AllowLearning time.Duration `yaml:"allow_learning"`
	// MaxItems bounds each family.
	MaxItems int `yaml:"max_items"`
	// WriteRoots are the directories whose writes are learned; WriteDepth
	// how many directories below a root an item keeps.
	WriteRoots []string `yaml:"write_roots"`
	WriteDepth int      `yaml:"write_depth"`
	// LearnUnder: programs whose descendants' new items are learned
	// while enforcing (the package manager).
	LearnUnder []string `yaml:"learn_under"`
	// SaveInterval: how often a changed baseline is written.
	SaveInterval    time.Duration `yaml:"save_interval"`
	AlertsPerMinute int           `yaml:"alerts_per_minute"`
}

// Network configures the network context (agent/netctx, docs/configuration.md).
type Network struct {
	// Inventory lists the sockets present at start (net_inventory).
	Inventory bool `yaml:"inventory"`
	// WatchInterfaces reports the interfaces and addresses at start and
	// when they change (net_interface, net_address).
	WatchInterfaces bool `yaml:"watch_interfaces"`
	// Zones label interfaces (by name or glob) and addresses (by CIDR).
	Zones []netctx.Zone `yaml:"zones"`
	// NetNS is the network namespace watched; empty: the agent's own.
	NetNS    string `yaml:"netns"`
	QueueLen int    `yaml:"queue_len"`
}

// Response configures the response policies (docs/response.md).
type Response struct {
	Enabled bool `yaml:"enabled"`
	// PolicyFile holds the policies; relative to the configuration file's
	// directory. A missing file is no policies.
	PolicyFile string `yaml:"policy_file"`
	// NoEnforce is the kill switch at start: no hook is attached.
	NoEnforce bool `yaml:"no_enforce"`
	// Protected executables are never acted on (beside pid 1, kernel
	// threads and the agent); replaces the default list when set.
	Protected []string `yaml:"protected"`
	// CgroupRoot is where the cgroup hooks attach; empty: the cgroup v2
	// mount found in /proc/mounts (the whole host).
	CgroupRoot string `yaml:"cgroup_root"`
}

// Container configures container attribution (agent/container).
type Container struct {
	Enabled bool `yaml:"enabled"`
	// Runtimes are the runtime API sockets asked for image, names and pod;
	// a socket that is absent is skipped.
	Runtimes      []container.Runtime `yaml:"runtimes"`
	CacheSize     int                 `yaml:"cache_size"`
	LookupTimeout time.Duration       `yaml:"lookup_timeout"`
}

// Commands keeps what the collector ordered (docs/configuration.md).
type Commands struct {
	// Dir holds the command log; empty: commands are not accepted.
	Dir string `yaml:"dir"`
}

// DefaultRulesDir is the rules directory when the agent runs without a
// configuration file; with one, it is rules.d beside that file.
const DefaultRulesDir = "/etc/watchpost/rules.d"

// Detection configures the rule engine (docs/detection.md).
type Detection struct {
	Enabled bool `yaml:"enabled"`
	// RulesDir holds the user's rules; relative to the configuration
	// file's directory; default rules.d there.
	RulesDir string `yaml:"rules_dir"`
	// Packs are the built-in rule packs loaded (host, ot).
	Packs []string `yaml:"packs"`
	// DisabledRules are rule ids or names not loaded.
	DisabledRules []string `yaml:"disabled_rules"`
	// MaxGroups bounds the groups each correlation rule tracks.
	MaxGroups int `yaml:"max_groups"`
	// AlertBurst alerts of one rule for one actor (executable and user)
	// per AlertWindow; further matches are folded and counted. 0: never fold.
	AlertBurst  int           `yaml:"alert_burst"`
	AlertWindow time.Duration `yaml:"alert_window"`
}

// Spool keeps unacknowledged batches on disk (output collector or both);
// an empty dir keeps them in memory only.
type Spool struct {
	Dir string `yaml:"dir"`
	// MaxBytes bounds the spool on disk; near it, low-value events are shed.
	MaxBytes int64 `yaml:"max_bytes"`
	// FsyncInterval: batches written in the last interval may be lost on
	// power loss (not on a crash of the agent).
	FsyncInterval time.Duration `yaml:"fsync_interval"`
	// DrainRate bounds the backlog sent after an outage, in compressed
	// bytes per second; new events are not limited.
	DrainRate int `yaml:"drain_rate"`
}

// ExecEnv chooses the environment variables captured at exec
// (docs/configuration.md).
type ExecEnv struct {
	// Mode: listed (Names plus ExtraNames), all, or off.
	Mode string `yaml:"mode"`
	// Names replaces the built-in list when set.
	Names []string `yaml:"names"`
	// ExtraNames are added to Names (per-site additions).
	ExtraNames    []string `yaml:"extra_names"`
	MaxBytes      int      `yaml:"max_bytes"`
	MaxVars       int      `yaml:"max_vars"`
	MaxValueBytes int      `yaml:"max_value_bytes"`
}

// Filters are applied in the kernel (docs/configuration.md).
type Filters struct {
	ReadOpens     bool `yaml:"read_opens"`
	NotFoundOpens bool `yaml:"not_found_opens"`
	// WatchReads are the files and directories whose reads are reported
	// (kernel.DefaultWatchReads); WatchReadsExtra adds the site's own (PLC
	// project and HMI folders).
	WatchReads      []string       `yaml:"watch_reads"`
	WatchReadsExtra []string       `yaml:"watch_reads_extra"`
	RateLimit       RateLimit      `yaml:"rate_limit"`
	UDPFlowTimeout  time.Duration  `yaml:"udp_flow_timeout"`
	Cgroups         IncludeExclude `yaml:"cgroups"`
	Executables     IncludeExclude `yaml:"executables"`
	Paths           IncludeExclude `yaml:"paths"`
	Networks        IncludeExclude `yaml:"networks"`
	Ports           IncludeExclude `yaml:"ports"`
}

// RateLimit bounds file events per process and per user; per_second 0
// (user_per_second 0) disables the bound.
type RateLimit struct {
	PerSecond     uint64 `yaml:"per_second"`
	Burst         uint64 `yaml:"burst"`
	UserPerSecond uint64 `yaml:"user_per_second"`
	UserBurst     uint64 `yaml:"user_burst"`
}

// IncludeExclude is a pair of lists: when include is not empty only
// matching events are kept; exclude always drops.
type IncludeExclude struct {
	Include []string `yaml:"include"`
	Exclude []string `yaml:"exclude"`
}

// Industrial overrides the protocol and serial-device tables.
type Industrial struct {
	Protocols []industrial.Protocol `yaml:"protocols"`
	Serial    []industrial.Serial   `yaml:"serial"`
	// Inspect reads the application messages of the parsed protocols on
	// the host's own sockets (ics_op events).
	Inspect inspect.Config `yaml:"inspect"`
}

// Kernel configures capture.
type Kernel struct {
	RingBytes    int           `yaml:"ring_bytes"`
	WakeupBytes  uint64        `yaml:"wakeup_bytes"`
	PollInterval time.Duration `yaml:"poll_interval"`
	QueueLen     int           `yaml:"queue_len"`
	Threads      bool          `yaml:"threads"`
	// SyscallArgs: auto, exit_regs or enter_stash (docs/configuration.md).
	SyscallArgs string `yaml:"syscall_args"`
	// Events lists the wanted event types by name; empty means all.
	Events []string `yaml:"events"`
}

// ProcessTable configures ancestry tracking.
type ProcessTable struct {
	MaxEntries    int           `yaml:"max_entries"`
	MaxExited     int           `yaml:"max_exited"`
	Grace         time.Duration `yaml:"grace"`
	Depth         int           `yaml:"depth"`
	SweepInterval time.Duration `yaml:"sweep_interval"`
}

// Collector configures the connection to the collector (output collector or both).
type Collector struct {
	Address string `yaml:"address"`
	// AgentID must match the agent certificate's name; default: host.
	AgentID string `yaml:"agent_id"`
	CA      string `yaml:"ca"`
	Cert    string `yaml:"cert"`
	Key     string `yaml:"key"`
	// ServerName overrides the name checked in the collector's certificate.
	ServerName string `yaml:"server_name"`
}

// Default returns the documented defaults.
func Default() Config {
	k := kernel.DefaultConfig()
	pt := proctable.DefaultConfig()
	ct := container.DefaultConfig()
	nc := netctx.DefaultConfig()
	host, _ := os.Hostname()
	return Config{
		Host:           host,
		Output:         OutputStdout,
		LogLevel:       "info",
		HealthInterval: 30 * time.Second,
		MetricsAddr:    "127.0.0.1:9464",
		Kernel: Kernel{
			RingBytes: k.RingBytes, WakeupBytes: k.WakeupBytes, PollInterval: k.PollInterval,
			QueueLen: k.QueueLen, SyscallArgs: k.SyscallArgs,
		},
		ProcessTable: ProcessTable{
			MaxEntries: pt.MaxEntries, MaxExited: pt.MaxExited, Grace: pt.Grace, Depth: pt.Depth,
			SweepInterval: 30 * time.Second,
		},
		Filters: Filters{
			RateLimit: RateLimit{PerSecond: k.Filters.RatePerSec, Burst: k.Filters.RateBurst,
				UserPerSecond: k.Filters.UserRatePerSec, UserBurst: k.Filters.UserRateBurst},
			UDPFlowTimeout: k.Filters.FlowTimeout,
			WatchReads:     k.Filters.WatchReads,
		},
		ExecEnv: ExecEnv{
			Mode: k.Env.Mode, Names: k.Env.Names, MaxBytes: k.Env.MaxBytes, MaxVars: k.Env.MaxVars,
			MaxValueBytes: k.Env.MaxValueBytes,
		},
		Industrial: Industrial{Protocols: industrial.DefaultProtocols(), Serial: industrial.DefaultSerial(), Inspect: inspect.DefaultConfig()},
		Collector:  Collector{Address: "127.0.0.1:7443"},
		Spool:      Spool{Dir: "/var/lib/watchpost/spool", MaxBytes: 256 << 20, FsyncInterval: time.Second, DrainRate: 1 << 20},
		ProcRoot:   "/proc",
		CgroupRoot: "/sys/fs/cgroup",
		Container: Container{
			Enabled: ct.Enabled, Runtimes: ct.Runtimes, CacheSize: ct.CacheSize, LookupTimeout: ct.LookupTimeout,
		},
		Detection: Detection{Enabled: true, RulesDir: DefaultRulesDir, Packs: detect.Packs(), MaxGroups: 10000,
			AlertBurst: 10, AlertWindow: time.Minute},
		Response: Response{Enabled: true, PolicyFile: respond.DefaultPolicyFile},
		Commands: Commands{Dir: "/var/lib/watchpost/commands"},
		Baseline: baselineDefaults(),
		Network:  Network{Inventory: nc.Inventory, WatchInterfaces: nc.WatchInterfaces, QueueLen: nc.QueueLen},
	}
}

func baselineDefaults() Baseline {
	b := baseline.DefaultConfig()
	return Baseline{Enabled: true, Dir: "/var/lib/watchpost/baseline", Learning: b.Learning, AllowLearning: b.AllowLearning,
		MaxItems: b.MaxItems, WriteRoots: b.WriteRoots, WriteDepth: b.WriteDepth, LearnUnder: b.LearnUnder,
		SaveInterval: b.SaveInterval, AlertsPerMinute: b.AlertsPerMinute}
}

// BaselineConfig translates to the baseline's settings.
func (c Config) BaselineConfig() baseline.Config {
	b := c.Baseline
	return baseline.Config{Dir: b.Dir, Host: c.Host, Learning: b.Learning, AllowLearning: b.AllowLearning,
		MaxItems: b.MaxItems, WriteRoots: b.WriteRoots, WriteDepth: b.WriteDepth, LearnUnder: b.LearnUnder,
		SaveInterval: b.SaveInterval, AlertsPerMinute: b.AlertsPerMinute}
}

// Load reads a YAML file over the defaults. Unknown keys are errors.
func Load(path string) (Config, error) {
	c := Default()
	if path == "" {
		return c, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return c, fmt.Errorf("reading config: %w", err)
	}
	defer f.Close()
	c.Detection.RulesDir = ""
	if err := decode(f, &c); err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	if c.Response.PolicyFile != "" && !filepath.IsAbs(c.Response.PolicyFile) {
		c.Response.PolicyFile = filepath.Join(filepath.Dir(path), c.Response.PolicyFile)
	}
	switch {
	case c.Detection.RulesDir == "":
		c.Detection.RulesDir = filepath.Join(filepath.Dir(path), "rules.d")
	case !filepath.IsAbs(c.Detection.RulesDir):
		c.Detection.RulesDir = filepath.Join(filepath.Dir(path), c.Detection.RulesDir)
	}
	return c, nil
}

func decode(r io.Reader, c *Config) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if b, err = expandEnv(b); err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// expandEnv replaces ${NAME} with the environment variable NAME (a
// DaemonSet passes the node name this way); $$ is a literal $. An unset
// variable is an error naming it and its line, never an empty string.
func expandEnv(b []byte) ([]byte, error) {
	var out bytes.Buffer
	line := 1
	for i := 0; i < len(b); i++ {
		switch {
		case b[i] == '\n':
			line++
		case b[i] == '$' && i+1 < len(b) && b[i+1] == '$':
			out.WriteByte('$')
			i++
			continue
		case b[i] == '$' && i+1 < len(b) && b[i+1] == '{':
			end := bytes.IndexByte(b[i+2:], '}')
			if end < 0 {
				return nil, fmt.Errorf("line %d: unterminated ${", line)
			}
			name := string(b[i+2 : i+2+end])
			v, ok := os.LookupEnv(name)
			if !ok || name == "" {
				return nil, fmt.Errorf("line %d: environment variable %q is not set", line, name)
			}
			out.WriteString(v)
			i += 2 + end
			continue
		}
		out.WriteByte(b[i])
	}
	return out.Bytes(), nil
}

// Validate checks every setting; the error names the key.
func (c Config) Validate() error {
	switch c.Output {
	case OutputStdout, OutputCollector, OutputBoth:
	default:
		return fmt.Errorf("output: %q is not one of stdout, collector, both", c.Output)
	}
	if c.Output != OutputStdout {
		if c.Collector.Address == "" {
			return errors.New("collector.address: required when output is collector or both")
		}
		for _, kv := range [][2]string{{"collector.ca", c.Collector.CA}, {"collector.cert", c.Collector.Cert}, {"collector.key", c.Collector.Key}} {
			if kv[1] == "" {
				return fmt.Errorf("%s: required when output is collector or both (mutual TLS)", kv[0])
			}
		}
	}
	if c.Output != OutputStdout && c.Spool.Dir != "" {
		switch {
		case c.Spool.MaxBytes < 64<<10:
			return fmt.Errorf("spool.max_bytes: %d is below 64 KiB", c.Spool.MaxBytes)
		case c.Spool.FsyncInterval <= 0:
			return fmt.Errorf("spool.fsync_interval: %s must be positive", c.Spool.FsyncInterval)
		case c.Spool.DrainRate <= 0:
			return fmt.Errorf("spool.drain_rate: %d must be positive", c.Spool.DrainRate)
		}
	}
	if c.Host == "" {
		return errors.New("host: empty, and the hostname could not be read")
	}
	if _, err := ParseLogLevel(c.LogLevel); err != nil {
		return err
	}
	if _, err := c.KernelConfig(); err != nil {
		return err
	}
	if err := c.TableConfig().Validate(); err != nil {
		return err
	}
	if c.Industrial.Inspect.Enabled {
		if err := c.Industrial.Inspect.Validate(); err != nil {
			return err
		}
	}
	if _, err := c.Classifier(); err != nil {
		return err
	}
	if c.ProcRoot == "" || !filepath.IsAbs(c.ProcRoot) {
		return fmt.Errorf("proc_root: %q is not an absolute path", c.ProcRoot)
	}
	if c.CgroupRoot == "" || !filepath.IsAbs(c.CgroupRoot) {
		return fmt.Errorf("cgroup_root: %q is not an absolute path", c.CgroupRoot)
	}
	if err := c.ContainerConfig().Validate(); err != nil {
		return err
	}
	if err := c.NetworkConfig().Validate(); err != nil {
		return err
	}
	if c.Network.NetNS != "" && !filepath.IsAbs(c.Network.NetNS) {
		return fmt.Errorf("network.netns: %q is not an absolute path", c.Network.NetNS)
	}
	if c.Baseline.Enabled {
		if err := c.BaselineConfig().Validate(); err != nil {
			return err
		}
	}
	if c.Detection.Enabled {
		dc := c.DetectConfig()
		dc.Defaults()
		if err := dc.Validate(); err != nil {
			return err
		}
	}
	if c.Response.Enabled {
		if c.Response.PolicyFile == "" || !filepath.IsAbs(c.Response.PolicyFile) {
			return fmt.Errorf("response.policy_file: %q is not an absolute path", c.Response.PolicyFile)
		}
		if c.Response.CgroupRoot != "" && !filepath.IsAbs(c.Response.CgroupRoot) {
			return fmt.Errorf("response.cgroup_root: %q is not an absolute path", c.Response.CgroupRoot)
		}
		for i, p := range c.Response.Protected {
			if !filepath.IsAbs(p) {
				return fmt.Errorf("response.protected[%d]: %q is not an absolute path", i, p)
			}
		}
	}
	return c.PipelineConfig().Validate()
}

// RespondConfig translates to the response engine's settings (the agent
// fills in its pid and the cgroup root when it is not set).
func (c Config) RespondConfig() respond.Config {
	prot := c.Response.Protected
	if prot == nil {
		prot = respond.DefaultProtected
	}
	return respond.Config{PolicyFile: c.Response.PolicyFile, CgroupRoot: c.Response.CgroupRoot,
		Protected: prot, NoEnforce: c.Response.NoEnforce, ProcRoot: c.ProcRoot}
}

// DetectConfig translates to the rule engine's settings.
func (c Config) DetectConfig() detect.Config {
	return detect.Config{
		RulesDir: c.Detection.RulesDir, Packs: c.Detection.Packs, Disabled: c.Detection.DisabledRules,
		Host: c.Host, MaxGroups: c.Detection.MaxGroups, CgroupRoot: c.CgroupRoot,
		AlertBurst: c.Detection.AlertBurst, AlertWindow: c.Detection.AlertWindow,
	}
}

// KernelConfig translates to the kernel package's settings.
func (c Config) KernelConfig() (kernel.Config, error) {
	k := kernel.DefaultConfig()
	k.RingBytes = c.Kernel.RingBytes
	k.WakeupBytes = c.Kernel.WakeupBytes
	k.PollInterval = c.Kernel.PollInterval
	k.QueueLen = c.Kernel.QueueLen
	k.Threads = c.Kernel.Threads
	k.SyscallArgs = c.Kernel.SyscallArgs
	for i, name := range c.Kernel.Events {
		kind, err := event.ParseKind(name)
		if err != nil {
			return k, fmt.Errorf("kernel.events[%d]: %w", i, err)
		}
		k.Kinds = append(k.Kinds, kind)
	}
	// The inspection's segments whatever kernel.events lists (ics_op is
	// made of them); its owners come from net_connect and net_accept when
	// they are captured, else from lookups.
	if len(k.Kinds) > 0 && c.Industrial.Inspect.Enabled && !slices.Contains(k.Kinds, event.KindICSSegment) {
		k.Kinds = append(k.Kinds, event.KindICSSegment)
	}
	f, err := c.Filters.kernel(c.CgroupRoot)
	if err != nil {
		return k, err
	}
	k.Filters = f
	e := c.ExecEnv
	k.Env = kernel.Env{
		Mode: e.Mode, Names: append(append([]string(nil), e.Names...), e.ExtraNames...),
		MaxBytes: e.MaxBytes, MaxVars: e.MaxVars, MaxValueBytes: e.MaxValueBytes,
	}
	return k, k.Validate()
}

func (f Filters) kernel(cgroupRoot string) (kernel.Filters, error) {
	for key, list := range map[string][]string{"filters.watch_reads": f.WatchReads, "filters.watch_reads_extra": f.WatchReadsExtra} {
		if err := kernel.ValidateWatch(key, list); err != nil {
			return kernel.Filters{}, err
		}
	}
	out := kernel.Filters{
		WatchReads: append(append([]string(nil), f.WatchReads...), f.WatchReadsExtra...),
		ReadOpens:  f.ReadOpens, NotFoundOpens: f.NotFoundOpens, RatePerSec: f.RateLimit.PerSecond, RateBurst: f.RateLimit.Burst,
		UserRatePerSec: f.RateLimit.UserPerSecond, UserRateBurst: f.RateLimit.UserBurst,
		FlowTimeout: f.UDPFlowTimeout,
		IncludeExes: f.Executables.Include, ExcludeExes: f.Executables.Exclude,
		IncludePaths: f.Paths.Include, ExcludePaths: f.Paths.Exclude,
	}
	var err error
	if out.IncludeCgroups, err = cgroupIDs("filters.cgroups.include", cgroupRoot, f.Cgroups.Include); err != nil {
		return out, err
	}
	if out.ExcludeCgroups, err = cgroupIDs("filters.cgroups.exclude", cgroupRoot, f.Cgroups.Exclude); err != nil {
		return out, err
	}
	if out.IncludeCIDRs, err = prefixes("filters.networks.include", f.Networks.Include); err != nil {
		return out, err
	}
	if out.ExcludeCIDRs, err = prefixes("filters.networks.exclude", f.Networks.Exclude); err != nil {
		return out, err
	}
	if out.IncludePorts, err = ports("filters.ports.include", f.Ports.Include); err != nil {
		return out, err
	}
	if out.ExcludePorts, err = ports("filters.ports.exclude", f.Ports.Exclude); err != nil {
		return out, err
	}
	return out, nil
}

// cgroupIDs accepts cgroup v2 ids or paths (absolute, or relative to
// cgroup_root); a cgroup v2 id is the inode number of its directory.
func cgroupIDs(key, root string, in []string) ([]uint64, error) {
	var out []uint64
	for i, v := range in {
		if id, err := strconv.ParseUint(v, 10, 64); err == nil {
			out = append(out, id)
			continue
		}
		p := v
		if !filepath.IsAbs(p) {
			p = filepath.Join(root, p)
		}
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", key, i, err)
		}
		out = append(out, fi.Sys().(*syscall.Stat_t).Ino)
	}
	return out, nil
}

func prefixes(key string, in []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for i, v := range in {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			a, aerr := netip.ParseAddr(v)
			if aerr != nil {
				return nil, fmt.Errorf("%s[%d]: %q is not an address or CIDR", key, i, v)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func ports(key string, in []string) ([]uint16, error) {
	var out []uint16
	for i, v := range in {
		n, err := strconv.ParseUint(v, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("%s[%d]: %q is not a port (1-65535)", key, i, v)
		}
		out = append(out, uint16(n))
	}
	return out, nil
}

// Classifier builds the industrial tagger from the tables.
func (c Config) Classifier() (*industrial.Classifier, error) {
	return industrial.New(c.Industrial.Protocols, c.Industrial.Serial)
}

// TableConfig translates to the process table's settings.
func (c Config) TableConfig() proctable.Config {
	t := proctable.DefaultConfig()
	t.MaxEntries = c.ProcessTable.MaxEntries
	t.MaxExited = c.ProcessTable.MaxExited
	t.Grace = c.ProcessTable.Grace
	t.Depth = c.ProcessTable.Depth
	t.ProcRoot = c.ProcRoot
	return t
}

// ContainerConfig translates to the container package's settings.
func (c Config) ContainerConfig() container.Config {
	return container.Config{
		Enabled: c.Container.Enabled, Runtimes: c.Container.Runtimes, CacheSize: c.Container.CacheSize,
		LookupTimeout: c.Container.LookupTimeout, ProcRoot: c.ProcRoot,
	}
}

// NetworkConfig translates to the network context's settings.
func (c Config) NetworkConfig() netctx.Config {
	n := netctx.DefaultConfig()
	n.Inventory, n.WatchInterfaces, n.Zones = c.Network.Inventory, c.Network.WatchInterfaces, c.Network.Zones
	n.NetNS, n.QueueLen, n.ProcRoot = c.Network.NetNS, c.Network.QueueLen, c.ProcRoot
	return n
}

// PipelineConfig translates to the pipeline's settings.
func (c Config) PipelineConfig() pipeline.Config {
	return pipeline.Config{Host: c.Host, HealthInterval: c.HealthInterval, SweepInterval: c.ProcessTable.SweepInterval}
}

// ParseLogLevel accepts debug, info, warn, error.
func ParseLogLevel(s string) (string, error) {
	switch strings.ToLower(s) {
	case "debug", "info", "warn", "error":
		return strings.ToLower(s), nil
	}
	return "", fmt.Errorf("log_level: %q is not one of debug, info, warn, error", s)
}

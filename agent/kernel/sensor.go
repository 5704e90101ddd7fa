package kernel

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"github.com/rs/zerolog"

	"github.com/watchpost/watchpost/agent/event"
	"github.com/watchpost/watchpost/agent/industrial/inspect"
)

// Config is what the kernel side needs from the agent's configuration.
type Config struct {
	// RingBytes is the ring buffer size; a power of two multiple of the page size.
	RingBytes int
	// WakeupBytes forces a reader wakeup once this much data is pending.
	WakeupBytes uint64
	// PollInterval is the reader's backstop poll when no wakeup came. After
	// a poll that found nothing the interval doubles, up to
	// idlePollFactor × PollInterval, and returns to PollInterval with the
	// next record: an idle host costs a wakeup a second, not ten.
	PollInterval time.Duration
	// QueueLen bounds the hand-off queue between the reader and the pipeline.
	QueueLen int
	// Kinds lists the wanted event kinds; empty means all.
	Kinds []event.Kind
	// Threads also reports clones that create threads.
	Threads bool
	// AgentPID is never reported (the agent's own activity).
	AgentPID uint32
	// Filters are applied in the kernel.
	Filters Filters
	// Env chooses the environment variables captured at exec.
	Env Env
	// SyscallArgs chooses how the sys_exit programs get a syscall's
	// arguments: "auto" (the default: "exit_regs" where the kernel has
	// bpf_task_pt_regs, else "enter_stash"), "exit_regs" (fails to load
	// where the helper is missing) or "enter_stash".
	SyscallArgs string
}

// DefaultConfig returns the settings documented in docs/configuration.md.
func DefaultConfig() Config {
	return Config{
		RingBytes:    4 << 20,
		WakeupBytes:  256 << 10,
		PollInterval: 100 * time.Millisecond,
		QueueLen:     65536,
		AgentPID:     uint32(os.Getpid()),
		Filters:      DefaultFilters(),
		Env:          DefaultEnv(),
		SyscallArgs:  "auto",
	}
}

// Validate checks the configuration and names the bad setting.
func (c Config) Validate() error {
	page := os.Getpagesize()
	if c.RingBytes < page || c.RingBytes&(c.RingBytes-1) != 0 || c.RingBytes%page != 0 {
		return fmt.Errorf("kernel.ring_bytes: %d is not a power of two multiple of the page size (%d)", c.RingBytes, page)
	}
	if c.WakeupBytes == 0 || c.WakeupBytes > uint64(c.RingBytes) {
		return fmt.Errorf("kernel.wakeup_bytes: %d must be between 1 and ring_bytes (%d)", c.WakeupBytes, c.RingBytes)
	}
	if c.PollInterval < time.Millisecond || c.PollInterval > 10*time.Second {
		return fmt.Errorf("kernel.poll_interval: %s must be between 1ms and 10s", c.PollInterval)
	}
	switch c.SyscallArgs {
	case "", "auto", syscallArgsExitRegs, syscallArgsEnterStash:
	default:
		return fmt.Errorf("kernel.syscall_args: %q is not auto, %s or %s", c.SyscallArgs, syscallArgsExitRegs, syscallArgsEnterStash)
	}
	if c.QueueLen < 1 {
		return fmt.Errorf("kernel.queue_len: %d must be positive", c.QueueLen)
	}
	for _, k := range c.Kinds {
		if int(k) <= 0 || int(k) >= event.KernelKinds {
			return fmt.Errorf("kernel.kinds: %s is not produced by the kernel", k)
		}
	}
	if err := c.Env.Validate(); err != nil {
		return err
	}
	return c.Filters.Validate()
}

func (c Config) eventMask() uint64 {
	if len(c.Kinds) == 0 {
		return ^uint64(0)
	}
	var m uint64
	for _, k := range c.Kinds {
		m |= 1 << uint(k)
	}
	return m
}

// Sensor owns the loaded programs, their links and the ring reader.
type Sensor struct {
	log      zerolog.Logger
	cfg      Config
	features Features
	coll     *ebpf.Collection
	spec     *ebpf.CollectionSpec // as loaded, with the response programs (respond.go)
	resp     atomic.Pointer[respTable]
	links    []link.Link
	attached []string
	missing  []string
	tracefs  bool
	reader   *ringbuf.Reader
	queue    chan *event.Event
	clock    *bootClock

	// Inspected segments (ics.go): a queue of their own, for the
	// inspection's aggregator; filled only while an Inspector is attached.
	segments     chan *inspect.Segment
	segmentsFull atomic.Uint64
	inspecting   atomic.Bool

	// Counted in user space, per kind.
	queueFull [event.KernelKinds]atomic.Uint64
	decodeErr atomic.Uint64
	// watched is the number of watch-list paths in the kernel's map;
	// watchErrors counts refreshes of it that failed.
	watched     atomic.Int64
	watchErrors atomic.Uint64
	read        atomic.Uint64

	linkMu    sync.Mutex
	closeOnce sync.Once
	closeErr  error
}

// Load probes the host, loads and configures the programs and attaches
// them. Nothing is attached when it fails.
func Load(cfg Config, log zerolog.Logger) (*Sensor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	feat, err := Probe()
	if err != nil {
		return nil, err
	}
	switch cfg.SyscallArgs {
	case syscallArgsEnterStash:
		feat.SyscallArgs = syscallArgsEnterStash
	case syscallArgsExitRegs:
		if !feat.TaskPtRegs {
			return nil, fmt.Errorf("kernel.syscall_args: %s needs the bpf_task_pt_regs helper (kernel >= 5.15), which this kernel lacks; use auto", syscallArgsExitRegs)
		}
	}
	feat.CapturePath += "," + feat.SyscallArgs
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("raising the memlock limit (kernels before 5.11 charge BPF maps to it): %w", err)
	}
	spec, err := loadWp()
	if err != nil {
		return nil, fmt.Errorf("reading the embedded BPF object: %w", err)
	}
	spec.Maps["wp_events"].MaxEntries = uint32(cfg.RingBytes)
	if feat.SyscallArgs == syscallArgsExitRegs {
		if err := spec.Variables["wp_args_from_regs"].Set(uint32(1)); err != nil {
			return nil, fmt.Errorf("selecting the syscall argument path: %w", err)
		}
		// Nothing is saved at sys_enter: the table needs no room and the
		// enter program is neither loaded nor attached.
		spec.Maps["wp_inflight"].MaxEntries = 1
		delete(spec.Programs, "wp_sys_enter")
	}

	if feat.TracingAncestorCgroup {
		if err := spec.Variables["wp_tracing_ancestor_cgroup_helper"].Set(uint32(1)); err != nil {
			return nil, fmt.Errorf("selecting the cgroup ancestry path: %w", err)
		}
	}
	full := spec.Copy()
	for name := range spec.Programs {
		if isOptionalProgram(name) {
			delete(spec.Programs, name)
		}
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
		Programs: ebpf.ProgramOptions{LogSizeStart: 1 << 20},
	})
	if err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("loading BPF programs: %w\n%s", err, strings.Join(tail(verr.Log, 30), "\n"))
		}
		return nil, fmt.Errorf("loading BPF programs: %w", err)
	}
	s := &Sensor{
		log:      log.With().Str("component", "kernel").Logger(),
		cfg:      cfg,
		features: feat,
		coll:     coll,
		spec:     full,
		queue:    make(chan *event.Event, cfg.QueueLen),
		segments: make(chan *inspect.Segment, segmentQueueLen),
		clock:    newBootClock(),
	}
	if err := acquireTracefs(); err != nil {
		s.Close()
		return nil, err
	}
	s.tracefs = true
	if err := s.configure(); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.attach(spec); err != nil {
		s.Close()
		return nil, err
	}
	s.reader, err = ringbuf.NewReader(coll.Maps["wp_events"])
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("opening the ring buffer reader: %w", err)
	}
	s.log.Info().Str("capture_path", feat.CapturePath).Strs("programs", s.attached).
		Int("ring_bytes", cfg.RingBytes).Bool("fentry", feat.Fentry).Bool("lsm", feat.LSM).
		Bool("kprobes", feat.Kprobes).Msg("kernel programs attached")
	return s, nil
}

func tail(lines []string, n int) []string {
	if len(lines) > n {
		return lines[len(lines)-n:]
	}
	return lines
}

// configure writes the run-time configuration map.
func (s *Sensor) configure() error {
	flags, err := s.applyFilters(s.cfg.Filters)
	if err != nil {
		return err
	}
	if s.cfg.Threads {
		flags |= uint32(wpWpConfigFlagsWP_CFG_THREADS)
	}
	c := wpWpConfig{
		EventMask:      s.cfg.eventMask(),
		WakeupBytes:    s.cfg.WakeupBytes,
		AgentTgid:      s.cfg.AgentPID,
		Flags:          flags,
		RatePerSec:     s.cfg.Filters.RatePerSec,
		RateBurst:      s.cfg.Filters.RateBurst,
		FlowTimeoutNs:  uint64(s.cfg.Filters.FlowTimeout),
		UserRatePerSec: s.cfg.Filters.UserRatePerSec,
		UserRateBurst:  s.cfg.Filters.UserRateBurst,
	}
	if err := s.applyEnv(s.cfg.Env, &c); err != nil {
		return err
	}
	if err := s.coll.Maps["wp_config_map"].Put(uint32(0), &c); err != nil {
		return fmt.Errorf("writing the BPF configuration map: %w", err)
	}
	return nil
}

// syscallPrograms are attached once per captured syscall rather than by
// their section name: the enter program saves arguments, one exit program
// per class reads them.
var syscallPrograms = map[string]uint8{
	"wp_sys_enter":     0,
	"wp_sys_exit_file": classFile,
	"wp_sys_exit_net":  classNet,
	"wp_sys_exit_sec":  classSec,
	"wp_sys_exit_ns":   classNs,
}

// attach links every loaded program, in a stable order: the syscall
// programs to each captured syscall's tracepoints, the others by their
// section name.
func (s *Sensor) attach(spec *ebpf.CollectionSpec) error {
	names := make([]string, 0, len(s.coll.Programs))
	for name := range s.coll.Programs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if _, ok := syscallPrograms[name]; ok {
			continue
		}
		prog := s.coll.Programs[name]
		section := spec.Programs[name].SectionName
		l, err := attachBySection(prog, section)
		if err != nil {
			return fmt.Errorf("attaching %s (%s): %w", name, section, err)
		}
		s.links = append(s.links, l)
		s.attached = append(s.attached, section)
	}
	return s.attachSyscalls()
}

// attachSyscalls writes a descriptor for every wanted syscall this
// architecture has and attaches the enter and exit programs to its
// tracepoints. A tracepoint the kernel lacks (a syscall newer than the
// kernel) is skipped and reported.
func (s *Sensor) attachSyscalls() error {
	mask := s.cfg.eventMask()
	descs := s.coll.Maps["wp_sys_descs"]
	enter := s.coll.Programs["wp_sys_enter"] // nil when the exit programs read registers
	exits := map[uint8]*ebpf.Program{
		classFile: s.coll.Programs["wp_sys_exit_file"],
		classNet:  s.coll.Programs["wp_sys_exit_net"],
		classSec:  s.coll.Programs["wp_sys_exit_sec"],
		classNs:   s.coll.Programs["wp_sys_exit_ns"],
	}
	for _, spec := range syscallSpecs {
		nr, ok := syscallNumbers[spec.name]
		if !ok || mask&(1<<uint(spec.kind)) == 0 {
			continue
		}
		tp := spec.tracepoint()
		if !tracepointExists("syscalls", "sys_enter_"+tp) {
			s.missing = append(s.missing, "syscalls/sys_enter_"+tp)
			continue
		}
		d := spec.desc()
		if err := descs.Put(nr, &d); err != nil {
			return fmt.Errorf("writing the descriptor of %s: %w", spec.name, err)
		}
		if enter != nil {
			le, err := link.Tracepoint("syscalls", "sys_enter_"+tp, enter, nil)
			if err != nil {
				return fmt.Errorf("attaching to syscalls/sys_enter_%s: %w", tp, err)
			}
			s.links = append(s.links, le)
		}
		lx, err := link.Tracepoint("syscalls", "sys_exit_"+tp, exits[spec.class], nil)
		if err != nil {
			return fmt.Errorf("attaching to syscalls/sys_exit_%s: %w", tp, err)
		}
		s.links = append(s.links, lx)
		s.attached = append(s.attached, "tracepoint/syscalls/"+tp)
	}
	if len(s.missing) > 0 {
		s.log.Info().Strs("tracepoints", s.missing).Msg("syscalls this kernel does not have are not captured")
	}
	return nil
}

// tracepointExists checks tracefs for a tracepoint.
func tracepointExists(group, name string) bool {
	for _, root := range []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"} {
		if _, err := os.Stat(root + "/events/" + group + "/" + name + "/id"); err == nil {
			return true
		}
	}
	return false
}

func attachBySection(prog *ebpf.Program, section string) (link.Link, error) {
	kind, target, _ := strings.Cut(section, "/")
	switch kind {
	case "tp_btf":
		return link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceRawTp})
	case "tracepoint", "tp":
		group, name, ok := strings.Cut(target, "/")
		if !ok {
			return nil, fmt.Errorf("section %q does not name group/event", section)
		}
		return link.Tracepoint(group, name, prog, nil)
	case "raw_tp", "raw_tracepoint":
		return link.AttachRawTracepoint(link.RawTracepointOptions{Name: target, Program: prog})
	}
	return nil, fmt.Errorf("no attach rule for section %q", section)
}

// Features returns what the start-up probe found.
func (s *Sensor) Features() Features { return s.features }

// Programs lists the attached hooks by section name.
func (s *Sensor) Programs() []string {
	s.linkMu.Lock()
	defer s.linkMu.Unlock()
	return append([]string(nil), s.attached...)
}

// Events is the bounded queue of decoded events. It is closed when Run returns.
func (s *Sensor) Events() <-chan *event.Event { return s.queue }

// Run reads the ring buffer until ctx ends or the sensor is closed. It never
// blocks on the consumer: when the queue is full the event is counted and
// dropped. When ctx ends it detaches the programs, drains what is left in
// the ring and closes the queue, so a clean shutdown loses nothing.
func (s *Sensor) Run(ctx context.Context) error {
	defer close(s.queue)
	if len(s.cfg.Filters.WatchReads) > 0 {
		wctx, stop := context.WithCancel(ctx)
		defer stop()
		go s.watchLoop(wctx, watchRefresh)
	}
	var rec ringbuf.Record
	dec := newDecoder(s.clock, s.cfg.Env.MaxValueBytes)
	dec.resp = &s.resp
	lastClock := time.Now()
	poll := s.cfg.PollInterval
	// The reader reports an expired deadline only after it has drained what
	// was pending, so an expired deadline means "idle" only when no record
	// came since the previous one.
	busy := false
	for {
		if ctx.Err() != nil {
			s.Detach()
			return s.drain(dec, &rec)
		}
		s.reader.SetDeadline(time.Now().Add(poll))
		err := s.reader.ReadInto(&rec)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				if !busy {
					poll = idlePoll(poll, s.cfg.PollInterval)
				}
				busy = false
				if time.Since(lastClock) > 10*time.Second {
					s.clock.resync()
					lastClock = time.Now()
				}
				continue
			}
			if errors.Is(err, ringbuf.ErrClosed) {
				return nil
			}
			return fmt.Errorf("reading the ring buffer: %w", err)
		}
		poll, busy = s.cfg.PollInterval, true
		s.handle(dec, rec.RawSample)
	}
}

// idlePollFactor bounds the backed-off poll interval. Measured on a 2-vCPU
// host: an idle agent polling every 100 ms used ~0.19% of a core, every
// 1 s ~0.05% (docs/benchmarks.md). Urgent events and a full wakeup
// threshold still wake the reader at once, whatever the interval.
const idlePollFactor = 10

// idlePoll is the next backstop interval after a poll that found nothing.
func idlePoll(cur, base time.Duration) time.Duration {
	return min(2*cur, idlePollFactor*base)
}

// drain reads every record still in the ring without waiting.
func (s *Sensor) drain(dec *decoder, rec *ringbuf.Record) error {
	for {
		s.reader.SetDeadline(time.Now())
		err := s.reader.ReadInto(rec)
		switch {
		case err == nil:
			s.handle(dec, rec.RawSample)
		case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, ringbuf.ErrClosed):
			return nil
		default:
			return fmt.Errorf("draining the ring buffer: %w", err)
		}
	}
}

// segmentQueueLen bounds the inspected segments waiting for the aggregator.
const segmentQueueLen = 4096

func (s *Sensor) handle(dec *decoder, raw []byte) {
	s.read.Add(1)
	if len(raw) >= hdrSize && (*wpWpEventHdr)(unsafe.Pointer(&raw[0])).Type == uint16(wpWpEventTypeWP_EV_ICS_OP) {
		seg, err := dec.decodeSegment(raw)
		switch {
		case err != nil:
			s.decodeErr.Add(1)
		case !s.inspecting.Load():
		default:
			select {
			case s.segments <- seg:
			default:
				s.segmentsFull.Add(1)
			}
		}
		return
	}
	ev, err := dec.decode(raw)
	if err != nil {
		s.decodeErr.Add(1)
		return
	}
	select {
	case s.queue <- ev:
	default:
		s.queueFull[ev.Kind].Add(1)
	}
}

// Detach closes the program links, newest first, so no new events are
// produced; the ring and counters stay readable. It is idempotent.
func (s *Sensor) Detach() error {
	s.linkMu.Lock()
	defer s.linkMu.Unlock()
	// Unregistering a tracepoint waits for an RCU grace period (tens of
	// milliseconds); closing ~100 links one by one would take seconds, so
	// they are closed concurrently.
	errs := make([]error, len(s.links))
	var wg sync.WaitGroup
	for i, l := range s.links {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = l.Close()
		}()
	}
	wg.Wait()
	s.links = nil
	s.attached = nil
	return errors.Join(errs...)
}

// Close detaches everything in reverse order: links, reader, objects.
// It is safe to call more than once and without Run.
func (s *Sensor) Close() error {
	s.closeOnce.Do(func() {
		errs := []error{s.Detach()}
		if s.reader != nil {
			if err := s.reader.Close(); err != nil && !errors.Is(err, ringbuf.ErrClosed) {
				errs = append(errs, err)
			}
		}
		if s.coll != nil {
			s.coll.Close()
		}
		if s.tracefs {
			errs = append(errs, releaseTracefs())
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

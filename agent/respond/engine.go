package respond

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/watchpost/watchpost/agent/event"
	"github.com/watchpost/watchpost/agent/kernel"
)

// DefaultPolicyFile is response.policy_file's default.
const DefaultPolicyFile = "/etc/watchpost/policies.yaml"

// DefaultProtected are executables no policy ever acts on: init, the SSH
// daemon (the operator's way back in) and the agent's supervisor.
var DefaultProtected = []string{
	"/sbin/init", "/lib/systemd/systemd", "/usr/lib/systemd/systemd",
	"/usr/sbin/sshd", "/usr/sbin/dropbear",
}

// Config configures the engine.
type Config struct {
	// PolicyFile is the operator's policy file; a missing file is no
	// policies (the collector may push some).
	PolicyFile string
	// CgroupRoot is where the cgroup hooks attach (the cgroup v2 root
	// covers the host) and what cgroup selectors are relative to.
	CgroupRoot string
	// Protected executables are never acted on, beside pid 1, kernel
	// threads and the agent itself (SelfPID and its executable).
	Protected []string
	// NoEnforce starts with the kill switch on: nothing is enforced.
	NoEnforce bool
	SelfPID   uint32
	// ProcRoot is the host's /proc (kill on detection reads process groups).
	ProcRoot string
}

// Engine holds the policies in force and carries them out.
type Engine struct {
	cfg  Config
	log  zerolog.Logger
	resp *kernel.Responder

	mu         sync.Mutex
	cur        *compiled
	generation uint64
	loadedAt   time.Time
	source     string
	errs       []string
	enforcing  bool
	pushed     []byte // the collector's policy document, nil: the file's
	pushedName string
	modes      map[string]string // the collector's mode switches, by policy id
	counts     map[string]*event.PolicyStatus

	changed chan struct{}
	now     func() time.Time
}

// New attaches the response hooks and loads the policy file. A file with
// errors is reported (Status) and no policy is in force; the agent runs.
func New(cfg Config, sensor *kernel.Sensor, log zerolog.Logger) (*Engine, error) {
	if cfg.PolicyFile == "" {
		cfg.PolicyFile = DefaultPolicyFile
	}
	if cfg.ProcRoot == "" {
		cfg.ProcRoot = "/proc"
	}
	if cfg.SelfPID == 0 {
		cfg.SelfPID = uint32(os.Getpid())
	}
	if self, err := os.Executable(); err == nil {
		cfg.Protected = append(append([]string(nil), cfg.Protected...), self)
	}
	e := &Engine{cfg: cfg, log: log.With().Str("component", "respond").Logger(), enforcing: true,
		modes: map[string]string{}, counts: map[string]*event.PolicyStatus{}, changed: make(chan struct{}, 1), now: time.Now}
	r, err := sensor.NewResponder(cfg.CgroupRoot)
	if err != nil {
		return nil, err
	}
	e.resp = r
	for _, h := range r.Hooks() {
		if !h.Attached {
			e.log.Warn().Str("hook", h.Hook).Str("error", h.Error).Msg("response hook unavailable on this kernel: its policies report themselves unenforceable")
		}
	}
	if cfg.NoEnforce {
		if err := e.SetEnforcing(false, "--no-enforce"); err != nil {
			r.Close()
			return nil, err
		}
	}
	if err := e.Reload(); err != nil {
		e.log.Error().Err(err).Msg("policy file refused: no policy in force")
	}
	return e, nil
}

// Close detaches every hook.
func (e *Engine) Close() error { return e.resp.Close() }

// Changed is signalled after every load, refusal and kill switch change.
func (e *Engine) Changed() <-chan struct{} { return e.changed }

func (e *Engine) signal() {
	select {
	case e.changed <- struct{}{}:
	default:
	}
}

// Reload reads the policy file again (SIGHUP, a change of the file); the
// collector's pushed set, while there is one, stays in force. On an error
// the set in force stays and the error is reported.
func (e *Engine) Reload() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.reloadLocked()
}

func (e *Engine) reloadLocked() error {
	defer e.signal()
	name, data, source := e.cfg.PolicyFile, e.pushed, "collector"
	if data == nil {
		source = "file"
		b, err := os.ReadFile(name)
		switch {
		case errors.Is(err, os.ErrNotExist):
			b = nil
		case err != nil:
			e.errs = []string{fmt.Sprintf("%s: %v", name, err)}
			return err
		}
		data = b
	} else {
		name = e.pushedName
	}
	pols, err := Parse(name, data)
	var c *compiled
	if err == nil {
		c, err = compile(name, pols, e.modes, compileEnv{cgroupRoot: e.cfg.CgroupRoot, protected: e.cfg.Protected})
	}
	if err == nil {
		err = e.resp.Apply(c.set)
	}
	if err != nil {
		var list ErrorList
		if errors.As(err, &list) {
			e.errs = list
		} else {
			e.errs = []string{fmt.Sprintf("%s: %v", name, err)}
		}
		e.log.Error().Strs("errors", e.errs).Msg("policies refused; the set in force stays")
		return err
	}
	e.cur, e.errs, e.source = c, nil, source
	e.generation++
	e.loadedAt = e.now()
	for _, p := range c.policies {
		if e.counts[p.ID] == nil {
			e.counts[p.ID] = &event.PolicyStatus{ID: p.ID}
		}
	}
	e.log.Info().Int("policies", len(c.policies)).Str("source", source).Uint64("generation", e.generation).Msg("policies in force")
	return nil
}

// SetPushed puts the collector's policy document in force instead of the
// file (nil doc: back to the file). On an error the set in force stays.
func (e *Engine) SetPushed(name string, doc []byte) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	oldDoc, oldName := e.pushed, e.pushedName
	if doc == nil {
		e.pushed, e.pushedName = nil, ""
	} else {
		e.pushed, e.pushedName = append([]byte{}, doc...), name
	}
	if err := e.reloadLocked(); err != nil {
		e.pushed, e.pushedName = oldDoc, oldName
		return err
	}
	return nil
}

// SetMode switches one policy between monitor and enforce (the
// collector's command) on top of its file.
func (e *Engine) SetMode(id, mode string) error {
	if mode != ModeMonitor && mode != ModeEnforce && mode != "" {
		return fmt.Errorf("mode %q is not monitor or enforce", mode)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	found := false
	if e.cur != nil {
		for _, p := range e.cur.policies {
			found = found || p.ID == id
		}
	}
	if !found {
		return fmt.Errorf("no policy %q in force", id)
	}
	old, had := e.modes[id]
	if mode == "" {
		delete(e.modes, id)
	} else {
		e.modes[id] = mode
	}
	if err := e.reloadLocked(); err != nil {
		if had {
			e.modes[id] = old
		} else {
			delete(e.modes, id)
		}
		return err
	}
	return nil
}

// ResetCommands forgets what the collector ordered (a new command epoch).
func (e *Engine) ResetCommands() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.pushed, e.pushedName, e.modes = nil, "", map[string]string{}
	_ = e.reloadLocked()
	if !e.enforcing && !e.cfg.NoEnforce {
		e.enforcing = true
		e.resp.Reattach()
	}
}

// SetEnforcing is the kill switch: false detaches every response hook at
// once (nothing is killed or blocked, nothing is reported); true attaches
// them again.
func (e *Engine) SetEnforcing(on bool, by string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	defer e.signal()
	if on == e.enforcing {
		return nil
	}
	e.enforcing = on
	if !on {
		e.log.Warn().Str("by", by).Msg("kill switch: every response hook detached")
		return e.resp.Detach()
	}
	e.resp.Reattach()
	e.log.Warn().Str("by", by).Msg("kill switch off: response hooks attached again")
	return nil
}

// Watch reloads when the policy file changes (an editor's rename or a
// ConfigMap's symlink swap included) until ctx ends.
func (e *Engine) Watch(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	dir := filepath.Dir(e.cfg.PolicyFile)
	if err := w.Add(dir); err != nil {
		w.Close()
		return fmt.Errorf("watching %s: %w", dir, err)
	}
	go func() {
		defer w.Close()
		var debounce <-chan time.Time
		for {
			select {
			case <-ctx.Done():
				return
			case ev := <-w.Events:
				base := filepath.Base(e.cfg.PolicyFile)
				if filepath.Base(ev.Name) == base || strings.HasPrefix(filepath.Base(ev.Name), "..") {
					debounce = time.After(200 * time.Millisecond)
				}
			case <-w.Errors:
			case <-debounce:
				if err := e.Reload(); err != nil {
					e.log.Debug().Err(err).Msg("reload after a change of the policy file")
				}
			}
		}
	}()
	return nil
}

// Status is the policy set as health and the policies event report it.
func (e *Engine) Status() *event.Policies {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := &event.Policies{File: e.cfg.PolicyFile, Generation: e.generation, LoadedAt: e.loadedAt, Source: e.source,
		Errors: append([]string(nil), e.errs...), Enforcing: e.enforcing, Policies: []event.PolicyStatus{}}
	if e.cur == nil {
		return st
	}
	for _, p := range e.cur.policies {
		ps := *e.counts[p.ID]
		ps.Action, ps.Mode = p.Action, p.Mode
		if h, ok := hookOf[p.Action]; ok {
			ps.Unenforceable = e.resp.Unavailable(h)
		}
		if notes := e.cur.notes[p.ID]; len(notes) > 0 && ps.Unenforceable == "" {
			ps.Unenforceable = strings.Join(notes, "; ")
		}
		st.Policies = append(st.Policies, ps)
	}
	return st
}

// PoliciesEvent is the event that reports the policy set.
func (e *Engine) PoliciesEvent() *event.Event {
	ev := &event.Event{Kind: event.KindResponsePolicies, Time: e.now().UTC(), BootNS: kernel.BootNow()}
	ev.Process = event.Process{PID: e.cfg.SelfPID, Comm: "watchpost-agent", LoginUID: event.AUIDUnset}
	ev.Policies = e.Status()
	return ev
}

// Respond sees every event after detection: it counts what the kernel's
// hooks did and carries out kill on detection for alerts. It returns the
// events its own actions make.
func (e *Engine) Respond(ev *event.Event) []*event.Event {
	if ev.Response != nil {
		e.count(ev.Response)
		return nil
	}
	if ev.Kind != event.KindAlert || ev.Alert == nil {
		return nil
	}
	e.mu.Lock()
	c, enforcing := e.cur, e.enforcing
	e.mu.Unlock()
	if c == nil || !enforcing {
		return nil
	}
	var out []*event.Event
	for _, p := range c.policies {
		if p.Action != ActionKillOnDetection || !e.detectionMatch(p, ev) {
			continue
		}
		r := e.killOnDetection(p, ev)
		e.count(r.Response)
		out = append(out, r)
	}
	return out
}

func (e *Engine) count(r *event.Response) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.counts[r.Policy]
	if c == nil {
		return
	}
	switch r.Outcome {
	case "killed", "blocked":
		c.Acted++
	case "would_kill", "would_block":
		c.WouldHave++
	case "failed":
		c.Failed++
	}
}

// detectionMatch: the alert's rule and process are the policy's.
func (e *Engine) detectionMatch(p Policy, ev *event.Event) bool {
	ruleOK := false
	for _, r := range p.Selector.Rule {
		ruleOK = ruleOK || globMatch(r, ev.Alert.RuleID)
	}
	if !ruleOK {
		return false
	}
	proc := ev.Process
	if !selects(p.Selector, proc, ev, e.cfg.CgroupRoot, false) {
		return false
	}
	return !selects(p.Allow, proc, ev, e.cfg.CgroupRoot, true)
}

// selects: every attribute given matches (any: one attribute matching).
func selects(s Selector, proc event.Process, ev *event.Event, root string, any bool) bool {
	checks := []struct {
		given bool
		ok    func() bool
	}{
		{len(s.Exe) > 0, func() bool { return anyGlob(s.Exe, proc.Exe) }},
		{len(s.Ancestor) > 0, func() bool {
			for _, a := range ev.Ancestry {
				if anyGlob(s.Ancestor, a.Exe) {
					return true
				}
			}
			return false
		}},
		{len(s.User) > 0, func() bool {
			for _, u := range s.User {
				if uid, err := lookupUser(u); err == nil && uid == proc.UID {
					return true
				}
			}
			return false
		}},
		{len(s.Cgroup) > 0, func() bool {
			cg := "/" + strings.TrimPrefix(ev.Alert.Cgroup, "/")
			for _, c := range s.Cgroup {
				c = "/" + strings.TrimPrefix(strings.TrimPrefix(c, root), "/")
				if cg == c || strings.HasPrefix(cg, strings.TrimSuffix(c, "/")+"/") || globMatch(c, cg) {
					return true
				}
			}
			return false
		}},
		{len(s.Unit) > 0, func() bool {
			for _, part := range strings.Split(ev.Alert.Cgroup, "/") {
				if anyGlob(s.Unit, part) {
					return true
				}
			}
			return false
		}},
	}
	for _, c := range checks {
		if !c.given {
			continue
		}
		ok := c.ok()
		if any && ok {
			return true
		}
		if !any && !ok {
			return false
		}
	}
	return !any
}

func anyGlob(patterns []string, s string) bool {
	for _, p := range patterns {
		if globMatch(p, s) {
			return true
		}
	}
	return false
}

// killOnDetection signals the alert's process (or its process group) and
// reports it. Protected processes are never signalled.
func (e *Engine) killOnDetection(p Policy, alert *event.Event) *event.Event {
	ev := &event.Event{Kind: event.KindResponse, Time: e.now().UTC(), BootNS: kernel.BootNow(),
		Process: alert.Process, Ancestry: alert.Ancestry}
	r := &event.Response{Policy: p.ID, Action: ActionKillOnDetection, Mode: p.Mode, RuleID: alert.Alert.RuleID, Group: p.Group}
	ev.Response = r
	pid := alert.Process.PID
	targets := []uint32{pid}
	if p.Group {
		if pgid, err := unix.Getpgid(int(pid)); err == nil {
			targets = e.group(uint32(pgid))
		}
	}
	var refused []string
	for _, t := range targets {
		if why := e.protectedProcess(t); why != "" {
			refused = append(refused, fmt.Sprintf("%d: %s", t, why))
			continue
		}
		r.Targets = append(r.Targets, t)
	}
	if len(refused) > 0 {
		r.Error = "protected, not signalled: " + strings.Join(refused, ", ")
	}
	if len(r.Targets) == 0 {
		r.Outcome = "failed"
		return ev
	}
	if p.Mode != ModeEnforce {
		r.Outcome = "would_kill"
		return ev
	}
	r.Outcome = "killed"
	var failed []string
	for _, t := range r.Targets {
		if err := killPid(t, alert.Process.StartBootNS); err != nil {
			failed = append(failed, fmt.Sprintf("%d: %v", t, err))
		}
	}
	if len(failed) > 0 {
		r.Outcome = "failed"
		r.Error = strings.TrimPrefix(r.Error+"; ", "; ") + "signal failed: " + strings.Join(failed, ", ")
	}
	return ev
}

// killPid sends SIGKILL through a pidfd, so that a pid reused since the
// alert is not hit.
func killPid(pid uint32, _ uint64) error {
	fd, err := unix.PidfdOpen(int(pid), 0)
	if err != nil {
		if errors.Is(err, unix.ENOSYS) {
			return unix.Kill(int(pid), unix.SIGKILL)
		}
		return err
	}
	defer unix.Close(fd)
	return unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
}

// group lists the processes of a process group.
func (e *Engine) group(pgid uint32) []uint32 {
	ents, err := os.ReadDir(e.cfg.ProcRoot)
	if err != nil {
		return []uint32{pgid}
	}
	var out []uint32
	for _, d := range ents {
		pid, err := strconv.ParseUint(d.Name(), 10, 32)
		if err != nil {
			continue
		}
		if g, err := unix.Getpgid(int(pid)); err == nil && uint32(g) == pgid {
			out = append(out, uint32(pid))
		}
	}
	return out
}

// protectedProcess says why a process is never acted on, or "".
func (e *Engine) protectedProcess(pid uint32) string {
	switch {
	case pid <= 1:
		return "pid 1"
	case pid == e.cfg.SelfPID:
		return "the agent"
	}
	exe, err := os.Readlink(fmt.Sprintf("%s/%d/exe", e.cfg.ProcRoot, pid))
	if err != nil {
		// Kernel threads have no executable.
		if b, err := os.ReadFile(fmt.Sprintf("%s/%d/stat", e.cfg.ProcRoot, pid)); err == nil && kthread(b) {
			return "a kernel thread"
		}
		return ""
	}
	for _, p := range e.cfg.Protected {
		if p == exe {
			return "protected executable " + exe
		}
	}
	return ""
}

// kthread reads PF_KTHREAD from /proc/pid/stat's flags (field 9).
func kthread(stat []byte) bool {
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 7 {
		return false
	}
	flags, _ := strconv.ParseUint(f[6], 10, 64)
	return flags&0x00200000 != 0
}

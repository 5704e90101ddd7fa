package kernel

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/watchpost/watchpost/agent/event"
)

// Hook is a kernel hook that carries out response rules.
type Hook int

// Hooks, in the kernel's enum wp_resp_hook order.
const (
	HookExec    Hook = Hook(wpWpRespHookWP_RESP_HOOK_EXEC)
	HookConnect Hook = Hook(wpWpRespHookWP_RESP_HOOK_CONNECT)
	HookSocket  Hook = Hook(wpWpRespHookWP_RESP_HOOK_SOCKET)
	HookDevice  Hook = Hook(wpWpRespHookWP_RESP_HOOK_DEVICE)
	hookCount        = int(wpWpRespHookWP_RESP_HOOKS)
)

// MaxRules is the number of rules one hook holds; MaxPolicies the number
// of policies the kernel masks can tell apart (bit N selects by the image,
// bit N+32 by an ancestor's image: AncestorBit).
const (
	MaxRules    = int(wpWpRespLimitWP_RESP_RULES)
	MaxPolicies = 32
)

// Bit is policy i's bit in Masks.Sel (its exe selector) and Masks.Allow;
// AncestorBit its bit in Masks.Sel for its ancestor selector.
func Bit(i int) uint64         { return 1 << uint(i) }
func AncestorBit(i int) uint64 { return 1 << uint(i+32) }

var hookNames = [...]string{"exec", "connect", "socket", "device"}

func (h Hook) String() string {
	if int(h) >= 0 && int(h) < len(hookNames) {
		return hookNames[h]
	}
	return fmt.Sprintf("hook(%d)", int(h))
}

// hookPrograms are the programs that carry out each hook's rules, with the
// cgroup attach type of the cgroup ones.
var hookPrograms = map[Hook][]struct {
	name   string
	attach ebpf.AttachType // 0: a tracing program; attachSyscallEnter: syscalls/sys_enter_socket
}{
	HookExec:    {{"wp_respond_exec", 0}},
	HookConnect: {{"wp_respond_connect4", ebpf.AttachCGroupInet4Connect}, {"wp_respond_connect6", ebpf.AttachCGroupInet6Connect}, {"wp_respond_sendmsg4", ebpf.AttachCGroupUDP4Sendmsg}, {"wp_respond_sendmsg6", ebpf.AttachCGroupUDP6Sendmsg}},
	HookSocket:  {{"wp_respond_sock_create", ebpf.AttachCGroupInetSockCreate}, {"wp_respond_socket_enter", attachSyscallEnter}},
	HookDevice:  {{"wp_respond_dev", ebpf.AttachCGroupDevice}},
}

// attachSyscallEnter marks the tracepoint program at the entry of socket(2).
const attachSyscallEnter = ebpf.AttachType(^uint32(0))

// respondTracking keeps the per-process masks (fork and exit); it runs
// whenever any hook is attached.
var respondTracking = []string{"wp_respond_fork", "wp_respond_exit"}

// isRespondProgram: the response programs are loaded and attached by the
// Responder, not with the sensor's collection (a kernel that refuses one
// of them must still run the sensor).
func isRespondProgram(name string) bool { return strings.HasPrefix(name, "wp_respond_") }

// isOptionalProgram: programs loaded on demand, not with the sensor's
// collection: response (Responder) and industrial inspection (Inspector).
func isOptionalProgram(name string) bool { return isRespondProgram(name) || isInspectProgram(name) }

// Rule is one compiled response rule.
type Rule struct {
	// Policy is the policy's index (0..MaxPolicies-1): its bit in the masks.
	Policy  int
	Enforce bool
	// What the process must be, beyond not being allowlisted for the
	// policy: its image selected (Exe), an ancestor's image selected
	// (Ancestor), in a selected cgroup (Cgroup), running as UID.
	Exe, Ancestor, Cgroup bool
	UID                   *uint32
	// Connect: destination (a zero prefix: any), ports (0-65535 for any),
	// family (unix.AF_INET/AF_INET6, 0 any), protocol (IPPROTO_TCP/UDP, 0 any).
	Dest           netip.Prefix
	PortLo, PortHi uint16
	Family         uint16
	Protocol       uint16
	// Socket: family (0 any), type (0 any), protocol (-1 any).
	SockType     uint16
	SockProtocol int
	// Device: kind (0 any, 1 block, 2 char), major (-1 any), minor range,
	// access denied (DevMknod|DevRead|DevWrite).
	DevType    uint16
	DevMajor   int64
	DevMinorLo uint32
	DevMinorHi uint32
	DevAccess  uint16
}

// Device access bits (BPF_DEVCG_ACC_*).
const (
	DevMknod uint16 = 1
	DevRead  uint16 = 2
	DevWrite uint16 = 4
)

// Masks are the policies (bits) whose selector or allowlist names an
// executable or cgroup.
type Masks struct {
	Sel, Allow uint64
	Protected  bool
}

// PolicyRef describes a policy in the records the kernel sends.
type PolicyRef struct {
	ID     string
	Action string
}

// RuleSet is everything the kernel needs for one policy set.
type RuleSet struct {
	Policies []PolicyRef // by index
	Rules    [hookCount][]Rule
	// Exes are executables by path (identified by inode when applied);
	// Cgroups are cgroup v2 directories by path.
	Exes    map[string]Masks
	Cgroups map[string]Masks
}

// HookState says whether a hook is carried out on this kernel.
type HookState struct {
	Hook     string `json:"hook"`
	Attached bool   `json:"attached"`
	// Error: why the hook is unavailable (the program did not load or
	// attach), or the kill switch.
	Error string `json:"error,omitempty"`
}

// respTable names what the kernel's records refer to, per generation.
type respTable struct {
	policies [2][]PolicyRef
	exes     [2]map[wpWpExeKey]string
}

// Responder loads, attaches and fills the response programs. Its hooks
// share the sensor's maps and ring buffer.
type Responder struct {
	s      *Sensor
	cgroup string

	mu     sync.Mutex
	progs  map[string]*ebpf.Program
	links  map[string]link.Link
	errs   map[Hook]string
	gen    uint32 // the generation in force
	table  respTable
	exeSet [2]map[wpWpExeKey]struct{}
	cgSet  [2]map[uint64]struct{}
	counts [2][hookCount]uint32
}

// Cgroup2Root finds the cgroup v2 mount in /proc/mounts (/sys/fs/cgroup on
// unified hosts, /sys/fs/cgroup/unified on hybrid ones).
func Cgroup2Root() (string, error) {
	f, err := os.Open("/proc/mounts")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 3 && fields[2] == "cgroup2" {
			return fields[1], nil
		}
	}
	return "", errors.New("no cgroup2 file system in /proc/mounts: the cgroup hooks need the unified hierarchy")
}

// NewResponder loads the response programs and attaches them: the exec
// hook host-wide, the cgroup hooks at cgroup (a cgroup v2 directory; the
// root covers the host). A hook whose program this kernel refuses is
// reported in Hooks, not an error.
func (s *Sensor) NewResponder(cgroup string) (*Responder, error) {
	if s.spec == nil {
		return nil, errors.New("the sensor was not loaded from its object")
	}
	r := &Responder{s: s, cgroup: cgroup, progs: map[string]*ebpf.Program{}, links: map[string]link.Link{}, errs: map[Hook]string{}}
	for g := range 2 {
		r.exeSet[g] = map[wpWpExeKey]struct{}{}
		r.cgSet[g] = map[uint64]struct{}{}
	}
	s.resp.Store(&r.table)
	if err := r.load(respondTracking...); err != nil {
		r.Close()
		return nil, fmt.Errorf("response: %w", err)
	}
	if err := r.attachTracking(); err != nil {
		r.Close()
		return nil, fmt.Errorf("response: %w", err)
	}
	for h := range Hook(hookCount) {
		if err := r.attachHook(h); err != nil {
			r.errs[h] = err.Error()
		}
	}
	return r, nil
}

func (r *Responder) load(names ...string) error {
	for _, name := range names {
		if r.progs[name] != nil {
			continue
		}
		p, err := r.s.loadProgram(name)
		if err != nil {
			return err
		}
		r.progs[name] = p
	}
	return nil
}

// loadProgram loads one program of the object that the sensor's
// collection left out (response, inspection) against the sensor's own
// maps: only the program is new.
func (s *Sensor) loadProgram(name string) (*ebpf.Program, error) {
	ps, ok := s.spec.Programs[name]
	if !ok {
		return nil, fmt.Errorf("program %s is not in the object", name)
	}
	spec := s.spec.Copy()
	spec.Programs = map[string]*ebpf.ProgramSpec{name: ps.Copy()}
	repl := make(map[string]*ebpf.Map, len(s.coll.Maps))
	for n, m := range s.coll.Maps {
		if _, ok := spec.Maps[n]; ok {
			repl[n] = m
		}
	}
	for n := range spec.Maps {
		if _, ok := repl[n]; !ok {
			delete(spec.Maps, n)
		}
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{MapReplacements: repl})
	if err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("loading %s: %w (%s)", name, err, strings.Join(tail(verr.Log, 3), "; "))
		}
		return nil, fmt.Errorf("loading %s: %w", name, err)
	}
	defer coll.Close()
	return coll.DetachProgram(name), nil
}

func (r *Responder) attachTracking() error {
	for _, name := range respondTracking {
		l, err := link.AttachTracing(link.TracingOptions{Program: r.progs[name], AttachType: ebpf.AttachTraceRawTp})
		if err != nil {
			return fmt.Errorf("attaching %s: %w", name, err)
		}
		r.links[name] = l
	}
	return nil
}

func (r *Responder) attachHook(h Hook) error {
	var names []string
	for _, p := range hookPrograms[h] {
		names = append(names, p.name)
	}
	if err := r.load(names...); err != nil {
		return err
	}
	for _, p := range hookPrograms[h] {
		if r.links[p.name] != nil {
			continue
		}
		var l link.Link
		var err error
		switch p.attach {
		case 0:
			l, err = link.AttachTracing(link.TracingOptions{Program: r.progs[p.name], AttachType: ebpf.AttachTraceRawTp})
		case attachSyscallEnter:
			l, err = link.Tracepoint("syscalls", "sys_enter_socket", r.progs[p.name], nil)
		default:
			// A bpf_link beside the cgroup's other programs (systemd's
			// DeviceAllow=, a container runtime's): an operation passes
			// only when every program allows it.
			l, err = link.AttachCgroup(link.CgroupOptions{Path: r.cgroup, Attach: p.attach, Program: r.progs[p.name]})
		}
		if err != nil {
			return fmt.Errorf("attaching %s at %s: %w", p.name, r.cgroup, err)
		}
		r.links[p.name] = l
	}
	return nil
}

// Hooks reports each hook's state.
func (r *Responder) Hooks() []HookState {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]HookState, 0, hookCount)
	for h := range Hook(hookCount) {
		st := HookState{Hook: h.String(), Attached: true, Error: r.errs[h]}
		for _, p := range hookPrograms[h] {
			if r.links[p.name] == nil {
				st.Attached = false
			}
		}
		out = append(out, st)
	}
	return out
}

// Unavailable returns why hook h cannot act here, or "".
func (r *Responder) Unavailable(h Hook) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range hookPrograms[h] {
		if r.links[p.name] == nil {
			if e := r.errs[h]; e != "" {
				return e
			}
			return "detached"
		}
	}
	return ""
}

// Detach is the kill switch: it closes every hook's link (the exec kill
// and the cgroup programs), so nothing is blocked or killed any more. The
// process tracking stays, so Reattach needs no new seed.
func (r *Responder) Detach() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var wg sync.WaitGroup
	var emu sync.Mutex
	var errs []error
	for h := range Hook(hookCount) {
		for _, p := range hookPrograms[h] {
			l := r.links[p.name]
			if l == nil {
				continue
			}
			delete(r.links, p.name)
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := l.Close(); err != nil {
					emu.Lock()
					errs = append(errs, err)
					emu.Unlock()
				}
			}()
		}
		if r.errs[h] == "" {
			r.errs[h] = "kill switch: detached"
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Reattach undoes Detach.
func (r *Responder) Reattach() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for h := range Hook(hookCount) {
		if err := r.attachHook(h); err != nil {
			r.errs[h] = err.Error()
		} else {
			delete(r.errs, h)
		}
	}
}

// Close detaches everything and unloads the programs; the maps are the
// sensor's.
func (r *Responder) Close() error {
	err := r.Detach()
	r.mu.Lock()
	defer r.mu.Unlock()
	for name, l := range r.links {
		err = errors.Join(err, l.Close())
		delete(r.links, name)
	}
	for name, p := range r.progs {
		p.Close()
		delete(r.progs, name)
	}
	if r.s.resp.Load() == &r.table {
		r.s.resp.Store(nil)
	}
	return err
}

// Apply puts a rule set in force: it writes the idle generation (masks,
// rules and every running process's masks) and then switches to it with
// one map write, so no hook ever sees half of a set.
func (r *Responder) Apply(set RuleSet) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(set.Policies) > MaxPolicies {
		return fmt.Errorf("%d policies: the kernel holds at most %d", len(set.Policies), MaxPolicies)
	}
	g := 1 - r.gen
	m := r.s.coll.Maps
	exes, names, err := resolveExes(set.Exes)
	if err != nil {
		return err
	}
	cgs := map[uint64]Masks{}
	for path, mk := range set.Cgroups {
		id, err := CgroupID(path)
		if err != nil {
			return fmt.Errorf("cgroup %s: %w", path, err)
		}
		prev := cgs[id]
		cgs[id] = Masks{Sel: prev.Sel | mk.Sel, Allow: prev.Allow | mk.Allow}
	}
	// Masks of the idle generation; entries the set no longer names get 0.
	if err := writeMasks(m[wpMapWpRespExes], g, exes, r.exeSet[g], r.exeSet[1-g]); err != nil {
		return fmt.Errorf("executable masks: %w", err)
	}
	if err := writeMasks(m[wpMapWpRespCgroups], g, cgs, r.cgSet[g], r.cgSet[1-g]); err != nil {
		return fmt.Errorf("cgroup masks: %w", err)
	}
	var counts [hookCount]uint32
	for h := range hookCount {
		if len(set.Rules[h]) > MaxRules {
			return fmt.Errorf("%s: %d rules, the kernel holds at most %d", Hook(h), len(set.Rules[h]), MaxRules)
		}
		for i, rule := range set.Rules[h] {
			kr, err := rule.kernel()
			if err != nil {
				return fmt.Errorf("%s rule %d: %w", Hook(h), i, err)
			}
			idx := (g*uint32(hookCount)+uint32(h))*uint32(MaxRules) + uint32(i)
			if err := m[wpMapWpRespRules].Put(idx, &kr); err != nil {
				return fmt.Errorf("writing %s rule %d: %w", Hook(h), i, err)
			}
		}
		counts[h] = uint32(len(set.Rules[h]))
	}
	if err := seedProcs(m[wpMapWpRespProcs], g, exes); err != nil {
		return fmt.Errorf("process masks: %w", err)
	}
	r.table.policies[g] = append([]PolicyRef(nil), set.Policies...)
	r.table.exes[g] = names
	r.counts[g] = counts
	rc := wpWpRespConfig{Active: g, Count: r.counts}
	if len(cgs) > 0 || len(r.cgSet[1-g]) > 0 {
		rc.Cgroups = 1
	}
	if err := m[wpMapWpRespConfigMap].Put(uint32(0), &rc); err != nil {
		return fmt.Errorf("switching to the new rules: %w", err)
	}
	r.gen = g
	r.s.resp.Store(&respTable{policies: r.table.policies, exes: r.table.exes})
	// The old generation's entries are not needed any more once no hook
	// reads them: the masks both generations no longer name are removed.
	pruneMasks(m[wpMapWpRespExes], r.exeSet[g], r.exeSet[1-g], exes)
	pruneMasks(m[wpMapWpRespCgroups], r.cgSet[g], r.cgSet[1-g], cgs)
	return nil
}

func (rule Rule) kernel() (wpWpRespRule, error) {
	if rule.Policy < 0 || rule.Policy >= MaxPolicies {
		return wpWpRespRule{}, fmt.Errorf("policy index %d out of range", rule.Policy)
	}
	kr := wpWpRespRule{Policy: uint32(rule.Policy), Family: rule.Family, Protocol: rule.Protocol,
		PortLo: rule.PortLo, PortHi: rule.PortHi, SockType: rule.SockType, DevType: rule.DevType,
		DevAccess: rule.DevAccess, DevMinorLo: rule.DevMinorLo, DevMinorHi: rule.DevMinorHi, DevMajor: 0xffffffff}
	if rule.Enforce {
		kr.Mode = uint8(wpWpRespModeWP_RESP_ENFORCE)
	}
	if rule.Exe {
		kr.Need |= uint8(wpWpRespNeedWP_RESP_NEED_EXE)
	}
	if rule.Ancestor {
		kr.Need |= uint8(wpWpRespNeedWP_RESP_NEED_ANC)
	}
	if rule.Cgroup {
		kr.Need |= uint8(wpWpRespNeedWP_RESP_NEED_CGROUP)
	}
	if rule.UID != nil {
		kr.Need |= uint8(wpWpRespNeedWP_RESP_NEED_UID)
		kr.Uid = *rule.UID
	}
	if rule.DevMajor >= 0 {
		kr.DevMajor = uint32(rule.DevMajor)
	}
	kr.Protocol = rule.Protocol
	if rule.SockProtocol < 0 {
		kr.Protocol = 0xffff
	} else if rule.SockProtocol > 0 {
		kr.Protocol = uint16(rule.SockProtocol)
	}
	if rule.Dest.IsValid() {
		a := rule.Dest.Addr()
		bits := rule.Dest.Bits()
		if a.Is4() {
			a = netip.AddrFrom16(a.As16())
			bits += 96
		}
		kr.Addr = a.As16()
		kr.Prefixlen = uint32(bits)
	}
	return kr, nil
}

// resolveExes identifies executables by inode; a path that does not exist
// (yet) is skipped: nothing can run it.
func resolveExes(paths map[string]Masks) (map[wpWpExeKey]Masks, map[wpWpExeKey]string, error) {
	out := map[wpWpExeKey]Masks{}
	names := map[wpWpExeKey]string{}
	for path, mk := range paths {
		key, err := exeKey(path)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return nil, nil, fmt.Errorf("executable %s: %w", path, err)
		}
		prev := out[key]
		out[key] = Masks{Sel: prev.Sel | mk.Sel, Allow: prev.Allow | mk.Allow, Protected: prev.Protected || mk.Protected}
		names[key] = path
	}
	return out, names, nil
}

// writeMasks sets generation g of every key in want, and clears g of the
// keys set before that want no longer names.
func writeMasks[K comparable](m *ebpf.Map, g uint32, want map[K]Masks, setG, setOther map[K]struct{}) error {
	put := func(k K, mk Masks) error {
		var v wpWpRespMasks
		if err := m.Lookup(k, &v); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
		v.Sel[g], v.Allow[g] = mk.Sel, mk.Allow
		v.Flags = 0
		if mk.Protected {
			v.Flags = uint32(wpWpRespFlagsWP_RESP_F_PROTECTED)
		}
		return m.Put(k, &v)
	}
	for k := range setG {
		if _, ok := want[k]; !ok {
			if _, other := setOther[k]; !other {
				continue // removed at the last prune
			}
			if err := put(k, Masks{}); err != nil {
				return err
			}
		}
	}
	for k, mk := range want {
		if err := put(k, mk); err != nil {
			return err
		}
	}
	for k := range setG {
		delete(setG, k)
	}
	for k := range want {
		setG[k] = struct{}{}
	}
	return nil
}

func pruneMasks[K comparable, V any](m *ebpf.Map, setG, setOther map[K]struct{}, want map[K]V) {
	for k := range setOther {
		if _, ok := want[k]; !ok {
			_ = m.Delete(k)
			delete(setOther, k)
		}
	}
}

// seedProcs writes generation g of every running process's masks from
// /proc: its image's and, for ancestors, the images of its parents.
func seedProcs(m *ebpf.Map, g uint32, exes map[wpWpExeKey]Masks) error {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return err
	}
	type proc struct {
		ppid uint32
		mk   Masks
	}
	procs := map[uint32]proc{}
	for _, e := range ents {
		pid, err := strconv.ParseUint(e.Name(), 10, 32)
		if err != nil {
			continue
		}
		p := proc{ppid: readPPID(uint32(pid))}
		if key, err := exeKey(fmt.Sprintf("/proc/%d/exe", pid)); err == nil {
			p.mk = exes[key]
		}
		procs[uint32(pid)] = p
	}
	for pid, p := range procs {
		var anc uint64
		for q, depth := p.ppid, 0; q > 0 && depth < 64; depth++ {
			pp, ok := procs[q]
			if !ok {
				break
			}
			anc |= pp.mk.Sel
			q = pp.ppid
		}
		var v wpWpRespProc
		err := m.Lookup(pid, &v)
		if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
		if err != nil && p.mk == (Masks{}) && anc == 0 {
			continue // nothing to say about it
		}
		v.Sel[g], v.Allow[g], v.Anc[g] = p.mk.Sel, p.mk.Allow, anc
		v.Flags = 0
		if p.mk.Protected {
			v.Flags = uint32(wpWpRespFlagsWP_RESP_F_PROTECTED)
		}
		if err := m.Update(pid, &v, ebpf.UpdateAny); err != nil {
			return err
		}
	}
	return nil
}

func readPPID(pid uint32) uint32 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// comm may hold spaces and parentheses: fields follow the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0
	}
	v, _ := strconv.ParseUint(f[1], 10, 32)
	return uint32(v)
}

// CgroupID is the id of a cgroup v2 directory (its inode number), as
// bpf_get_current_cgroup_id reports it.
func CgroupID(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return 0, fmt.Errorf("%s is not a cgroup directory", path)
	}
	return st.Ino, nil
}

// UnitCgroups finds the cgroups of a systemd unit (system.slice/<unit>, or
// anywhere below the root for user units and slices) under root.
func UnitCgroups(root, unit string) []string {
	var out []string
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		if d.Name() == unit {
			out = append(out, p)
			return filepath.SkipDir
		}
		if strings.Count(strings.TrimPrefix(p, root), "/") > 4 {
			return filepath.SkipDir
		}
		return nil
	})
	sort.Strings(out)
	return out
}

var respEventSize = int(unsafe.Sizeof(wpWpRespEvent{}))

// respTable is the policy table that names response records, nil when the
// decoder has none (a decoder built outside a sensor, as in tests).
func (d *decoder) respTable() *respTable {
	if d.resp == nil {
		return nil
	}
	return d.resp.Load()
}

// decodeResp turns a response record into an event.
func (d *decoder) decodeResp(ev *event.Event, raw []byte) error {
	if len(raw) < respEventSize {
		return fmt.Errorf("response record of %d bytes: %w", len(raw), errShort)
	}
	r := (*wpWpRespEvent)(unsafe.Pointer(&raw[0]))
	resp := &event.Response{Mode: "monitor"}
	enforced := r.RespFlags&uint16(wpWpRespFlagsWP_RESP_F_ENFORCED) != 0
	if enforced {
		resp.Mode = "enforce"
	}
	if t := d.respTable(); t != nil {
		g := r.Generation & 1
		if int(r.Policy) < len(t.policies[g]) {
			resp.Policy = t.policies[g][r.Policy].ID
			resp.Action = t.policies[g][r.Policy].Action
		}
		if ev.Kind == event.KindResponseExec {
			resp.Exe = t.exes[g][wpWpExeKey{Ino: r.ExeIno, Dev: r.ExeDev}]
		}
	}
	if resp.Policy == "" {
		resp.Policy = fmt.Sprintf("#%d", r.Policy)
	}
	switch ev.Kind {
	case event.KindResponseExec:
		resp.Outcome = "would_kill"
		if enforced {
			resp.Outcome = "killed"
		}
		if r.RespFlags&uint16(wpWpRespFlagsWP_RESP_F_SIGNAL_FAILED) != 0 {
			resp.Outcome, resp.Error = "failed", "bpf_send_signal refused the signal"
		}
		if resp.Exe == "" {
			resp.Exe = fmt.Sprintf("inode %d on %s", r.ExeIno, event.DevString(r.ExeDev))
		}
	case event.KindResponseConnect, event.KindResponseSocket:
		resp.Outcome = "would_block"
		if enforced {
			resp.Outcome = "blocked"
		}
		if r.RespFlags&uint16(wpWpRespFlagsWP_RESP_F_SIGNAL) != 0 {
			resp.Outcome = "would_kill"
			if enforced {
				resp.Outcome = "killed"
			}
			if r.RespFlags&uint16(wpWpRespFlagsWP_RESP_F_SIGNAL_FAILED) != 0 {
				resp.Outcome, resp.Error = "failed", "bpf_send_signal refused the signal"
			}
		}
		resp.Family = familyName(r.Family)
		resp.SockType = sockTypeName(r.SockType)
		resp.Protocol = protoName(r.Protocol)
		if ev.Kind == event.KindResponseConnect {
			a := netip.AddrFrom16(r.Daddr).Unmap()
			resp.DstAddr, resp.DstPort = a.String(), r.Dport
			resp.Send = r.RespFlags&uint16(wpWpRespFlagsWP_RESP_F_SENDMSG) != 0
		}
	case event.KindResponseDevice:
		resp.Outcome = "would_block"
		if enforced {
			resp.Outcome = "blocked"
		}
		resp.DevKind = map[uint32]string{1: "block", 2: "char"}[r.DevType]
		resp.Device = fmt.Sprintf("%d:%d", r.DevMajor, r.DevMinor)
		for _, a := range []struct {
			bit  uint16
			name string
		}{{DevMknod, "mknod"}, {DevRead, "read"}, {DevWrite, "write"}} {
			if r.DevAccess&a.bit != 0 {
				resp.Access = append(resp.Access, a.name)
			}
		}
	}
	ev.Response = resp
	return nil
}

func familyName(f uint16) string {
	switch f {
	case unix.AF_INET:
		return "inet"
	case unix.AF_INET6:
		return "inet6"
	case unix.AF_PACKET:
		return "packet"
	case unix.AF_UNIX:
		return "unix"
	case unix.AF_NETLINK:
		return "netlink"
	}
	return strconv.Itoa(int(f))
}

func sockTypeName(t uint16) string {
	switch t {
	case unix.SOCK_STREAM:
		return "stream"
	case unix.SOCK_DGRAM:
		return "dgram"
	case unix.SOCK_RAW:
		return "raw"
	case unix.SOCK_SEQPACKET:
		return "seqpacket"
	}
	return strconv.Itoa(int(t))
}

func protoName(p uint16) string {
	switch p {
	case unix.IPPROTO_TCP:
		return "tcp"
	case unix.IPPROTO_UDP:
		return "udp"
	case unix.IPPROTO_ICMP:
		return "icmp"
	case 0:
		return ""
	}
	return strconv.Itoa(int(p))
}

package kernel

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/watchpost/watchpost/agent/event"
	"github.com/watchpost/watchpost/proto/limits"
)

// errShort is returned for a record shorter than its fixed part.
var errShort = errors.New("record shorter than its type's fixed part")

// decoder turns raw ring-buffer records into events. It is used by one
// goroutine; the scratch struct is reused for the large exec record.
type decoder struct {
	clock *bootClock
	// envValueMax clamps environment values (exec_env.max_value_bytes).
	envValueMax int
	exec        wpWpExecEvent
	file        wpWpFileEvent
	sec         wpWpSecEvent
	// resp names the policies of response records (nil: unnamed).
	resp *atomic.Pointer[respTable]
}

func newDecoder(c *bootClock, envValueMax int) *decoder {
	return &decoder{clock: c, envValueMax: envValueMax}
}

var (
	hdrSize       = int(unsafe.Sizeof(wpWpEventHdr{}))
	execFixedSize = int(unsafe.Offsetof(wpWpExecEvent{}.Buf))
	cloneSize     = int(unsafe.Sizeof(wpWpCloneEvent{}))
	nsSize        = int(unsafe.Sizeof(wpWpNsEvent{}))
	exitSize      = int(unsafe.Sizeof(wpWpExitEvent{}))
)

// decode is a pure function of the record bytes (and the boot clock).
func (d *decoder) decode(raw []byte) (*event.Event, error) {
	if len(raw) < hdrSize {
		return nil, fmt.Errorf("record of %d bytes: %w", len(raw), errShort)
	}
	hdr := (*wpWpEventHdr)(unsafe.Pointer(&raw[0]))
	ev := &event.Event{}
	d.header(ev, hdr)
	switch wpWpEventType(hdr.Type) {
	case wpWpEventTypeWP_EV_EXEC:
		if err := d.decodeExec(ev, raw); err != nil {
			return nil, err
		}
		return ev, nil
	case wpWpEventTypeWP_EV_CLONE:
		if len(raw) < cloneSize {
			return nil, fmt.Errorf("clone record of %d bytes: %w", len(raw), errShort)
		}
		r := (*wpWpCloneEvent)(unsafe.Pointer(&raw[0]))
		ev.Clone = &event.Clone{ChildPID: r.ChildPid, ChildTID: r.ChildTid, Thread: r.Hdr.Flags&uint16(wpWpFlagsWP_F_THREAD) != 0}
		return ev, nil
	case wpWpEventTypeWP_EV_EXIT:
		if len(raw) < exitSize {
			return nil, fmt.Errorf("exit record of %d bytes: %w", len(raw), errShort)
		}
		r := (*wpWpExitEvent)(unsafe.Pointer(&raw[0]))
		ev.Exit = decodeExit(r.ExitCode, ev.BootNS, r.StartBootNs)
		ev.Process.StartBootNS = r.StartBootNs
		return ev, nil
	case wpWpEventTypeWP_EV_MEMFD_EXEC:
		if err := d.decodeMemfd(ev, raw); err != nil {
			return nil, err
		}
		return ev, nil
	case wpWpEventTypeWP_EV_RESP_EXEC, wpWpEventTypeWP_EV_RESP_CONNECT, wpWpEventTypeWP_EV_RESP_SOCKET, wpWpEventTypeWP_EV_RESP_DEVICE:
		if err := d.decodeResp(ev, raw); err != nil {
			return nil, err
		}
		return ev, nil
	case wpWpEventTypeWP_EV_NAMESPACE:
		if len(raw) < nsSize {
			return nil, fmt.Errorf("namespace record of %d bytes: %w", len(raw), errShort)
		}
		ev.Namespace = decodeNamespace((*wpWpNsEvent)(unsafe.Pointer(&raw[0])))
		return ev, nil
	}
	var err error
	switch k := event.Kind(hdr.Type); {
	case k >= event.KindFileOpen && k <= event.KindFileSymlink:
		err = d.decodeFile(ev, raw)
	case k >= event.KindNetConnect && k <= event.KindNetSocket, k == event.KindNetConnectResult:
		err = d.decodeNet(ev, raw)
	case k >= event.KindModuleLoad && k <= event.KindSignal, k == event.KindUserfaultfd, k == event.KindMemfdCreate:
		err = d.decodeSec(ev, raw)
	default:
		err = fmt.Errorf("unknown record type %d", hdr.Type)
	}
	if err != nil {
		return nil, err
	}
	return ev, nil
}

func (d *decoder) header(ev *event.Event, h *wpWpEventHdr) {
	ev.Kind = event.Kind(h.Type)
	ev.BootNS = h.TsBootNs
	ev.Time = d.clock.wall(h.TsBootNs)
	ev.CPU = h.Cpu
	ev.Process = event.Process{
		PID:      h.Pid,
		TID:      h.Tid,
		PPID:     h.Ppid,
		UID:      h.Uid,
		GID:      h.Gid,
		EUID:     h.Uid,
		EGID:     h.Gid,
		LoginUID: event.AUIDUnset,
		CgroupID: h.CgroupId,
		Comm:     cString(h.Comm[:]),
	}
}

func (d *decoder) decodeExec(ev *event.Event, raw []byte) error {
	if len(raw) < execFixedSize {
		return fmt.Errorf("exec record of %d bytes: %w", len(raw), errShort)
	}
	e := &d.exec
	n := copy(unsafe.Slice((*byte)(unsafe.Pointer(e)), unsafe.Sizeof(*e)), raw)
	used := n - execFixedSize
	exeLen, cwdLen, argsLen, envLen := int(e.ExeLen), int(e.CwdLen), int(e.ArgsLen), int(e.EnvLen)
	if exeLen+cwdLen+argsLen+envLen > used {
		return fmt.Errorf("exec record: lengths %d+%d+%d+%d exceed the %d bytes sent", exeLen, cwdLen, argsLen, envLen, used)
	}
	buf := unsafe.Slice((*byte)(unsafe.Pointer(&e.Buf[0])), used)
	p := &ev.Process
	p.EUID, p.EGID = e.Euid, e.Egid
	p.LoginUID, p.SessionID = event.AUID(e.Auid), e.Sessionid
	p.StartBootNS = e.StartBootNs
	p.Exe = string(buf[:exeLen])
	p.Cwd = string(buf[exeLen : exeLen+cwdLen])
	flags := e.Hdr.Flags
	argBuf := buf[exeLen+cwdLen : exeLen+cwdLen+argsLen]
	if head := int(wpWpArgsSplitWP_ARGS_HEAD); flags&uint16(wpWpFlagsWP_F_ARGS_TRUNC) != 0 && len(argBuf) > head {
		p.Args = joinHeadTail(splitArgs(argBuf[:head]), splitArgs(argBuf[head:]), int(e.Argc))
	} else {
		p.Args = splitArgs(argBuf)
	}
	p.TTY = cString(e.Tty[:])
	ev.Exec = &event.Exec{
		ArgsTruncated: flags&uint16(wpWpFlagsWP_F_ARGS_TRUNC) != 0,
		ExeTruncated:  flags&uint16(wpWpFlagsWP_F_EXE_TRUNC) != 0,
		Argc:          e.Argc,
		ExeInode:      e.ExeIno,
		ExeDev:        event.DevString(e.ExeDev),
		Envc:          e.Envc,
		EnvTruncated:  flags&uint16(wpWpFlagsWP_F_ENV_TRUNC) != 0,
	}
	if envLen > 0 {
		env := exeLen + cwdLen + argsLen
		var cut bool
		ev.Exec.Env, ev.Exec.EnvDuplicates, cut = parseEnv(buf[env:env+envLen], d.envValueMax)
		ev.Exec.EnvTruncated = ev.Exec.EnvTruncated || cut
	}
	return nil
}

// parseEnv reads NUL-terminated NAME=value strings. The first value of a
// name goes to env (what getenv returns), later ones to dups as NAME=value;
// values longer than valueMax are clamped, and cut reports it.
func parseEnv(b []byte, valueMax int) (env map[string]string, dups []string, cut bool) {
	env = make(map[string]string)
	for len(b) > 0 {
		item := b
		if i := bytes.IndexByte(b, 0); i >= 0 {
			item, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		name, value, ok := bytes.Cut(item, []byte("="))
		if !ok || len(name) == 0 {
			continue
		}
		if valueMax > 0 && len(value) > valueMax {
			value, cut = value[:valueMax], true
		}
		if _, dup := env[string(name)]; dup {
			dups = append(dups, string(name)+"="+string(value))
			continue
		}
		env[string(name)] = string(value)
	}
	return env, dups, cut
}

// decodeExit splits a raw wait status as the kernel stores it in
// task->exit_code: the low 7 bits are a terminating signal, bit 7 a core
// dump, bits 8-15 the exit status.
func decodeExit(code uint32, now, start uint64) *event.Exit {
	x := &event.Exit{}
	if sig := code & 0x7f; sig != 0 {
		x.Signal = int(sig)
		x.CoreDumped = code&0x80 != 0
	} else {
		x.Code = int((code >> 8) & 0xff)
	}
	if now > start {
		x.LifetimeNS = now - start
	}
	return x
}

// splitArgs splits the NUL-separated argument area. A truncated last
// argument is kept as far as it was read.
func splitArgs(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	s := string(b)
	s = strings.TrimSuffix(s, "\x00")
	return strings.Split(s, "\x00")
}

// joinHeadTail joins the arguments read from the head and the tail of an
// argument area too long to send whole. The head's last and the tail's
// first argument are cut; when the counts show that they are the same
// argument (argc = head + tail - 1) they are joined into one around an
// ellipsis, otherwise each is marked where it was cut.
func joinHeadTail(head, tail []string, argc int) []string {
	if len(head) == 0 || len(tail) == 0 {
		return append(head, tail...)
	}
	out := make([]string, 0, len(head)+len(tail))
	out = append(out, head[:len(head)-1]...)
	last, first := head[len(head)-1], tail[0]
	if len(head)+len(tail)-1 == argc {
		out = append(out, last+limits.Ellipsis+first)
	} else {
		out = append(out, last+limits.Ellipsis, limits.Ellipsis+first)
	}
	return append(out, tail[1:]...)
}

func cString[T int8 | byte](b []T) string {
	bs := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(b))), len(b))
	for i, c := range bs {
		if c == 0 {
			return string(bs[:i])
		}
	}
	return string(bs)
}

// bootClock converts CLOCK_BOOTTIME nanoseconds to wall-clock time. The
// offset is re-read periodically so clock changes are followed.
type bootClock struct {
	offset atomic.Int64 // wall ns - boot ns
}

func newBootClock() *bootClock {
	c := &bootClock{}
	c.resync()
	return c
}

func (c *bootClock) resync() {
	var ts unix.Timespec
	before := time.Now()
	_ = unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	after := time.Now()
	mid := before.Add(after.Sub(before) / 2)
	c.offset.Store(mid.UnixNano() - ts.Nano())
}

func (c *bootClock) wall(bootNS uint64) time.Time {
	return time.Unix(0, int64(bootNS)+c.offset.Load()).UTC()
}

// BootNow returns the current CLOCK_BOOTTIME in nanoseconds.
func BootNow() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	return uint64(ts.Nano())
}

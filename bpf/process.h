/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* Process lifecycle: exec, clone/fork, exit. tp_btf on the sched
 * tracepoints (kernel >= 5.5), so the task pointers are typed. */
#ifndef WP_PROCESS_H
#define WP_PROCESS_H

#include "lib/common.h"
#include "lib/path.h"

#define WP_EXEC_OFF_MASK ((WP_PATH_MAX * 2) - 1)

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct wp_exec_event);
} wp_exec_heap SEC(".maps");

/* Names of the environment variables captured at exec (WP_ENV_LISTED). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct wp_env_key);
	__type(value, __u8);
} wp_env_names SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct wp_env_key);
} wp_env_key_heap SEC(".maps");

const struct wp_memfd_exec_event *wp_unused_memfd __attribute__((unused));
const struct wp_env_key *wp_unused_env_key __attribute__((unused));
const enum wp_env_mode *wp_unused_env_mode __attribute__((unused));
const enum wp_env_limit *wp_unused_env_limit __attribute__((unused));

/* wp_env_name_key keeps the bytes of k up to and including the first '='
 * and clears the rest ("PATH=/usr/bin" becomes "PATH=" and zeros), without
 * a branch per byte: each 8-byte word is searched for '=' with the
 * has-zero-byte trick on the word xor '=' repeated; the lowest flagged
 * byte is the first '=' (later flags may be borrows, never earlier ones). */
static __always_inline void wp_env_name_key(struct wp_env_key *k)
{
	__u64 *w = (__u64 *)k->name;
	__u64 keep = ~0ULL;
#pragma unroll
	for (int i = 0; i < WP_ENV_NAME_MAX / 8; i++) {
		__u64 v = w[i];
		__u64 t = v ^ 0x3d3d3d3d3d3d3d3dULL;
		__u64 z = (t - 0x0101010101010101ULL) & ~t & 0x8080808080808080ULL;
		__u64 low = z & -z;       /* high bit of the first '=' byte, or 0 */
		__u64 m = (low << 1) - 1; /* that byte and the ones before; all when none */
		w[i] = v & m & keep;
		__u64 none = (low - 1) >> 63; /* 1 while no '=' was found */
		asm volatile("" : "+r"(none));
		keep &= -none;
	}
}

/* wp_exec_env copies the new program's environment, or the variables of
 * it the agent listed, as NUL-terminated NAME=value strings to the exec
 * record being built (the per-CPU heap) at buf[base]. The variables are
 * reached through the envp array the ELF loader has just written above
 * argv on the new stack (mm->start_stack points at argc), so a long
 * variable costs nothing to skip and the order of the environment cannot
 * push a listed variable out of reach within cfg->env_vars variables.
 *
 * A global function: the verifier checks it once, on its own, instead of
 * once for every state the exec program's two path walks leave behind
 * (which exceeds its limit). It therefore takes only a scalar and finds
 * the record, the configuration and the task itself. */
__attribute__((noinline)) int wp_exec_env(__u32 base)
{
	__u32 zero = 0;
	struct wp_exec_event *e = bpf_map_lookup_elem(&wp_exec_heap, &zero);
	struct wp_env_key *k = bpf_map_lookup_elem(&wp_env_key_heap, &zero);
	struct wp_config *cfg = wp_get_config();
	if (!e || !k || !cfg)
		return 0;
	/* The caller's base is at most 3 x 4 KiB; the verifier knows nothing
	 * of a global function's argument, so it is masked (a no-op). */
	base &= WP_PATH_MAX * 4 - 1;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	unsigned long sp = BPF_CORE_READ(task, mm, start_stack);
	__u64 argc = 0;
	if (bpf_probe_read_user(&argc, sizeof(argc), (void *)sp) || argc != e->argc) {
		/* not the layout of the ELF loader (another binfmt) */
		e->hdr.flags |= WP_F_ENV_TRUNC;
		return 0;
	}
	unsigned long envp = sp + (argc + 2) * sizeof(__u64);
	/* Settings are read from the configuration map inside the loop and
	 * clamped with masks rather than compared: constants the verifier
	 * learnt from a branch before the loop would multiply its states by
	 * every combination of them. */
	for (__u32 i = 0; i < WP_ENV_VARS; i++) {
		if (i >= e->envc)
			break;
		if (i >= cfg->env_vars) {
			e->hdr.flags |= WP_F_ENV_TRUNC;
			break;
		}
		__u64 p = 0;
		if (bpf_probe_read_user(&p, sizeof(p), (void *)(envp + i * sizeof(__u64))) || !p)
			break;
		if (cfg->env_mode == WP_ENV_LISTED) {
			if (bpf_probe_read_user_str(k->name, sizeof(k->name), (void *)p) <= 0)
				continue;
			wp_env_name_key(k);
			if (!bpf_map_lookup_elem(&wp_env_names, k))
				continue;
		}
		/* The offset lives in map memory (e->env_len), as in the path
		 * walk: the verifier sees a masked unknown at every iteration. */
		__u32 off = e->env_len & (WP_ENV_MAX - 1);
		__u32 item = cfg->env_item_bytes & (WP_ENV_ITEM_MAX - 1);
		if (off + item > cfg->env_bytes) {
			e->hdr.flags |= WP_F_ENV_TRUNC;
			break;
		}
		long r = bpf_probe_read_user_str(&e->buf[base + off], item, (void *)p);
		if (r <= 0)
			continue;
		if (r == item) /* full: cut (or it ended exactly there) */
			e->hdr.flags |= WP_F_ENV_TRUNC;
		e->env_len = off + r;
	}
	return 0;
}

/* wp_memfd_exec reports fileless execution: the new executable is a memfd
 * (its dentry is named "memfd:<name>" on the kernel's internal shmem mount). */
static __always_inline void wp_memfd_exec(struct wp_config *cfg, struct file *exe, struct wp_event_hdr *exec_hdr)
{
	struct qstr d_name = {};
	struct dentry *dentry = BPF_CORE_READ(exe, f_path.dentry);
	bpf_core_read(&d_name, sizeof(d_name), &dentry->d_name);
	char prefix[6] = {};
	bpf_probe_read_kernel(prefix, sizeof(prefix), d_name.name);
	if (prefix[0] != 'm' || prefix[1] != 'e' || prefix[2] != 'm' || prefix[3] != 'f' || prefix[4] != 'd' ||
	    prefix[5] != ':')
		return;
	wp_count(WP_EV_MEMFD_EXEC, WP_STAT_PRODUCED);
	if (!(cfg->event_mask & (1ULL << WP_EV_MEMFD_EXEC))) {
		wp_count(WP_EV_MEMFD_EXEC, WP_STAT_FILTERED);
		return;
	}
	struct wp_memfd_exec_event m = {};
	__builtin_memcpy(&m.hdr, exec_hdr, sizeof(m.hdr));
	m.hdr.type = WP_EV_MEMFD_EXEC;
	bpf_probe_read_kernel_str(m.name, sizeof(m.name), d_name.name + 6);
	wp_output(cfg, &m, sizeof(m), WP_EV_MEMFD_EXEC, true);
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(wp_sched_exec, struct task_struct *task, pid_t old_pid, struct linux_binprm *bprm)
{
	struct wp_config *cfg;
	if (!wp_want(WP_EV_EXEC, &cfg))
		return 0;

	__u32 zero = 0;
	struct wp_exec_event *e = bpf_map_lookup_elem(&wp_exec_heap, &zero);
	if (!e)
		return 0;

	wp_fill_hdr(&e->hdr, WP_EV_EXEC, task);
	const struct cred *cred = BPF_CORE_READ(task, real_cred);
	e->euid = BPF_CORE_READ(cred, euid.val);
	e->egid = BPF_CORE_READ(cred, egid.val);
	e->auid = BPF_CORE_READ(task, loginuid.val);
	e->sessionid = BPF_CORE_READ(task, sessionid);
	e->start_boot_ns = BPF_CORE_READ(task, start_boottime);
	e->argc = BPF_CORE_READ(bprm, argc);
	e->envc = BPF_CORE_READ(bprm, envc);
	e->env_len = 0;
	e->_pad0 = 0;

	struct mm_struct *mm = BPF_CORE_READ(task, mm);
	struct file *exe = BPF_CORE_READ(mm, exe_file);
	e->exe_ino = BPF_CORE_READ(exe, f_inode, i_ino);
	e->exe_dev = BPF_CORE_READ(exe, f_inode, i_sb, s_dev);

	bool trunc = false;
	__u32 exe_len = wp_copy_path(e->buf, &exe->f_path, &trunc);
	if (trunc)
		e->hdr.flags |= WP_F_EXE_TRUNC;
	e->exe_len = exe_len;

	struct fs_struct *fs = BPF_CORE_READ(task, fs);
	__u32 off = exe_len & WP_PATH_MASK;
	__u32 cwd_len = wp_copy_path(&e->buf[off], &fs->pwd, &trunc);
	if (trunc)
		e->hdr.flags |= WP_F_CWD_TRUNC;
	e->cwd_len = cwd_len;
	off = (off + (cwd_len & WP_PATH_MASK)) & WP_EXEC_OFF_MASK;

	unsigned long arg_start = BPF_CORE_READ(mm, arg_start);
	unsigned long arg_end = BPF_CORE_READ(mm, arg_end);
	__u64 args_len = arg_end > arg_start ? arg_end - arg_start : 0;
	if (args_len > WP_ARGS_MAX - 1) {
		/* Head and tail: padding the first argument must not hide the rest. */
		e->hdr.flags |= WP_F_ARGS_TRUNC;
		args_len = WP_ARGS_MAX - 1;
		if (bpf_probe_read_user(&e->buf[off], WP_ARGS_HEAD, (void *)arg_start) ||
		    bpf_probe_read_user(&e->buf[off + WP_ARGS_HEAD], WP_ARGS_MAX - 1 - WP_ARGS_HEAD,
					(void *)(arg_end - (WP_ARGS_MAX - 1 - WP_ARGS_HEAD))))
			args_len = 0;
	} else {
		args_len &= WP_PATH_MASK;
		if (bpf_probe_read_user(&e->buf[off], args_len, (void *)arg_start))
			args_len = 0;
	}
	e->args_len = args_len;
	__u32 base = off + args_len;
	if (cfg->env_mode != WP_ENV_OFF)
		wp_exec_env(base);

	__builtin_memset(e->tty, 0, sizeof(e->tty));
	struct tty_struct *tty = BPF_CORE_READ(task, signal, tty);
	if (tty)
		bpf_probe_read_kernel_str(e->tty, sizeof(e->tty), &tty->name);

	__u64 size = offsetof(struct wp_exec_event, buf) + base + e->env_len;
	if (size > sizeof(*e))
		size = sizeof(*e);
	wp_output(cfg, e, size, WP_EV_EXEC, true);
	wp_memfd_exec(cfg, exe, &e->hdr);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(wp_sched_fork, struct task_struct *parent, struct task_struct *child)
{
	struct wp_config *cfg;
	if (!wp_want(WP_EV_CLONE, &cfg))
		return 0;

	__u32 child_pid = BPF_CORE_READ(child, tgid);
	__u32 child_tid = BPF_CORE_READ(child, pid);
	bool thread = child_pid != child_tid;
	if (thread && !(cfg->flags & WP_CFG_THREADS)) {
		wp_count(WP_EV_CLONE, WP_STAT_FILTERED);
		return 0;
	}

	struct wp_clone_event *e = bpf_ringbuf_reserve(&wp_events, sizeof(*e), 0);
	if (!e) {
		wp_count(WP_EV_CLONE, WP_STAT_RING_FULL);
		return 0;
	}
	wp_fill_hdr(&e->hdr, WP_EV_CLONE, parent);
	if (thread)
		e->hdr.flags |= WP_F_THREAD;
	e->child_pid = child_pid;
	e->child_tid = child_tid;
	bpf_ringbuf_submit(e, wp_wakeup_flags(cfg, false));
	wp_count(WP_EV_CLONE, WP_STAT_EMITTED);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(wp_sched_exit, struct task_struct *task)
{
	/* Only the last thread of a process reports: by now do_exit has
	 * decremented signal->live, so zero means the group is dead. */
	if (BPF_CORE_READ(task, signal, live.counter) != 0)
		return 0;

	struct wp_config *cfg;
	if (!wp_want(WP_EV_EXIT, &cfg))
		return 0;

	struct wp_exit_event *e = bpf_ringbuf_reserve(&wp_events, sizeof(*e), 0);
	if (!e) {
		wp_count(WP_EV_EXIT, WP_STAT_RING_FULL);
		return 0;
	}
	wp_fill_hdr(&e->hdr, WP_EV_EXIT, task);
	__u32 code = BPF_CORE_READ(task, exit_code);
	e->exit_code = code;
	if (code & 0x7f)
		e->hdr.flags |= WP_F_SIGNALED;
	if (code & 0x80)
		e->hdr.flags |= WP_F_CORE;
	e->_pad0 = 0;
	e->start_boot_ns = BPF_CORE_READ(task, start_boottime);
	bpf_ringbuf_submit(e, wp_wakeup_flags(cfg, true));
	wp_count(WP_EV_EXIT, WP_STAT_EMITTED);
	return 0;
}

#endif /* WP_PROCESS_H */

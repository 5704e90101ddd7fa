/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* Security events from syscall exits: module loads, ptrace attach,
 * credential changes, bpf() program loads, mounts, clock changes,
 * signals to other processes, memfd_create and userfaultfd. Noisy read-only variants (adjtimex reads,
 * ptrace peeks, bpf map lookups, signal 0) are dropped in the kernel. */
#ifndef WP_SECURITY_H
#define WP_SECURITY_H

#include "lib/syscall.h"

#define WP_SEC_REGION_MASK ((WP_PATH_MAX * 4) - 1)
#define WP_CAP_VERSION_1 0x19980330

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct wp_sec_event);
} wp_sec_heap SEC(".maps");

const struct wp_sec_event *wp_unused_sec __attribute__((unused));

/* wp_sec_wanted applies the per-operation rules; false means the call is
 * not a security event at all (and is not counted). */
static __always_inline bool wp_sec_wanted(struct wp_sys_desc *d, struct wp_sys_args *a)
{
	switch (d->kind) {
	case WP_SEC_PTRACE: {
		__u64 req = a->args[0];
		/* TRACEME, POKETEXT, POKEDATA, POKEUSER, SETREGS, ATTACH, SEIZE */
		return req == 0 || req == 4 || req == 5 || req == 6 || req == 13 || req == 16 || req == 0x4206;
	}
	case WP_SEC_BPF: {
		__u64 cmd = a->args[0];
		/* PROG_LOAD, PROG_ATTACH, RAW_TRACEPOINT_OPEN, LINK_CREATE */
		return cmd == 5 || cmd == 8 || cmd == 17 || cmd == 28;
	}
	case WP_SEC_ADJTIME: {
		__u32 modes = 0;
		bpf_probe_read_user(&modes, sizeof(modes), (const void *)wp_arg(a, d->fd_idx));
		return modes != 0;
	}
	case WP_SEC_SIGNAL: {
		__u64 sig = wp_arg(a, d->mode_idx);
		if (sig == 0)
			return false;
		if (d->fd_idx == WP_ARG_NONE) /* pidfd_send_signal: the target is an fd */
			return true;
		__u32 target = (__u32)wp_arg(a, d->fd_idx);
		__u32 self = bpf_get_current_pid_tgid() >> 32;
		__u32 tid = (__u32)bpf_get_current_pid_tgid();
		return target != self && target != tid;
	}
	}
	return true;
}

static __always_inline __u32 wp_sec_str(struct wp_sec_event *e, __u32 off, __u8 idx, struct wp_sys_args *a,
					__u16 *len)
{
	if (idx == WP_ARG_NONE) {
		*len = 0;
		return off;
	}
	__u32 n = wp_read_user_str(&e->buf[off & WP_SEC_REGION_MASK], wp_arg(a, idx));
	*len = n;
	return (off + (n & WP_PATH_MASK)) & WP_SEC_REGION_MASK;
}

SEC("tracepoint/syscalls/wp_exit_sec")
int wp_sys_exit_sec(struct trace_event_raw_sys_exit *ctx)
{
	struct wp_sys_args a;
	struct wp_sys_desc *d = wp_exit_desc(ctx, WP_SYS_SEC, &a);
	if (!d || !wp_sec_wanted(d, &a))
		return 0;
	__u32 type = d->type;
	struct wp_config *cfg;
	struct task_struct *task = wp_want_task(type, &cfg);
	if (!task)
		return 0;
	__u32 zero = 0;
	struct wp_sec_event *e = bpf_map_lookup_elem(&wp_sec_heap, &zero);
	if (!e)
		return 0;
	wp_fill_hdr(&e->hdr, type, task);
	e->ret = ctx->ret;
	e->op = d->op;
	__builtin_memcpy(e->args, a.args, sizeof(e->args));
	const struct cred *cred = BPF_CORE_READ(task, real_cred);
	e->uid = BPF_CORE_READ(cred, uid.val);
	e->euid = BPF_CORE_READ(cred, euid.val);
	e->suid = BPF_CORE_READ(cred, suid.val);
	e->fsuid = BPF_CORE_READ(cred, fsuid.val);
	e->gid = BPF_CORE_READ(cred, gid.val);
	e->egid = BPF_CORE_READ(cred, egid.val);
	e->sgid = BPF_CORE_READ(cred, sgid.val);
	e->fsgid = BPF_CORE_READ(cred, fsgid.val);
	e->cap_effective = 0;
	BPF_CORE_READ_INTO(&e->cap_effective, cred, cap_effective);

	if (d->kind == WP_SEC_SIGNAL && d->fd_idx == WP_ARG_NONE) {
		/* pidfd_send_signal: replace the pidfd by the pid it refers to */
		struct file *pf = wp_fd_file(task, (long)(int)a.args[0]);
		e->args[0] = pf ? wp_pidfd_pid(pf) : 0;
	} else if (d->kind == WP_SEC_CAPSET) {
		/* capset: replace the data pointer by the effective set asked
		 * for (the call may have failed: the task keeps its old set).
		 * Version 1 headers carry one 32-bit set, later ones two. */
		__u32 version = 0, eff_lo = 0, eff_hi = 0;
		bpf_probe_read_user(&version, sizeof(version), (const void *)a.args[0]);
		bpf_probe_read_user(&eff_lo, sizeof(eff_lo), (const void *)a.args[1]);
		if (version != WP_CAP_VERSION_1)
			bpf_probe_read_user(&eff_hi, sizeof(eff_hi), (const void *)(a.args[1] + 12));
		e->args[1] = (__u64)eff_lo | ((__u64)eff_hi << 32);
	}

	__u32 off = 0;
	if (d->kind == WP_SEC_FINIT) {
		struct file *f = wp_fd_file(task, (long)(int)wp_arg(&a, d->fd_idx));
		bool trunc = false;
		__u32 n = f ? wp_copy_path(e->buf, &f->f_path, &trunc) : 0;
		e->str_len = n;
		off = n & WP_PATH_MASK;
	} else {
		off = wp_sec_str(e, off, d->str_idx, &a, &e->str_len);
	}
	off = wp_sec_str(e, off, d->str2_idx, &a, &e->str2_len);
	off = wp_sec_str(e, off, d->str3_idx, &a, &e->str3_len);

	__u64 size = offsetof(struct wp_sec_event, buf) + off;
	if (size > sizeof(*e))
		size = sizeof(*e);
	wp_output(cfg, e, size, type, d->kind != WP_SEC_QUIET);
	return 0;
}

#endif /* WP_SECURITY_H */

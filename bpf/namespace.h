/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* Namespace changes from syscall exits: setns, unshare, and clone/clone3
 * with CLONE_NEW* flags (the start of a container, a sandbox escape, a
 * process joining another network namespace). Plain forks and threads
 * leave at the flag test. */
#ifndef WP_NAMESPACE_H
#define WP_NAMESPACE_H

#include "lib/syscall.h"

#define WP_CLONE_NEWTIME 0x00000080ULL
/* NEWNS NEWCGROUP NEWUTS NEWIPC NEWUSER NEWPID NEWNET; clone() keeps the
 * exit signal in the low byte, so CLONE_NEWTIME only counts for clone3
 * and unshare. */
#define WP_CLONE_NS_MASK 0x7e020000ULL
#define WP_NSFS_MAGIC 0x6e736673

const struct wp_ns_event *wp_unused_ns __attribute__((unused));
const enum wp_ns_op *wp_unused_ns_op __attribute__((unused));
const enum wp_ns_index *wp_unused_ns_index __attribute__((unused));

/* wp_ns_inums reads the task's namespace inode numbers (the ones its
 * children get, for pid and time). */
static __always_inline void wp_ns_inums(struct task_struct *task, __u32 *inum)
{
	struct nsproxy *nsp = BPF_CORE_READ(task, nsproxy);
	inum[WP_NSI_MNT] = BPF_CORE_READ(nsp, mnt_ns, ns.inum);
	inum[WP_NSI_UTS] = BPF_CORE_READ(nsp, uts_ns, ns.inum);
	inum[WP_NSI_IPC] = BPF_CORE_READ(nsp, ipc_ns, ns.inum);
	inum[WP_NSI_NET] = BPF_CORE_READ(nsp, net_ns, ns.inum);
	inum[WP_NSI_PID] = BPF_CORE_READ(nsp, pid_ns_for_children, ns.inum);
	inum[WP_NSI_USER] = BPF_CORE_READ(task, real_cred, user_ns, ns.inum);
	inum[WP_NSI_CGROUP] = BPF_CORE_READ(nsp, cgroup_ns, ns.inum);
	inum[WP_NSI_TIME] = BPF_CORE_READ(nsp, time_ns_for_children, ns.inum);
}

SEC("tracepoint/syscalls/wp_exit_ns")
int wp_sys_exit_ns(struct trace_event_raw_sys_exit *ctx)
{
	struct wp_sys_args a;
	struct wp_sys_desc *d = wp_exit_desc(ctx, WP_SYS_NS, &a);
	if (!d)
		return 0;
	long ret = ctx->ret;
	__u64 flags = 0;
	switch (d->kind) {
	case WP_NS_CLONE:
		/* ret 0 is the child returning from the same call */
		flags = a.args[0] & WP_CLONE_NS_MASK;
		if (!flags || ret == 0)
			return 0;
		break;
	case WP_NS_CLONE3:
		bpf_probe_read_user(&flags, sizeof(flags), (const void *)a.args[0]);
		flags &= WP_CLONE_NS_MASK | WP_CLONE_NEWTIME;
		if (!flags || ret == 0)
			return 0;
		break;
	case WP_NS_UNSHARE:
		flags = a.args[0] & (WP_CLONE_NS_MASK | WP_CLONE_NEWTIME);
		if (!flags)
			return 0;
		break;
	case WP_NS_SETNS:
		flags = a.args[1];
		break;
	default:
		return 0;
	}
	__u32 type = d->type;
	struct wp_config *cfg;
	struct task_struct *task = wp_want_task(type, &cfg);
	if (!task)
		return 0;
	struct wp_ns_event e = {};
	wp_fill_hdr(&e.hdr, type, task);
	e.ret = ret;
	e.flags = flags;
	e.op = d->op;
	wp_ns_inums(task, e.inum);
	if (d->kind == WP_NS_SETNS) {
		/* The fd names a namespace (nsfs: the inode holds its
		 * ns_common) or, since 5.8, a process (a pidfd). */
		struct file *f = wp_fd_file(task, (long)(int)a.args[0]);
		struct inode *ino = BPF_CORE_READ(f, f_inode);
		if (f && BPF_CORE_READ(ino, i_sb, s_magic) == WP_NSFS_MAGIC) {
			struct ns_common *ns = BPF_CORE_READ(ino, i_private);
			e.target_inum = BPF_CORE_READ(ns, inum);
			bpf_probe_read_kernel_str(e.target_type, sizeof(e.target_type), BPF_CORE_READ(ns, ops, name));
		} else if (f) {
			e.target_pid = wp_pidfd_pid(f);
		}
	}
	wp_output(cfg, &e, sizeof(e), type, true);
	return 0;
}

#endif /* WP_NAMESPACE_H */

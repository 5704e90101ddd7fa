/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* Syscall capture: descriptors per syscall number, arguments saved at
 * sys_enter for sys_exit, fd lookups and the shared filters. */
#ifndef WP_SYSCALL_H
#define WP_SYSCALL_H

#include "common.h"
#include "path.h"

#define WP_MAX_SYSCALLS 512
#define WP_AT_FDCWD -100

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, WP_MAX_SYSCALLS);
	__type(key, __u32);
	__type(value, struct wp_sys_desc);
} wp_sys_descs SEC(".maps");

/* Keyed by pid_tgid: a thread is in one syscall at a time. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct wp_sys_args);
} wp_inflight SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u8);
} wp_cgroup_filter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct wp_exe_key);
	__type(value, __u8);
} wp_exe_filter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__type(key, struct wp_path_key);
	__type(value, __u8);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} wp_path_filter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__type(key, struct wp_cidr_key);
	__type(value, __u8);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} wp_cidr_filter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u16);
	__type(value, __u8);
} wp_port_filter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, struct wp_bucket);
} wp_buckets SEC(".maps");

/* Scratch for the path-prefix lookup key. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct wp_path_key);
} wp_path_key_heap SEC(".maps");

const struct wp_sys_desc *wp_unused_desc __attribute__((unused));
const struct wp_sys_args *wp_unused_args __attribute__((unused));
const struct wp_path_key *wp_unused_path_key __attribute__((unused));
const struct wp_cidr_key *wp_unused_cidr_key __attribute__((unused));
const struct wp_exe_key *wp_unused_exe_key __attribute__((unused));
const struct wp_bucket *wp_unused_bucket __attribute__((unused));
const enum wp_filter_action *wp_unused_action __attribute__((unused));
const enum wp_sys_class *wp_unused_class __attribute__((unused));
const enum wp_path_kind *wp_unused_path_kind __attribute__((unused));
const enum wp_net_op *wp_unused_net_op __attribute__((unused));
const enum wp_sec_op *wp_unused_sec_op __attribute__((unused));
const enum wp_arg_none *wp_unused_arg_none __attribute__((unused));

static __always_inline struct wp_sys_desc *wp_desc(__u32 nr)
{
	return bpf_map_lookup_elem(&wp_sys_descs, &nr);
}

static __always_inline __u64 wp_arg(const struct wp_sys_args *a, __u8 idx)
{
	return idx < 6 ? a->args[idx & 7] : 0;
}

/* Generic sys_enter program: attached to the enter tracepoint of every
 * captured syscall; saves the arguments for the exit program. */
SEC("tracepoint/syscalls/wp_enter")
int wp_sys_enter(struct trace_event_raw_sys_enter *ctx)
{
	__u32 nr = (__u32)ctx->id;
	struct wp_sys_desc *d = wp_desc(nr);
	if (!d || !d->type)
		return 0;
	struct wp_config *cfg = wp_get_config();
	if (!cfg)
		return 0;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if ((__u32)(pid_tgid >> 32) == cfg->agent_tgid)
		return 0;
	if (!(cfg->event_mask & (1ULL << (d->type & 63))))
		return 0;
	struct wp_sys_args a = {};
	bpf_probe_read_kernel(a.args, sizeof(a.args), ctx->args);
	a.nr = nr;
	bpf_map_update_elem(&wp_inflight, &pid_tgid, &a, BPF_ANY);
	return 0;
}

/* Set by the agent before loading. 1 when the kernel has bpf_task_pt_regs
 * (5.15+): the exit programs read the arguments from the registers the
 * syscall entry saved, and the enter program is not attached at all. 0 on
 * older kernels: the enter program saves them in wp_inflight. The verifier
 * drops the branch not taken, so the helper is never seen where it is
 * missing. */
volatile const __u32 wp_args_from_regs = 0;

/* wp_regs_args reads the current syscall's arguments from its saved user
 * registers. The syscall does not change them (the exit tracepoint runs
 * before signal delivery or a restart touches them); the layouts are the
 * architectures' ptrace ABI. */
static __always_inline void wp_regs_args(struct wp_sys_args *out)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
#if defined(__TARGET_ARCH_x86)
	/* r10 r9 r8 ax cx dx si di, adjacent; arguments: di si dx r10 r8 r9 */
	__u64 r[8];
	bpf_probe_read_kernel(r, sizeof(r), &regs->r10);
	out->args[0] = r[7];
	out->args[1] = r[6];
	out->args[2] = r[5];
	out->args[3] = r[0];
	out->args[4] = r[2];
	out->args[5] = r[1];
#elif defined(__TARGET_ARCH_arm64)
	/* x0 holds the return value by now; orig_x0 keeps the first argument */
	bpf_probe_read_kernel(&out->args[0], sizeof(out->args[0]), &regs->orig_x0);
	bpf_probe_read_kernel(&out->args[1], 5 * sizeof(out->args[0]), &regs->regs[1]);
#endif
}

/* wp_take_args fetches the current thread's syscall arguments: from its
 * registers, or the copy the enter program saved (removed here). */
static __always_inline bool wp_take_args(__u32 nr, struct wp_sys_args *out)
{
	if (wp_args_from_regs) {
		wp_regs_args(out);
		out->nr = nr;
		return true;
	}
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct wp_sys_args *a = bpf_map_lookup_elem(&wp_inflight, &pid_tgid);
	if (!a)
		return false;
	bool ok = a->nr == nr;
	if (ok)
		__builtin_memcpy(out, a, sizeof(*out));
	bpf_map_delete_elem(&wp_inflight, &pid_tgid);
	return ok;
}

/* wp_exit_desc starts every sys_exit program: it takes the arguments the
 * enter program saved and returns the syscall's descriptor when it belongs
 * to class, or NULL. */
static __always_inline struct wp_sys_desc *wp_exit_desc(struct trace_event_raw_sys_exit *ctx, __u8 class,
							 struct wp_sys_args *a)
{
	__u32 nr = (__u32)ctx->id;
	if (!wp_take_args(nr, a))
		return NULL;
	struct wp_sys_desc *d = wp_desc(nr);
	if (!d || d->class != class)
		return NULL;
	return d;
}

static __always_inline struct file *wp_fd_file(struct task_struct *task, long fd)
{
	if (fd < 0)
		return NULL;
	struct files_struct *files = BPF_CORE_READ(task, files);
	struct fdtable *fdt = BPF_CORE_READ(files, fdt);
	unsigned int max = BPF_CORE_READ(fdt, max_fds);
	if ((unsigned long)fd >= max)
		return NULL;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = NULL;
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	return f;
}

#define WP_S_IFMT 00170000
#define WP_S_IFSOCK 0140000
#define WP_S_IFCHR 0020000
#define WP_S_IFBLK 0060000

static __always_inline struct sock *wp_fd_sock(struct task_struct *task, long fd)
{
	struct file *f = wp_fd_file(task, fd);
	if (!f)
		return NULL;
	umode_t mode = BPF_CORE_READ(f, f_inode, i_mode);
	if ((mode & WP_S_IFMT) != WP_S_IFSOCK)
		return NULL;
	struct socket *sock = BPF_CORE_READ(f, private_data);
	return BPF_CORE_READ(sock, sk);
}

/* wp_pidfd_pid returns the pid (its first level number) a pidfd refers
 * to. Since 6.9 pidfds live in pidfs and keep the struct pid in the inode;
 * before, in the file. */
static __always_inline __u32 wp_pidfd_pid(struct file *pf)
{
	struct pid *pid = BPF_CORE_READ(pf, f_inode, i_private);
	if (!pid)
		pid = BPF_CORE_READ(pf, private_data);
	return pid ? (__u32)BPF_CORE_READ(pid, numbers[0].nr) : 0;
}

/* wp_task_filtered applies the cgroup and executable filters. */
static __always_inline bool wp_task_filtered(struct wp_config *cfg, struct task_struct *task)
{
	if (cfg->flags & WP_CFG_CGROUP_FILTER) {
		__u64 cg = bpf_get_current_cgroup_id();
		__u8 *act = bpf_map_lookup_elem(&wp_cgroup_filter, &cg);
		if (act && *act == WP_FILTER_EXCLUDE)
			return true;
		if ((cfg->flags & WP_CFG_CGROUP_INCLUDE) && (!act || *act != WP_FILTER_INCLUDE))
			return true;
	}
	if (cfg->flags & WP_CFG_EXE_FILTER) {
		struct wp_exe_key k = {};
		struct file *exe = BPF_CORE_READ(task, mm, exe_file);
		k.ino = BPF_CORE_READ(exe, f_inode, i_ino);
		k.dev = BPF_CORE_READ(exe, f_inode, i_sb, s_dev);
		__u8 *act = bpf_map_lookup_elem(&wp_exe_filter, &k);
		if (act && *act == WP_FILTER_EXCLUDE)
			return true;
		if ((cfg->flags & WP_CFG_EXE_INCLUDE) && (!act || *act != WP_FILTER_INCLUDE))
			return true;
	}
	return false;
}

/* wp_want_task is wp_want plus the cgroup and executable filters, for the
 * current task. It returns the task, or NULL when the event is not wanted
 * (already counted). */
static __always_inline struct task_struct *wp_want_task(__u32 type, struct wp_config **cfgp)
{
	if (!wp_want(type, cfgp))
		return NULL;
	/* bpf_get_current_task_btf needs 5.11; CO-RE reads work from 5.10 */
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	if (wp_task_filtered(*cfgp, task)) {
		wp_count(type, WP_STAT_FILTERED);
		return NULL;
	}
	return task;
}

/* wp_path_filtered looks the path (len bytes at p) up in the prefix trie. */
static __always_inline bool wp_path_filtered(struct wp_config *cfg, const char *p, __u32 len)
{
	if (!(cfg->flags & WP_CFG_PATH_FILTER))
		return false;
	__u32 zero = 0;
	struct wp_path_key *k = bpf_map_lookup_elem(&wp_path_key_heap, &zero);
	if (!k)
		return false;
	if (len > WP_PREFIX_MAX)
		len = WP_PREFIX_MAX;
	__builtin_memset(k->path, 0, sizeof(k->path));
	bpf_probe_read_kernel(k->path, len, p);
	k->prefixlen = len * 8;
	__u8 *act = bpf_map_lookup_elem(&wp_path_filter, k);
	if (act && *act == WP_FILTER_EXCLUDE)
		return true;
	if ((cfg->flags & WP_CFG_PATH_INCLUDE) && (!act || *act != WP_FILTER_INCLUDE))
		return true;
	return false;
}

/* Per-user buckets: every process of a uid shares one, so forking a new
 * child to get a fresh per-process bucket gains nothing. The uid is the
 * kernel's (init namespace), which an unprivileged process cannot change,
 * not even from inside a user namespace. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct wp_bucket);
} wp_user_buckets SEC(".maps");

/* wp_bucket_take takes a token from the bucket of key in map (created
 * full), refilled at rate per second up to burst. It returns false when
 * the bucket is empty. */
static __always_inline bool wp_bucket_take(void *map, __u32 key, __u64 rate, __u64 burst, __u64 now)
{
	struct wp_bucket *b = bpf_map_lookup_elem(map, &key);
	__u64 cap = burst * 1000;
	if (!b) {
		struct wp_bucket nb = {.tokens_x1k = cap - 1000, .last_ns = now};
		bpf_map_update_elem(map, &key, &nb, BPF_ANY);
		return true;
	}
	__u64 elapsed = now > b->last_ns ? now - b->last_ns : 0;
	if (elapsed > 10000000000ULL)
		elapsed = 10000000000ULL;
	__u64 tokens = b->tokens_x1k + elapsed * rate / 1000000;
	if (tokens > cap)
		tokens = cap;
	b->last_ns = now;
	if (tokens < 1000) {
		b->tokens_x1k = tokens;
		return false;
	}
	b->tokens_x1k = tokens - 1000;
	return true;
}

/* wp_rate_limited takes a token from the process's bucket and from its
 * user's bucket; the event is limited when either is empty. */
static __always_inline bool wp_rate_limited(struct wp_config *cfg, __u64 now)
{
	if ((cfg->flags & WP_CFG_RATE_LIMIT) &&
	    !wp_bucket_take(&wp_buckets, bpf_get_current_pid_tgid() >> 32, cfg->rate_per_sec, cfg->rate_burst, now))
		return true;
	if ((cfg->flags & WP_CFG_USER_RATE_LIMIT) &&
	    !wp_bucket_take(&wp_user_buckets, (__u32)bpf_get_current_uid_gid(), cfg->user_rate_per_sec,
			    cfg->user_rate_burst, now))
		return true;
	return false;
}

/* wp_read_user_str copies a user string to dst (at most WP_PATH_MAX - 1
 * bytes, no NUL kept) and returns its length. */
static __always_inline __u32 wp_read_user_str(char *dst, __u64 uptr)
{
	if (!uptr)
		return 0;
	long n = bpf_probe_read_user_str(dst, WP_PATH_MAX, (const void *)uptr);
	if (n <= 1)
		return 0;
	return (n - 1) & WP_PATH_MASK;
}

#endif /* WP_SYSCALL_H */

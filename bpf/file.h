/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* File events from syscall exit tracepoints. Opens and fd-based calls are
 * resolved from the kernel's struct file (canonical: dirfd, "..", symlinks
 * and mounts resolved); calls by name resolve the directory (dirfd or cwd)
 * in the kernel and carry the name as given. */
#ifndef WP_FILE_H
#define WP_FILE_H

#include "lib/syscall.h"

#define WP_FILE_REGION_MASK ((WP_PATH_MAX * 4) - 1)

#define WP_O_WRONLY 01
#define WP_O_RDWR 02
#define WP_O_CREAT 0100
#define WP_O_TRUNC 01000
#define WP_O_APPEND 02000
#define WP_ENOENT 2
#define WP_ENOTDIR 20
/* A watched directory covers files this many levels below it. */
#define WP_WATCH_DEPTH 6

/* The read watch list: files and directories (by inode) whose reads are
 * reported although read-only opens are not (/etc/shadow, ~/.ssh ...). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct wp_exe_key);
	__type(value, __u8);
} wp_watch_reads SEC(".maps");

/* wp_watch_gen[0] changes whenever a directory's ancestry may have changed
 * (a successful rename anywhere) or the watch list did (the agent bumps
 * it): a cached miss of an older generation is not used. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} wp_watch_gen SEC(".maps");

/* The last directory whose ancestry held no watched inode, per CPU: the
 * next read-only open in that directory checks its own inode only. Keyed
 * by the directory's inode, not its dentry pointer, so a freed and reused
 * dentry cannot alias it. */
struct wp_watch_miss {
	__u64 gen;
	__u64 ino;
	__u32 dev;
	__u32 valid;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct wp_watch_miss);
} wp_watch_cache SEC(".maps");

static __always_inline void wp_watch_remember(struct wp_watch_miss *c, __u64 gen, __u64 ino, __u32 dev)
{
	if (!c)
		return;
	c->gen = gen;
	c->ino = ino;
	c->dev = dev;
	c->valid = 1;
}

/* wp_watched tells whether the opened file, or a directory up to
 * WP_WATCH_DEPTH levels above it on the same mount, is on the watch list.
 * Inodes, not names: a hard link, bind mount or "../" does not evade it.
 * The walk stays on one superblock (d_parent ends at its root), so the
 * device is read once. With WP_CFG_WATCH_CACHE, a directory found clear
 * is remembered until the next rename or watch list change. */
static __always_inline bool wp_watched(struct file *f, __u32 cfg_flags)
{
	struct dentry *d = BPF_CORE_READ(f, f_path.dentry);
	struct wp_exe_key k = {};
	k.dev = BPF_CORE_READ(d, d_sb, s_dev);
	k.ino = BPF_CORE_READ(d, d_inode, i_ino);
	if (bpf_map_lookup_elem(&wp_watch_reads, &k))
		return true;
	struct dentry *up = BPF_CORE_READ(d, d_parent);
	if (up == d)
		return false;
	d = up;
	k.ino = BPF_CORE_READ(d, d_inode, i_ino);
	__u64 dir_ino = k.ino;

	__u32 zero = 0;
	struct wp_watch_miss *c = NULL;
	__u64 g = 0;
	if (cfg_flags & WP_CFG_WATCH_CACHE) {
		__u64 *gen = bpf_map_lookup_elem(&wp_watch_gen, &zero);
		c = bpf_map_lookup_elem(&wp_watch_cache, &zero);
		if (gen && c) {
			g = *(volatile __u64 *)gen;
			if (c->valid && c->gen == g && c->ino == dir_ino && c->dev == k.dev)
				return false;
		} else {
			c = NULL;
		}
	}
#pragma unroll
	for (int i = 1; i <= WP_WATCH_DEPTH; i++) {
		if (bpf_map_lookup_elem(&wp_watch_reads, &k))
			return true;
		up = BPF_CORE_READ(d, d_parent);
		if (up == d)
			break;
		d = up;
		k.ino = BPF_CORE_READ(d, d_inode, i_ino);
	}
	wp_watch_remember(c, g, dir_ino, k.dev);
	return false;
}

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct wp_file_event);
} wp_file_heap SEC(".maps");

const struct wp_file_event *wp_unused_file __attribute__((unused));

/* wp_dir_path resolves dirfd (or the cwd for AT_FDCWD) into dst. */
static __always_inline __u32 wp_dir_path(struct task_struct *task, char *dst, long dirfd, bool *trunc)
{
	if (dirfd == WP_AT_FDCWD) {
		struct fs_struct *fs = BPF_CORE_READ(task, fs);
		return wp_copy_path(dst, &fs->pwd, trunc);
	}
	struct file *f = wp_fd_file(task, dirfd);
	if (!f)
		return 0;
	return wp_copy_path(dst, &f->f_path, trunc);
}

static __always_inline void wp_file_inode(struct wp_file_event *e, struct file *f)
{
	struct inode *ino = BPF_CORE_READ(f, f_inode);
	e->ino = BPF_CORE_READ(ino, i_ino);
	e->dev = BPF_CORE_READ(ino, i_sb, s_dev);
	e->rdev = BPF_CORE_READ(ino, i_rdev);
	e->i_mode = BPF_CORE_READ(ino, i_mode);
}

/* wp_name_region fills one (directory, name) pair at offset off of buf and
 * returns the new offset. An absolute name needs no directory. */
static __always_inline __u32 wp_name_region(struct task_struct *task, struct wp_file_event *e, __u32 off,
					    long dirfd, __u64 uname, __u16 *dir_len, __u16 *name_len,
					    __u16 rel_flag)
{
	bool trunc = false;
	char first = 0;
	bpf_probe_read_user(&first, 1, (const void *)uname);
	__u32 dl = 0;
	if (first != '/') {
		dl = wp_dir_path(task, &e->buf[off & WP_FILE_REGION_MASK], dirfd, &trunc) & WP_PATH_MASK;
		e->hdr.flags |= rel_flag;
		if (trunc)
			e->hdr.flags |= WP_F_PATH_TRUNC;
		/* End the directory with '/', so that directory + name is the
		 * path the prefix filters see. */
		if (dl > 0 && dl < WP_PATH_MAX - 1 && e->buf[(off + dl - 1) & WP_FILE_REGION_MASK] != '/') {
			e->buf[(off + dl) & WP_FILE_REGION_MASK] = '/';
			dl++;
		}
	}
	*dir_len = dl;
	off = (off + (dl & WP_PATH_MASK)) & WP_FILE_REGION_MASK;
	__u32 nl = wp_read_user_str(&e->buf[off], uname);
	*name_len = nl;
	return (off + (nl & WP_PATH_MASK)) & WP_FILE_REGION_MASK;
}

SEC("tracepoint/syscalls/wp_exit_file")
int wp_sys_exit_file(struct trace_event_raw_sys_exit *ctx)
{
	struct wp_sys_args a;
	struct wp_sys_desc *d = wp_exit_desc(ctx, WP_SYS_FILE, &a);
	if (!d)
		return 0;
	__u32 type = d->type;
	long ret = ctx->ret; /* read once: the context pointer may not be reused after arithmetic */
	__u32 zero = 0;
	if (type == WP_EV_FILE_RENAME && ret == 0) {
		/* Whoever renamed: a moved directory changes the ancestry of
		 * everything below it, so cached watch misses expire. */
		__u64 *gen = bpf_map_lookup_elem(&wp_watch_gen, &zero);
		if (gen)
			__sync_fetch_and_add(gen, 1);
	}
	struct wp_config *cfg;
	struct task_struct *task = wp_want_task(type, &cfg);
	if (!task)
		return 0;

	struct wp_file_event *e = bpf_map_lookup_elem(&wp_file_heap, &zero);
	if (!e)
		return 0;
	wp_fill_hdr(&e->hdr, type, task);
	e->ret = ret;
	e->op = d->op;
	e->ino = 0;
	e->dev = e->rdev = e->i_mode = 0;
	e->path_len = e->name_len = e->path2_len = e->name2_len = 0;
	e->_pad0 = 0;
	e->size = 0;
	e->owner_uid = e->owner_gid = 0;
	e->flags = 0;
	if (d->how_flags) {
		__u64 how_flags = 0;
		bpf_probe_read_user(&how_flags, sizeof(how_flags), (const void *)a.args[2]);
		e->flags = (__u32)how_flags;
	} else if (d->flags_idx != WP_ARG_NONE) {
		e->flags = wp_arg(&a, d->flags_idx);
	}
	e->mode = d->mode_idx != WP_ARG_NONE ? wp_arg(&a, d->mode_idx) : 0;
	if (d->write == 2) { /* chown family: uid, gid follow the path or fd */
		e->owner_uid = wp_arg(&a, d->mode_idx);
		e->owner_gid = wp_arg(&a, (d->mode_idx + 1) & 7);
		e->mode = 0;
	} else if (d->write == 3) { /* truncate: length */
		e->size = wp_arg(&a, d->mode_idx);
		e->mode = 0;
	}

	bool write = d->write != 0;
	if (type == WP_EV_FILE_OPEN && !write) /* creat() is a write by definition */
		write = e->flags & (WP_O_WRONLY | WP_O_RDWR | WP_O_CREAT | WP_O_TRUNC | WP_O_APPEND);

	__u32 off = 0;
	struct file *f = NULL;
	if (d->kind == WP_PATH_RET_FD && ret >= 0)
		f = wp_fd_file(task, ret);
	else if (d->kind == WP_PATH_ARG_FD)
		f = wp_fd_file(task, (long)wp_arg(&a, d->fd_idx));

	if (f)
		wp_file_inode(e, f);

	/* Read-only opens of regular files are the noisiest events of all:
	 * reported only when asked for, or when the file is on the watch list.
	 * Device opens (serial ports, fieldbus adapters) and failed opens are
	 * always kept. Decided before the path is resolved: a filtered open
	 * costs no path walk. */
	if (type == WP_EV_FILE_OPEN && !write && !(cfg->flags & WP_CFG_READ_OPENS) && ret >= 0) {
		__u32 fmt = e->i_mode & WP_S_IFMT;
		if (fmt != WP_S_IFCHR && fmt != WP_S_IFBLK) {
			if (!f || !(cfg->flags & WP_CFG_WATCH_READS) || !wp_watched(f, cfg->flags)) {
				wp_count(type, WP_STAT_FILTERED);
				return 0;
			}
			e->hdr.flags |= WP_F_WATCHED;
		}
	}

	/* A read-only open failing with "not there" (ENOENT, ENOTDIR) is the
	 * loader's and the locale's search path, the bulk of all failed opens:
	 * counted, and reported only when asked for. Refusals (EACCES, EPERM,
	 * ENXIO, ENODEV, EROFS ...) and failed writes are always reported. */
	if (type == WP_EV_FILE_OPEN && !write && (ret == -WP_ENOENT || ret == -WP_ENOTDIR) &&
	    !(cfg->flags & WP_CFG_ALL_FAILED_OPENS)) {
		wp_count(type, WP_STAT_FILTERED);
		return 0;
	}

	if (f) {
		bool trunc = false;
		__u32 n = wp_copy_path(e->buf, &f->f_path, &trunc);
		if (trunc)
			e->hdr.flags |= WP_F_PATH_TRUNC;
		e->path_len = n;
		off = n & WP_PATH_MASK;
	} else if (d->name_idx != WP_ARG_NONE) {
		long dirfd = d->dirfd_idx != WP_ARG_NONE ? (long)(int)wp_arg(&a, d->dirfd_idx) : WP_AT_FDCWD;
		off = wp_name_region(task, e, 0, dirfd, wp_arg(&a, d->name_idx), &e->path_len, &e->name_len,
				     WP_F_NAME_REL);
	}

	if (wp_path_filtered(cfg, e->buf, e->path_len + (e->name_len ? e->name_len : 0))) {
		wp_count(type, WP_STAT_FILTERED);
		return 0;
	}

	if (d->name2_idx != WP_ARG_NONE) {
		long dirfd2 = d->dirfd2_idx != WP_ARG_NONE ? (long)(int)wp_arg(&a, d->dirfd2_idx) : WP_AT_FDCWD;
		off = wp_name_region(task, e, off, dirfd2, wp_arg(&a, d->name2_idx), &e->path2_len, &e->name2_len,
				     WP_F_NAME2_REL);
	} else if (d->str_idx != WP_ARG_NONE) {
		/* symlink: the target is plain text, never resolved */
		__u32 n = wp_read_user_str(&e->buf[off & WP_FILE_REGION_MASK], wp_arg(&a, d->str_idx));
		e->name2_len = n;
		off = (off + (n & WP_PATH_MASK)) & WP_FILE_REGION_MASK;
	}

	if (wp_rate_limited(cfg, e->hdr.ts_boot_ns)) {
		wp_count(type, WP_STAT_RATE_LIMITED);
		return 0;
	}
	__u64 size = offsetof(struct wp_file_event, buf) + off;
	if (size > sizeof(*e))
		size = sizeof(*e);
	wp_output(cfg, e, size, type, false);
	return 0;
}

#endif /* WP_FILE_H */

/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* Canonical absolute paths from a struct path, resolved in the kernel by
 * walking dentries and crossing mount points, without bpf_d_path (which
 * tracepoint programs may not call). */
#ifndef WP_PATH_H
#define WP_PATH_H

#include "common.h"

#define WP_PATH_MASK (WP_PATH_MAX - 1)
#define WP_PATH_DEPTH 64

/* Scratch space: names are written backwards from the end of the first
 * half; the second half only exists so that every masked write is in
 * bounds for the verifier. */
struct wp_path_scratch {
	char buf[WP_PATH_MAX * 2];
	/* The write offset lives in map memory, not in a register, on purpose:
	 * the verifier then sees an unknown (masked) scalar at every iteration,
	 * so the states of the loop's branches are equivalent and pruned.
	 * Kept in a register, each iteration's range differs and a 64-step
	 * walk exceeds the one-million-instruction limit. */
	__s32 off;
	__u32 _pad0;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct wp_path_scratch);
} wp_path_heap SEC(".maps");

static __always_inline struct wp_path_scratch *wp_path_scratch(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&wp_path_heap, &zero);
}

#define WP_TMPFS_MAGIC 0x01021994
#define WP_HUGETLBFS_MAGIC 0x958458f6
#define WP_DELETED " (deleted)"
#define WP_DELETED_LEN 10

/* wp_resolve_path builds the absolute path of p in s and returns the offset
 * where it starts (the path runs to WP_PATH_MAX - 1; no NUL). *trunc is set
 * when components were lost. Names follow the kernel's d_path: an unlinked
 * file or directory ends in " (deleted)", and a file that was never in a
 * directory tree (a memfd, shared memory) is "/" + its name + " (deleted)",
 * e.g. "/memfd:payload (deleted)". */
static __always_inline int wp_resolve_path(const struct path *p, struct wp_path_scratch *s, bool *trunc)
{
	__u64 mnt_off = bpf_core_field_offset(struct mount, mnt);
	struct dentry *dentry = BPF_CORE_READ(p, dentry);
	struct vfsmount *vfsmnt = BPF_CORE_READ(p, mnt);
	struct mount *mnt = (struct mount *)((void *)vfsmnt - mnt_off);
	struct mount *mnt_parent = BPF_CORE_READ(mnt, mnt_parent);
	bool done = false;
	int i, off;

	*trunc = false;
	s->off = WP_PATH_MAX - 1;
	/* d_unlinked(): unhashed and not a root; or a detached file of
	 * shared memory (memfd_create, shm), which simple_dname() names with
	 * " (deleted)". Sockets, pipes and anon inodes keep their names. */
	struct dentry *first_parent = BPF_CORE_READ(dentry, d_parent);
	bool unhashed = !BPF_CORE_READ(dentry, d_hash.pprev);
	bool pseudo = false;
	if (dentry == first_parent && dentry != BPF_CORE_READ(vfsmnt, mnt_root)) {
		unsigned long magic = BPF_CORE_READ(dentry, d_sb, s_magic);
		pseudo = magic == WP_TMPFS_MAGIC || magic == WP_HUGETLBFS_MAGIC;
	}
	if ((unhashed && dentry != first_parent) || pseudo) {
		s->off -= WP_DELETED_LEN;
		__builtin_memcpy(&s->buf[WP_PATH_MAX - 1 - WP_DELETED_LEN], WP_DELETED, WP_DELETED_LEN);
	}
	for (i = 0; i < WP_PATH_DEPTH; i++) {
		struct dentry *mnt_root = BPF_CORE_READ(vfsmnt, mnt_root);
		struct dentry *parent = BPF_CORE_READ(dentry, d_parent);
		/* Not reachable from the mount root: a detached or internal
		 * (memfd, pipe, socket, anon) file. Its own name is the last
		 * component written. */
		bool detached = dentry == parent && dentry != mnt_root;

		if ((dentry == mnt_root || dentry == parent) && !detached) {
			if (mnt == mnt_parent) {
				done = true;
				break;
			}
			/* Step from this mount's root to where it is mounted. */
			dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
			mnt = mnt_parent;
			mnt_parent = BPF_CORE_READ(mnt, mnt_parent);
			vfsmnt = (struct vfsmount *)((void *)mnt + mnt_off);
			continue;
		}

		struct qstr d_name = {};
		bpf_core_read(&d_name, sizeof(d_name), &dentry->d_name);
		__u32 len = d_name.len & WP_PATH_MASK;
		off = s->off;
		if ((int)len + 1 > off) {
			*trunc = true;
			done = true;
			break;
		}
		if (len > 0 || !detached) {
			off -= len;
			bpf_probe_read_kernel(&s->buf[off & WP_PATH_MASK], len, d_name.name);
			off -= 1;
			s->buf[off & WP_PATH_MASK] = '/';
			s->off = off;
		}
		if (detached) {
			done = true;
			break;
		}
		dentry = parent;
	}
	if (!done)
		*trunc = true;
	off = s->off;
	if (off == WP_PATH_MAX - 1) {
		/* The root itself. */
		off -= 1;
		s->buf[off & WP_PATH_MASK] = '/';
	}
	return off;
}

/* wp_copy_path resolves p and copies it to dst (at most WP_PATH_MAX - 1
 * bytes). It returns the length written. */
static __always_inline __u32 wp_copy_path(char *dst, const struct path *p, bool *trunc)
{
	struct wp_path_scratch *s = wp_path_scratch();
	if (!s)
		return 0;
	int off = wp_resolve_path(p, s, trunc);
	__u32 len = (WP_PATH_MAX - 1 - off) & WP_PATH_MASK;
	bpf_probe_read_kernel(dst, len, &s->buf[off & WP_PATH_MASK]);
	return len;
}

#endif /* WP_PATH_H */

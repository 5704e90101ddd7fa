/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* Canonical absolute paths from a struct path, resolved in the kernel by
 * walking dentries and crossing mount points, without bpf_d_path (which
 * tracepoint programs may not call). */
#ifndef WP_PATH_H
#define WP_PATH_H

#include "common.h"

#define WP_PATH_MASK (WP_PATH_MAX - 1)
#define WP_PATH_DEPTH 64
#define WP_HEAD_LEN 128 /* a power of two: offsets are masked with it */

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
	__u32 clean; /* the walk ended at the top mount's root */
	/* What the directory cache lookup learnt, for the insert after a
	 * walk: in map memory too, so that every miss reaches the walk in the
	 * same verifier state. pr_slot is WP_DCACHE_SLOTS when the path may
	 * not be cached. */
	__u32 pr_slot;
	__u32 pr_name_len; /* the file's own name, 0 for a directory */
	__u64 pr_dir;
	__u64 pr_mnt;
	__u64 pr_hash_len;
	__u64 pr_ino;
	__u64 pr_ns;
	__u64 pr_gen;
	__u64 pr_now;
	__u8 raw[WP_HEAD_LEN]; /* heads of structures copied at once */
	/* The walk's start, passed through map memory: a BTF pointer comes
	 * back as a plain address, so every caller enters the walk in the
	 * same verifier state. */
	__u64 w_dentry;
	__u64 w_mnt;
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

/* The fields the hot path needs, in as few helper calls as the pointer
 * allows. A BTF pointer (wp_btf_reads, a pointer reached from
 * wp_cur_task) is read by plain loads. A plain address, such as a file
 * taken from the descriptor table (an array of pointers, which BTF does
 * not type), is read by copying the head of the structure at once and
 * taking the fields at their CO-RE offsets: one helper call instead of one
 * per field. Should a kernel's layout put a field outside the copied head,
 * that field is read on its own (the test is on relocated constants: the
 * verifier keeps one branch). */
#define WP_HEAD_FIT(off, sz) ((off) + (sz) <= WP_HEAD_LEN)
#define WP_HEAD_U64(raw, off) (*(__u64 *)&(raw)[(off) & (WP_HEAD_LEN - 8)])
#define WP_HEAD_U32(raw, off) (*(__u32 *)&(raw)[(off) & (WP_HEAD_LEN - 4)])
#define WP_HEAD_U16(raw, off) (*(__u16 *)&(raw)[(off) & (WP_HEAD_LEN - 2)])

struct wp_dentry_f {
	struct dentry *parent;
	struct inode *inode;
	const unsigned char *name;
	__u64 hash_len; /* d_name.hash_len: the hash and the name's length */
	__u64 pprev;    /* d_hash.pprev: 0 when unhashed */
};

static __always_inline void wp_dentry_fields(struct dentry *d, struct wp_dentry_f *o, __u8 *raw, bool btf)
{
	if (btf && wp_btf_reads) {
		o->parent = d->d_parent;
		o->inode = d->d_inode;
		o->name = d->d_name.name;
		o->hash_len = d->d_name.hash_len;
		o->pprev = (__u64)d->d_hash.pprev;
		return;
	}
	__u32 o_parent = bpf_core_field_offset(d->d_parent);
	__u32 o_inode = bpf_core_field_offset(d->d_inode);
	__u32 o_name = bpf_core_field_offset(d->d_name.name);
	__u32 o_hash = bpf_core_field_offset(d->d_name.hash_len);
	__u32 o_pprev = bpf_core_field_offset(d->d_hash.pprev);
	if (WP_HEAD_FIT(o_parent, 8) && WP_HEAD_FIT(o_inode, 8) && WP_HEAD_FIT(o_name, 8) && WP_HEAD_FIT(o_hash, 8) &&
	    WP_HEAD_FIT(o_pprev, 8)) {
		if (bpf_probe_read_kernel(raw, WP_HEAD_LEN, d))
			__builtin_memset(raw, 0, WP_HEAD_LEN);
		o->parent = (struct dentry *)WP_HEAD_U64(raw, o_parent);
		o->inode = (struct inode *)WP_HEAD_U64(raw, o_inode);
		o->name = (const unsigned char *)WP_HEAD_U64(raw, o_name);
		o->hash_len = WP_HEAD_U64(raw, o_hash);
		o->pprev = WP_HEAD_U64(raw, o_pprev);
		return;
	}
	o->parent = BPF_CORE_READ(d, d_parent);
	o->inode = BPF_CORE_READ(d, d_inode);
	o->name = BPF_CORE_READ(d, d_name.name);
	o->hash_len = BPF_CORE_READ(d, d_name.hash_len);
	o->pprev = (__u64)BPF_CORE_READ(d, d_hash.pprev);
}

struct wp_inode_f {
	__u64 ino;
	struct super_block *sb;
	__u32 rdev;
	__u32 mode;
};

static __always_inline void wp_inode_fields(struct inode *ino, struct wp_inode_f *o, __u8 *raw, bool btf)
{
	if (btf && wp_btf_reads) {
		o->ino = ino->i_ino;
		o->sb = ino->i_sb;
		o->rdev = ino->i_rdev;
		o->mode = ino->i_mode;
		return;
	}
	__u32 o_ino = bpf_core_field_offset(ino->i_ino);
	__u32 o_sb = bpf_core_field_offset(ino->i_sb);
	__u32 o_rdev = bpf_core_field_offset(ino->i_rdev);
	__u32 o_mode = bpf_core_field_offset(ino->i_mode);
	if (WP_HEAD_FIT(o_ino, 8) && WP_HEAD_FIT(o_sb, 8) && WP_HEAD_FIT(o_rdev, 4) && WP_HEAD_FIT(o_mode, 2)) {
		if (bpf_probe_read_kernel(raw, WP_HEAD_LEN, ino))
			__builtin_memset(raw, 0, WP_HEAD_LEN);
		o->ino = WP_HEAD_U64(raw, o_ino);
		o->sb = (struct super_block *)WP_HEAD_U64(raw, o_sb);
		o->rdev = WP_HEAD_U32(raw, o_rdev);
		o->mode = WP_HEAD_U16(raw, o_mode);
		return;
	}
	o->ino = BPF_CORE_READ(ino, i_ino);
	o->sb = BPF_CORE_READ(ino, i_sb);
	o->rdev = BPF_CORE_READ(ino, i_rdev);
	o->mode = BPF_CORE_READ(ino, i_mode);
}

/* wp_file_fields reads a file's path and inode. */
static __always_inline void wp_file_fields(struct file *f, struct dentry **dentry, struct vfsmount **mnt,
					   struct inode **inode, __u8 *raw)
{
	__u32 o_d = bpf_core_field_offset(f->f_path.dentry);
	__u32 o_m = bpf_core_field_offset(f->f_path.mnt);
	__u32 o_i = bpf_core_field_offset(f->f_inode);
	__u32 lo = o_i < o_d ? o_i : o_d;
	if (o_m >= lo && WP_HEAD_FIT(o_d - lo, 8) && WP_HEAD_FIT(o_m - lo, 8) && WP_HEAD_FIT(o_i - lo, 8)) {
		if (bpf_probe_read_kernel(raw, WP_HEAD_LEN, (void *)f + lo))
			__builtin_memset(raw, 0, WP_HEAD_LEN);
		*dentry = (struct dentry *)WP_HEAD_U64(raw, o_d - lo);
		*mnt = (struct vfsmount *)WP_HEAD_U64(raw, o_m - lo);
		*inode = (struct inode *)WP_HEAD_U64(raw, o_i - lo);
		return;
	}
	*dentry = BPF_CORE_READ(f, f_path.dentry);
	*mnt = BPF_CORE_READ(f, f_path.mnt);
	*inode = BPF_CORE_READ(f, f_inode);
}

/* wp_resolve_path builds the absolute path of (dentry, vfsmnt) in s and returns the offset
 * where it starts (the path runs to WP_PATH_MAX - 1; no NUL). *trunc is set
 * when components were lost. Names follow the kernel's d_path: an unlinked
 * file or directory ends in " (deleted)", and a file that was never in a
 * directory tree (a memfd, shared memory) is "/" + its name + " (deleted)",
 * e.g. "/memfd:payload (deleted)". */
static __always_inline int wp_resolve_path(struct dentry *dentry, struct vfsmount *vfsmnt, struct wp_path_scratch *s,
					   bool *trunc)
{
	__u64 mnt_off = bpf_core_field_offset(struct mount, mnt);
	struct mount *mnt = (struct mount *)((void *)vfsmnt - mnt_off);
	struct mount *mnt_parent = BPF_CORE_READ(mnt, mnt_parent);
	bool done = false;
	int i, off;

	*trunc = false;
	s->off = WP_PATH_MAX - 1;
	s->clean = 0;
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
				s->clean = 1;
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

/* The directory cache. Resolving a path walks every component up to the
 * root, and every mount crossed on the way; a plant's processes open files
 * in a handful of directories all day. Each CPU keeps the resolved paths of
 * the directories it saw last, so that an open in a known directory costs
 * one lookup, one copy and the final name. An entry is keyed by the
 * directory's dentry and the mount it was reached through (the same dentry
 * has another path under a bind mount), and is used only while all of this
 * still holds:
 *   - its dentry's name hash and length (the hash is salted with the parent
 *     dentry's address) and its inode number are unchanged: a freed dentry
 *     whose memory now holds another directory does not match;
 *   - the reader is in the same mount namespace (its ns id, never reused): a
 *     mount freed with its namespace and reallocated in a new one (container
 *     restart) does not match;
 *   - wp_path_gen is unchanged: it is bumped after every successful rename,
 *     mount, umount, move_mount and pivot_root (wp_sys_exit_pathgen), the
 *     calls that change the path of an existing directory;
 *   - it is younger than WP_DCACHE_TTL_NS, which bounds anything else that
 *     moves a dentry behind the system calls' back (a network file system
 *     noticing a rename made on its server).
 * Paths longer than WP_DCACHE_PATH, deleted and detached files, and files
 * that are a mount's root are always walked. Per CPU: no locks, no sharing
 * of cache lines between CPUs; direct-mapped, so a lookup is an array
 * index. */
#define WP_DCACHE_SLOTS 256
#define WP_DCACHE_PATH 448
#define WP_DCACHE_TTL_NS 1000000000ULL
#define WP_S_IFMT_ 00170000
#define WP_S_IFDIR_ 0040000
#define WP_NAME_MAX 255

struct wp_dcache_ent {
	__u64 dentry;   /* the directory's dentry, as an address */
	__u64 mnt;      /* the vfsmount it was reached through */
	__u64 hash_len; /* d_name.hash_len when cached */
	__u64 ino;
	__u64 ns;       /* the mount namespace id of the task that cached it */
	__u64 gen;      /* wp_path_gen when the walk started */
	__u64 ts;
	__u32 len;      /* path length; the root is 0 (no trailing '/') */
	__u32 _pad0;
	char path[WP_DCACHE_PATH];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, WP_DCACHE_SLOTS);
	__type(key, __u32);
	__type(value, struct wp_dcache_ent);
} wp_dcache SEC(".maps");

/* Set by the agent before loading: 1 uses the directory cache. */
volatile const __u32 wp_path_cache = 0;

/* Bumped by wp_sys_exit_pathgen; read by every lookup. */
__u64 wp_path_gen = 0;

/* The mount namespace id: mnt_namespace.seq up to 6.17, ns_common.ns_id
 * from 6.18 (both unique for the machine's uptime). */
struct mnt_namespace___seq {
	__u64 seq;
} __attribute__((preserve_access_index));
struct ns_common___id {
	__u64 ns_id;
} __attribute__((preserve_access_index));

static __always_inline __u64 wp_mntns_id(bool btf)
{
	struct task_struct *task = btf ? wp_cur_task() : (struct task_struct *)bpf_get_current_task();
	struct mnt_namespace *ns = WP_RD(btf, WP_RD(btf, task, nsproxy), mnt_ns);
	if (bpf_core_field_exists(((struct ns_common___id *)0)->ns_id))
		return WP_RD(btf, (struct ns_common___id *)&ns->ns, ns_id);
	if (bpf_core_field_exists(((struct mnt_namespace___seq *)0)->seq))
		return WP_RD(btf, (struct mnt_namespace___seq *)ns, seq);
	return 0;
}

/* wp_dcache_lookup writes the path of (d, m) to dst from the cache and
 * returns its length, or -1 on a miss (s then says where to insert). mode
 * is d's inode mode when the caller has it, else 0. */
static __always_inline int wp_dcache_lookup(char *dst, struct dentry *d, struct vfsmount *m, __u32 mode,
					    struct wp_path_scratch *s, bool btf)
{
	s->pr_slot = WP_DCACHE_SLOTS;
	struct wp_dentry_f df;
	wp_dentry_fields(d, &df, s->raw, btf);
	if (!mode)
		mode = WP_RD(btf, df.inode, i_mode);
	struct dentry *dir = d;
	const unsigned char *name = NULL;
	__u32 nlen = 0;
	__u64 hash_len = df.hash_len;
	__u64 ino;
	if ((mode & WP_S_IFMT_) == WP_S_IFDIR_) {
		if (!df.pprev && d != df.parent) /* removed: the walk names it " (deleted)" */
			return -1;
		ino = WP_RD(btf, df.inode, i_ino);
	} else {
		/* removed, detached or a mount's root: walked */
		if (!df.pprev || d == df.parent || d == WP_RD(btf, m, mnt_root))
			return -1;
		nlen = df.hash_len >> 32;
		name = df.name;
		if (nlen == 0 || nlen > WP_NAME_MAX)
			return -1;
		dir = df.parent;
		struct wp_dentry_f pf;
		wp_dentry_fields(dir, &pf, s->raw, btf);
		hash_len = pf.hash_len;
		ino = WP_RD(btf, pf.inode, i_ino);
	}
	__u32 k = ((__u32)hash_len ^ ((__u32)ino * 2654435761u)) & (WP_DCACHE_SLOTS - 1);
	struct wp_dcache_ent *ent = bpf_map_lookup_elem(&wp_dcache, &k);
	if (!ent)
		return -1;
	__u64 ns = wp_mntns_id(true);
	__u64 gen = wp_path_gen;
	__u64 now = bpf_ktime_get_ns();
	s->pr_slot = k;
	s->pr_name_len = nlen;
	s->pr_dir = (__u64)dir;
	s->pr_mnt = (__u64)m;
	s->pr_hash_len = hash_len;
	s->pr_ino = ino;
	s->pr_ns = ns;
	s->pr_gen = gen;
	s->pr_now = now;
	if (ent->dentry != (__u64)dir || ent->mnt != (__u64)m || ent->hash_len != hash_len || ent->ino != ino ||
	    ent->ns != ns || ent->gen != gen || now - ent->ts >= WP_DCACHE_TTL_NS)
		return -1;
	__u32 len = ent->len;
	if (len > WP_DCACHE_PATH)
		return -1;
	/* The masks change no value (len <= 448, nlen <= 255): they keep the
	 * bounds visible to older verifiers, which lose them across copies. */
	len &= 511;
	nlen &= WP_NAME_MAX;
	if (!nlen) {
		if (!len) {
			dst[0] = '/';
			return 1;
		}
		bpf_probe_read_kernel(dst, len, ent->path);
		return len;
	}
	bpf_probe_read_kernel(dst, len, ent->path);
	dst[len] = '/';
	bpf_probe_read_kernel(&dst[len + 1], nlen, name);
	return len + 1 + nlen;
}

/* wp_dcache_insert caches the directory part of the path a walk left in
 * s (from off to the end) where the lookup said it may. */
static __always_inline void wp_dcache_insert(struct wp_path_scratch *s, int off)
{
	__u32 k = s->pr_slot;
	if (k >= WP_DCACHE_SLOTS || !s->clean)
		return;
	struct wp_dcache_ent *ent = bpf_map_lookup_elem(&wp_dcache, &k);
	if (!ent)
		return;
	/* the file's name is the last component: "/" + name */
	__u32 nlen = s->pr_name_len & WP_PATH_MASK;
	int end = WP_PATH_MAX - 1 - (nlen ? (int)nlen + 1 : 0);
	int slen = end - off;
	if (slen < 0 || slen > WP_DCACHE_PATH)
		return;
	__u32 len = (__u32)slen & 511; /* as above: for older verifiers */
	if (len > WP_DCACHE_PATH)
		return;
	if (!nlen && len == 1) /* the root: "/" */
		len = 0;
	ent->dentry = s->pr_dir;
	ent->mnt = s->pr_mnt;
	ent->hash_len = s->pr_hash_len;
	ent->ino = s->pr_ino;
	ent->ns = s->pr_ns;
	ent->gen = s->pr_gen;
	ent->ts = s->pr_now;
	ent->len = len;
	ent->_pad0 = 0;
	bpf_probe_read_kernel(ent->path, len, &s->buf[off & WP_PATH_MASK]);
}

/* wp_copy_dpath resolves (dentry, vfsmnt), from the directory cache when
 * it can, and copies it to dst (at most WP_PATH_MAX - 1 bytes). It returns
 * the length written. mode: the inode's mode if known, else 0. btf: the
 * pointers are BTF pointers where wp_btf_reads is set. */
static __always_inline __u32 wp_copy_dpath(char *dst, struct dentry *dentry, struct vfsmount *vfsmnt, __u32 mode,
					   bool *trunc, bool btf)
{
	*trunc = false;
	struct wp_path_scratch *s = wp_path_scratch();
	if (!s)
		return 0;
	if (wp_path_cache) {
		int n = wp_dcache_lookup(dst, dentry, vfsmnt, mode, s, btf);
		if (n >= 0)
			return n & WP_PATH_MASK;
	}
	*(volatile __u64 *)&s->w_dentry = (__u64)dentry;
	*(volatile __u64 *)&s->w_mnt = (__u64)vfsmnt;
	int off = wp_resolve_path((struct dentry *)*(volatile __u64 *)&s->w_dentry,
				  (struct vfsmount *)*(volatile __u64 *)&s->w_mnt, s, trunc);
	__u32 len = (WP_PATH_MAX - 1 - off) & WP_PATH_MASK;
	bpf_probe_read_kernel(dst, len, &s->buf[off & WP_PATH_MASK]);
	if (wp_path_cache && !*trunc)
		wp_dcache_insert(s, off);
	return len;
}

/* wp_copy_path resolves p (any pointer) and copies it to dst (at most
 * WP_PATH_MAX - 1 bytes). It returns the length written. */
static __always_inline __u32 wp_copy_path(char *dst, const struct path *p, bool *trunc)
{
	return wp_copy_dpath(dst, BPF_CORE_READ(p, dentry), BPF_CORE_READ(p, mnt), 0, trunc, false);
}

/* wp_copy_path_btf: p was reached from wp_cur_task by BTF pointers. */
static __always_inline __u32 wp_copy_path_btf(char *dst, const struct path *p, bool *trunc)
{
	return wp_copy_dpath(dst, WP_RD(true, p, dentry), WP_RD(true, p, mnt), 0, trunc, true);
}

/* After the calls that change the path of an existing directory (rename of
 * a directory or of anything, mounts moved or removed), cached directory
 * paths are stale: start a new generation. Attached, at sys_exit, to
 * rename, renameat, renameat2, mount, umount2, move_mount and pivot_root
 * when the cache is on. A lookup on another CPU between the change and this
 * bump can still see the old path (the change and the report race anyway);
 * an entry being filled across the bump carries the generation read before
 * its walk and is never used. */
SEC("tracepoint/syscalls/wp_exit_pathgen")
int wp_sys_exit_pathgen(struct trace_event_raw_sys_exit *ctx)
{
	if (ctx->ret == 0)
		__sync_fetch_and_add(&wp_path_gen, 1);
	return 0;
}

#endif /* WP_PATH_H */

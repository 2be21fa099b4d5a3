// SPDX-License-Identifier: GPL-2.0-or-later
/* BPF iterators that list what ptfast's /proc walk reads, in one read() each.
 *
 * dump_processes (iter/task): one proc_rec per thread-group leader, its exe path after it.
 * dump_sockets   (iter/task_file): one file_rec per socket fd of every fd table.
 * dump_files     (iter/task_file): the same, plus one file_rec and its path for every other fd
 *                that is not a pipe (what ptfast keeps as open_files).
 * dump_cmdlines  (iter.s/task, sleepable): one cmdline_rec and the argument bytes per process.
 * visit_tasks, visit_files: the iteration alone, to measure what any such walk costs.
 *
 * Records are fixed-size little-endian structs written with bpf_seq_write; task_walk.py reads
 * them. Built CO-RE: libbpf relocates field offsets to the running kernel's BTF at load time.
 * Kernel features used: task and task_file iterators (5.8), bpf_d_path in iterators (5.12),
 * bpf_sock_from_file (5.11), sleepable iterators with bpf_copy_from_user_task (5.18), and
 * mm->rss_stat as percpu counters (6.2; older kernels need a variant of that line).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

/* bpf_d_path, bpf_seq_write and bpf_copy_from_user_task are GPL-only helpers */
char LICENSE[] SEC("license") = "GPL";

#define PATH_BYTES 4096
#define PF_KTHREAD 0x00200000
#define SOCKFS_MAGIC 0x534F434B
#define PIPEFS_MAGIC 0x50495045
#define AF_INET 2
#define AF_INET6 10
#define S_IFMT 00170000
#define S_IFSOCK 0140000

enum record_kind { PROCESS = 1, SOCKET = 2, OPEN_FILE = 3, CMDLINE = 4 };

struct proc_rec {
	__u32 kind, tgid, ppid, pgrp, sid, uid, flags, threads;
	__u64 start_ns;         /* task->start_boottime: /proc/PID/stat's starttime in ns */
	__u64 exe_ino;
	__u64 vm_pages;         /* mm->total_vm, as /proc/PID/stat's vsize / page size */
	__u64 rss_pages;        /* file + anon + shmem pages, as stat's rss (get_mm_rss) */
	__u32 exe_dev;          /* the kernel's dev_t (MAJOR << 20 | MINOR), not st_dev's encoding */
	__u32 exe_nlink, exe_uid, exe_mode, exit_state;
	__u32 exe_len;          /* bytes of exe path following the record, NUL included; 0: none */
	char comm[16];
};

struct file_rec {
	__u32 kind, tgid, tid, fd;
	__u64 ino;
	__u16 family, type, protocol;
	__u8 state, pad;
	__u32 sk_uid, netns;
	__u16 lport, rport;     /* host byte order */
	__u32 path_len;         /* OPEN_FILE: bytes of path following the record */
	__u8 laddr[16], raddr[16];
};

/* task_walk.py unpacks these sizes */
_Static_assert(sizeof(struct proc_rec) == 104, "proc_rec layout");
_Static_assert(sizeof(struct file_rec) == 80, "file_rec layout");

/* d_path needs a buffer larger than the 512-byte stack: one per CPU (iterators run with
 * migration disabled, so no other program touches this CPU's slot meanwhile). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, char[PATH_BYTES]);
} scratch SEC(".maps");

static __always_inline void write_path(struct seq_file *seq, const struct path *path,
				       __u32 *len_out, void *record, __u32 record_size)
{
	__u32 zero = 0;
	char *buf = bpf_map_lookup_elem(&scratch, &zero);
	long n = buf ? bpf_d_path((struct path *)path, buf, PATH_BYTES) : 0;

	if (n > 0 && n <= PATH_BYTES) {
		*len_out = n;
		bpf_seq_write(seq, record, record_size);
		bpf_seq_write(seq, buf, n);
	} else {
		*len_out = 0;       /* no path (d_path failed): the record alone */
		bpf_seq_write(seq, record, record_size);
	}
}

/* PIDs as the reader's pid namespace numbers them (as its /proc shows them; tasks of other
 * namespaces are not iterated at all): the reader is the task reading the iterator. */
struct pid_view {
	unsigned int level;
	struct pid_namespace *ns;
};

static __always_inline struct pid_view reader_view(void)
{
	struct task_struct *me = bpf_get_current_task_btf();
	struct pid_view view = {};

	view.level = me->thread_pid->level;
	bpf_probe_read_kernel(&view.ns, sizeof view.ns, &me->thread_pid->numbers[view.level].ns);
	return view;
}

/* pid_nr_ns(): 0 when the pid is not seen from the reader's namespace (a parent outside) */
static __always_inline __u32 pid_in(struct pid *pid, struct pid_view *view)
{
	struct upid upid = {};

	if (!pid || pid->level < view->level)
		return 0;
	bpf_probe_read_kernel(&upid, sizeof upid, &pid->numbers[view->level]);
	return upid.ns == view->ns ? upid.nr : 0;
}

/* percpu_counter_read_positive(): the shared count, as /proc/PID/stat reads it */
static __always_inline __u64 counter(struct percpu_counter *fbc)
{
	s64 count = fbc->count;

	return count > 0 ? count : 0;
}

SEC("iter/task")
int dump_processes(struct bpf_iter__task *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	struct proc_rec rec = {};
	struct pid_view view;
	struct mm_struct *mm;
	struct file *exe;
	struct inode *inode;

	if (!task || task->pid != task->tgid)
		return 0;
	view = reader_view();
	rec.kind = PROCESS;
	rec.tgid = pid_in(task->thread_pid, &view);
	rec.ppid = pid_in(task->real_parent->group_leader->thread_pid, &view);
	rec.pgrp = pid_in(task->signal->pids[PIDTYPE_PGID], &view);
	rec.sid = pid_in(task->signal->pids[PIDTYPE_SID], &view);
	rec.uid = task->real_cred->fsuid.val;   /* status "Uid:" last field */
	rec.flags = task->flags;
	rec.threads = task->signal->nr_threads;
	rec.start_ns = task->start_boottime;
	rec.exit_state = task->exit_state;
	__builtin_memcpy(rec.comm, task->comm, sizeof rec.comm);
	mm = task->mm;
	if (mm && !(task->flags & PF_KTHREAD)) {
		rec.vm_pages = mm->total_vm;
		rec.rss_pages = counter(&mm->rss_stat[MM_FILEPAGES]) +
				counter(&mm->rss_stat[MM_ANONPAGES]) +
				counter(&mm->rss_stat[MM_SHMEMPAGES]);
	}
	exe = mm ? mm->exe_file : NULL;
	if (!exe || (task->flags & PF_KTHREAD)) {
		bpf_seq_write(seq, &rec, sizeof rec);
		return 0;
	}
	inode = exe->f_inode;
	rec.exe_ino = inode->i_ino;
	rec.exe_dev = inode->i_sb->s_dev;
	rec.exe_nlink = inode->__i_nlink;
	rec.exe_uid = inode->i_uid.val;
	rec.exe_mode = inode->i_mode;
	write_path(seq, &exe->f_path, &rec.exe_len, &rec, sizeof rec);
	return 0;
}

static __always_inline int dump_file(struct bpf_iter__task_file *ctx, bool paths)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	struct file *file = ctx->file;
	struct file_rec rec = {};
	struct pid_view view;
	struct socket *sock;
	struct sock *sk;
	struct inode *inode;
	unsigned long magic;

	if (!task || !file)
		return 0;
	view = reader_view();
	rec.tgid = pid_in(task->group_leader->thread_pid, &view);
	rec.tid = pid_in(task->thread_pid, &view);
	rec.fd = ctx->fd;
	inode = file->f_inode;
	rec.ino = inode->i_ino;
	magic = inode->i_sb->s_magic;
	/* a socket fd is an inode of sockfs (an O_PATH fd of a socket file on disk is not) */
	if (magic != SOCKFS_MAGIC) {
		if (!paths || magic == PIPEFS_MAGIC)
			return 0;
		rec.kind = OPEN_FILE;
		write_path(seq, &file->f_path, &rec.path_len, &rec, sizeof rec);
		return 0;
	}
	rec.kind = SOCKET;
	sock = bpf_sock_from_file(file);
	sk = sock ? sock->sk : NULL;
	if (sk) {
		rec.family = sk->__sk_common.skc_family;
		rec.type = sk->sk_type;
		rec.protocol = sk->sk_protocol;
		rec.state = sk->__sk_common.skc_state;
		rec.sk_uid = sk->sk_uid.val;
		rec.netns = sk->__sk_common.skc_net.net->ns.inum;
		rec.lport = sk->__sk_common.skc_num;
		rec.rport = bpf_ntohs(sk->__sk_common.skc_dport);
		if (rec.family == AF_INET) {
			__builtin_memcpy(rec.laddr, &sk->__sk_common.skc_rcv_saddr, 4);
			__builtin_memcpy(rec.raddr, &sk->__sk_common.skc_daddr, 4);
		} else if (rec.family == AF_INET6) {
			__builtin_memcpy(rec.laddr, &sk->__sk_common.skc_v6_rcv_saddr, 16);
			__builtin_memcpy(rec.raddr, &sk->__sk_common.skc_v6_daddr, 16);
		}
	}
	bpf_seq_write(seq, &rec, sizeof rec);
	return 0;
}

SEC("iter/task_file")
int dump_sockets(struct bpf_iter__task_file *ctx)
{
	return dump_file(ctx, false);
}

SEC("iter/task_file")
int dump_files(struct bpf_iter__task_file *ctx)
{
	return dump_file(ctx, true);
}

struct cmdline_rec {
	__u32 kind, tgid, len, pad;
};

_Static_assert(sizeof(struct cmdline_rec) == 16, "cmdline_rec layout");

#define CMDLINE_BYTES 4096

/* The sleepable iterator's buffer: its own, as a sleeping program may be interleaved on its
 * CPU with the other iterators (two readers of dump_cmdlines at once could still mix theirs). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, char[CMDLINE_BYTES]);
} cmdline_scratch SEC(".maps");

/* The argument area of every process (at most CMDLINE_BYTES of it): reading another process's
 * memory may fault pages in, hence a sleepable iterator (kernel 5.18+). /proc/PID/cmdline
 * also follows a process that rewrote its arguments past arg_end (setproctitle); this does not. */
SEC("iter.s/task")
int dump_cmdlines(struct bpf_iter__task *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	struct cmdline_rec rec = {.kind = CMDLINE};
	struct pid_view view;
	__u32 zero = 0;
	unsigned long start, end, len;
	char *buf;

	if (!task || task->pid != task->tgid || (task->flags & PF_KTHREAD))
		return 0;
	start = BPF_CORE_READ(task, mm, arg_start);
	end = BPF_CORE_READ(task, mm, arg_end);
	buf = bpf_map_lookup_elem(&cmdline_scratch, &zero);
	if (!buf || end <= start)
		return 0;
	len = end - start;
	if (len > CMDLINE_BYTES)
		len = CMDLINE_BYTES;
	view = reader_view();
	rec.tgid = pid_in(task->thread_pid, &view);
	if (bpf_copy_from_user_task(buf, len, (void *)start, task, 0))
		return 0;
	rec.len = len;
	bpf_seq_write(seq, &rec, sizeof rec);
	bpf_seq_write(seq, buf, len);
	return 0;
}

/* The iteration alone, nothing read or written: what any iterator-based walk costs at least. */
SEC("iter/task")
int visit_tasks(struct bpf_iter__task *ctx)
{
	return 0;
}

SEC("iter/task_file")
int visit_files(struct bpf_iter__task_file *ctx)
{
	return 0;
}

// wpload: the workloads and the event generator of wpbench, in C so that no
// language runtime adds noise. Compiled by wpbench at run time (gcc -O2).
//
//   wpload WORKLOAD ITERATIONS DIR
//     runs ITERATIONS of WORKLOAD and prints one line:
//     "iters=N wall_ns=W cpu_ns=C user_ns=U sys_ns=S"
//     measured around the loop only (setup excluded). CPU time is this
//     process's (all threads) plus its waited-for children.
//   wpload gen RATE SECONDS THREADS DIR [open|enoent|cred]
//     opens and closes DIR/gen.dat (open, the default), tries to open a
//     file for writing in a directory that does not exist (enoent: a cheap
//     failed open, which Watchpost always reports for a write, with the name
//     as given) or calls setresuid(-1, -1, -1)
//     (cred: a credential-change event, which Watchpost submits with a
//     forced wakeup) RATE times a second in total, spread over THREADS
//     threads, for SECONDS; prints "ops=N wall_ns=W".
//
// Workloads: open_close, stat, getppid, fork_exec, tcp_connect, tcp_poll,
// file_write.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what)
{
	fprintf(stderr, "wpload: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t tv_ns(struct timeval tv)
{
	return (int64_t)tv.tv_sec * 1000000000LL + (int64_t)tv.tv_usec * 1000LL;
}

struct cpu {
	int64_t user, sys;
};

static struct cpu cpu_now(void)
{
	struct rusage self, kids;
	if (getrusage(RUSAGE_SELF, &self) || getrusage(RUSAGE_CHILDREN, &kids))
		die("getrusage");
	struct cpu c = {
		.user = tv_ns(self.ru_utime) + tv_ns(kids.ru_utime),
		.sys = tv_ns(self.ru_stime) + tv_ns(kids.ru_stime),
	};
	return c;
}

static char path_buf[4096];

static const char *in_dir(const char *dir, const char *name)
{
	snprintf(path_buf, sizeof(path_buf), "%s/%s", dir, name);
	return path_buf;
}

/* ---- TCP server thread: accept, then either close (connect workload)
 * or answer fixed-size requests (poll workload). */

#define REQ_LEN 12 /* Modbus/TCP "read holding registers" request */
#define RESP_LEN 29 /* its answer with 10 registers */

struct server {
	int lfd;
	int poll; /* answer requests instead of closing at once */
	struct sockaddr_in addr;
};

static void *serve(void *arg)
{
	struct server *s = arg;
	char req[REQ_LEN], resp[RESP_LEN];
	memset(resp, 0x5a, sizeof(resp));
	for (;;) {
		int c = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return NULL; /* listener closed: done */
		}
		if (!s->poll) {
			close(c);
			continue;
		}
		int one = 1;
		setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		for (;;) {
			ssize_t got = 0;
			while (got < REQ_LEN) {
				ssize_t n = recv(c, req + got, REQ_LEN - got, 0);
				if (n <= 0)
					goto done;
				got += n;
			}
			if (send(c, resp, RESP_LEN, 0) != RESP_LEN)
				break;
		}
	done:
		close(c);
	}
}

static struct server *start_server(int poll, pthread_t *th)
{
	static struct server s;
	s.poll = poll;
	s.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s.lfd < 0)
		die("socket");
	memset(&s.addr, 0, sizeof(s.addr));
	s.addr.sin_family = AF_INET;
	s.addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof(s.addr);
	if (bind(s.lfd, (struct sockaddr *)&s.addr, len) || listen(s.lfd, 1024) ||
	    getsockname(s.lfd, (struct sockaddr *)&s.addr, &len))
		die("listen on loopback");
	if (pthread_create(th, NULL, serve, &s))
		die("pthread_create");
	return &s;
}

static void stop_server(struct server *s, pthread_t th)
{
	shutdown(s->lfd, SHUT_RDWR);
	close(s->lfd);
	pthread_join(th, NULL);
}

/* An abortive close (linger 0) leaves no TIME_WAIT behind, so thousands
 * of connections per run do not exhaust the loopback's ephemeral ports. */
static void close_abort(int fd)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

static int tcp_dial(struct server *s)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket");
	if (connect(fd, (struct sockaddr *)&s->addr, sizeof(s->addr)))
		die("connect");
	return fd;
}

/* ---- workloads ---- */

static void run_workload(const char *w, long iters, const char *dir)
{
	int64_t t0, t1;
	struct cpu c0, c1;
	if (!strcmp(w, "open_close") || !strcmp(w, "stat")) {
		const char *p = in_dir(dir, "target.dat");
		int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0)
			die(p);
		close(fd);
		int is_open = !strcmp(w, "open_close");
		struct stat st;
		c0 = cpu_now();
		t0 = now_ns();
		for (long i = 0; i < iters; i++) {
			if (is_open) {
				fd = open(p, O_RDONLY | O_CLOEXEC);
				if (fd < 0)
					die("open");
				close(fd);
			} else if (stat(p, &st)) {
				die("stat");
			}
		}
	} else if (!strcmp(w, "getppid")) {
		c0 = cpu_now();
		t0 = now_ns();
		for (long i = 0; i < iters; i++)
			syscall(SYS_getppid);
	} else if (!strcmp(w, "fork_exec")) {
		char *const argv[] = {"true", NULL};
		char *const envp[] = {NULL};
		c0 = cpu_now();
		t0 = now_ns();
		for (long i = 0; i < iters; i++) {
			pid_t pid = fork();
			if (pid < 0)
				die("fork");
			if (pid == 0) {
				execve("/bin/true", argv, envp);
				_exit(127);
			}
			int status;
			if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status))
				die("child /bin/true");
		}
	} else if (!strcmp(w, "tcp_connect")) {
		pthread_t th;
		struct server *s = start_server(0, &th);
		c0 = cpu_now();
		t0 = now_ns();
		for (long i = 0; i < iters; i++)
			close_abort(tcp_dial(s));
		t1 = now_ns();
		c1 = cpu_now();
		stop_server(s, th);
		goto report;
	} else if (!strcmp(w, "tcp_poll")) {
		pthread_t th;
		struct server *s = start_server(1, &th);
		int fd = tcp_dial(s);
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		char req[REQ_LEN] = {0, 1, 0, 0, 0, 6, 1, 3, 0, 0, 0, 10};
		char resp[RESP_LEN];
		c0 = cpu_now();
		t0 = now_ns();
		for (long i = 0; i < iters; i++) {
			if (send(fd, req, REQ_LEN, 0) != REQ_LEN)
				die("send");
			ssize_t got = 0;
			while (got < RESP_LEN) {
				ssize_t n = recv(fd, resp + got, RESP_LEN - got, 0);
				if (n <= 0)
					die("recv");
				got += n;
			}
		}
		t1 = now_ns();
		c1 = cpu_now();
		close(fd);
		stop_server(s, th);
		goto report;
	} else if (!strcmp(w, "file_write")) {
		/* 4 KiB writes into a file that is reopened (truncated) every
		 * 1 MiB: a logger or historian writing its data. */
		static char block[4096];
		memset(block, 'x', sizeof(block));
		const char *p = in_dir(dir, "bulk.dat");
		int fd = -1;
		c0 = cpu_now();
		t0 = now_ns();
		for (long i = 0; i < iters; i++) {
			if (i % 256 == 0) {
				if (fd >= 0)
					close(fd);
				fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
				if (fd < 0)
					die(p);
			}
			if (write(fd, block, sizeof(block)) != (ssize_t)sizeof(block))
				die("write");
		}
		if (fd >= 0)
			close(fd);
	} else {
		fprintf(stderr, "wpload: unknown workload %s\n", w);
		exit(2);
	}
	t1 = now_ns();
	c1 = cpu_now();
report:
	printf("iters=%ld wall_ns=%lld cpu_ns=%lld user_ns=%lld sys_ns=%lld\n", iters, (long long)(t1 - t0),
	       (long long)((c1.user - c0.user) + (c1.sys - c0.sys)), (long long)(c1.user - c0.user),
	       (long long)(c1.sys - c0.sys));
}

/* ---- generator ---- */

struct gen {
	int kind; /* 0 open + close, 1 open a missing file, 2 setresuid */
	double rate; /* per thread, per second */
	int64_t start, end;
	const char *path;
	long ops;
};

static void *gen_thread(void *arg)
{
	struct gen *g = arg;
	long done = 0;
	for (;;) {
		int64_t t = now_ns();
		if (t >= g->end)
			break;
		long due = (long)((double)(t - g->start) * g->rate / 1e9);
		if (done >= due) {
			/* ahead of schedule: sleep about 1 ms */
			struct timespec ts = {0, 1000000};
			nanosleep(&ts, NULL);
			continue;
		}
		long burst = due - done;
		if (burst > 1000)
			burst = 1000;
		for (long i = 0; i < burst; i++) {
			if (g->kind == 2) {
				if (syscall(SYS_setresuid, -1, -1, -1))
					die("setresuid");
				continue;
			}
			if (g->kind == 1) {
				if (open("/wpbench-missing/gen.dat", O_WRONLY | O_CREAT | O_CLOEXEC, 0600) >= 0 || errno != ENOENT)
					die("open of a missing file");
				continue;
			}
			int fd = open(g->path, O_RDONLY | O_CLOEXEC);
			if (fd < 0)
				die("open");
			close(fd);
		}
		done += burst;
	}
	g->ops = done;
	return NULL;
}

static void run_gen(double rate, double seconds, int threads, const char *dir, int kind)
{
	const char *p = in_dir(dir, "gen.dat");
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		die(p);
	close(fd);
	if (threads < 1 || threads > 64)
		threads = 1;
	pthread_t th[64];
	struct gen g[64];
	int64_t start = now_ns();
	for (int i = 0; i < threads; i++) {
		g[i] = (struct gen){.kind = kind, .rate = rate / threads, .start = start,
				    .end = start + (int64_t)(seconds * 1e9), .path = p};
		if (pthread_create(&th[i], NULL, gen_thread, &g[i]))
			die("pthread_create");
	}
	long ops = 0;
	for (int i = 0; i < threads; i++) {
		pthread_join(th[i], NULL);
		ops += g[i].ops;
	}
	printf("ops=%ld wall_ns=%lld\n", ops, (long long)(now_ns() - start));
}

int main(int argc, char **argv)
{
	if ((argc == 6 || argc == 7) && !strcmp(argv[1], "gen")) {
		int kind = 0;
		if (argc == 7 && !strcmp(argv[6], "enoent"))
			kind = 1;
		else if (argc == 7 && !strcmp(argv[6], "cred"))
			kind = 2;
		else if (argc == 7 && strcmp(argv[6], "open")) {
			fprintf(stderr, "wpload: unknown generator %s\n", argv[6]);
			return 2;
		}
		run_gen(atof(argv[2]), atof(argv[3]), atoi(argv[4]), argv[5], kind);
		return 0;
	}
	if (argc != 4) {
		fprintf(stderr, "usage: wpload WORKLOAD ITERATIONS DIR | wpload gen RATE SECONDS THREADS DIR [open|enoent|cred]\n");
		return 2;
	}
	run_workload(argv[1], atol(argv[2]), argv[3]);
	return 0;
}

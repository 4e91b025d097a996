/*
 * runstat: runs commands many times, interleaved, and reports per command
 * the wall time (fork to reap), the time from fork to the first byte 0xa5
 * (MARKER) on the child's stdout, the CPU time (user + sys of the child and
 * all its threads, from wait4) and the peak RSS (ru_maxrss).
 *
 *   runstat [-n RUNS] [-w WARMUP] -- LABEL STATUS CMD [ARG...] \; LABEL STATUS CMD ...
 *
 * Commands are separated by a lone ";" argument. STATUS is the exit status
 * each run must end with (a run that does not is an error: the measurement
 * would be of something else). Runs go round-robin over the commands
 * (A B C A B C ...) so that drift on the machine affects all of them alike.
 * The children's stdin and stderr are /dev/null, their stdout a pipe that
 * runstat reads to the end.
 *
 * Output: one line per command, times in milliseconds, RSS in KiB
 * (first_* is -1 when the command never printed the marker):
 *   LABEL runs=N first_med=.. first_mean=.. first_min=.. wall_med=.. wall_mean=.. wall_min=.. wall_max=.. cpu_med=.. cpu_mean=.. user_mean=.. sys_mean=.. rss_med=.. rss_max=..
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CMDS 16
#define MARKER 0xa5

struct cmd {
	const char *label;
	int status;
	char **argv;
	double *first, *wall, *cpu, *user, *sys, *rss;
};

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static double tv_ms(struct timeval tv)
{
	return tv.tv_sec * 1e3 + tv.tv_usec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double mean(const double *v, int n)
{
	double s = 0;

	for (int i = 0; i < n; i++)
		s += v[i];
	return s / n;
}

/* One run; fills the sample slot i when i >= 0 (a warm-up run otherwise). */
static void run_one(struct cmd *c, int i)
{
	struct rusage ru;
	int st, devnull, fds[2];
	double t0, t1, first = -1;
	unsigned char buf[4096];
	ssize_t n;
	pid_t pid;

	if (pipe(fds)) {
		perror("runstat: pipe");
		exit(2);
	}
	t0 = now_ms();
	pid = fork();
	if (pid < 0) {
		perror("runstat: fork");
		exit(2);
	}
	if (pid == 0) {
		devnull = open("/dev/null", O_RDWR);
		dup2(devnull, 0);
		dup2(fds[1], 1);
		dup2(devnull, 2);
		close(fds[0]);
		close(fds[1]);
		execvp(c->argv[0], c->argv);
		_exit(127);
	}
	close(fds[1]);
	while ((n = read(fds[0], buf, sizeof(buf))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			perror("runstat: read");
			exit(2);
		}
		if (first < 0 && memchr(buf, MARKER, n))
			first = now_ms() - t0;
	}
	close(fds[0]);
	if (wait4(pid, &st, 0, &ru) < 0) {
		perror("runstat: wait4");
		exit(2);
	}
	t1 = now_ms();
	if (!WIFEXITED(st) || WEXITSTATUS(st) != c->status) {
		fprintf(stderr, "runstat: %s: %s %d, expected exit status %d\n", c->label,
			WIFEXITED(st) ? "exit status" : "killed by signal",
			WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), c->status);
		exit(1);
	}
	if (i < 0)
		return;
	c->first[i] = first;
	c->wall[i] = t1 - t0;
	c->user[i] = tv_ms(ru.ru_utime);
	c->sys[i] = tv_ms(ru.ru_stime);
	c->cpu[i] = c->user[i] + c->sys[i];
	c->rss[i] = ru.ru_maxrss;
}

static void usage(void)
{
	fprintf(stderr, "usage: runstat [-n RUNS] [-w WARMUP] -- LABEL STATUS CMD [ARG...] "
		"[';' LABEL STATUS CMD [ARG...]]...\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct cmd cmds[MAX_CMDS];
	int runs = 50, warmup = 5, n = 0, opt, i, j;

	while ((opt = getopt(argc, argv, "n:w:")) != -1) {
		switch (opt) {
		case 'n': runs = atoi(optarg); break;
		case 'w': warmup = atoi(optarg); break;
		default: usage();
		}
	}
	if (runs < 1 || warmup < 0)
		usage();
	for (i = optind; i < argc;) {
		struct cmd *c;

		if (n == MAX_CMDS || argc - i < 3)
			usage();
		c = &cmds[n++];
		c->label = argv[i];
		c->status = atoi(argv[i + 1]);
		c->argv = &argv[i + 2];
		for (j = i + 2; j < argc && strcmp(argv[j], ";"); j++)
			;
		if (j == i + 2)
			usage();
		if (j < argc)
			argv[j++] = NULL;	/* argv[argc] is NULL already */
		i = j;
		c->first = calloc(runs, sizeof(double));
		c->wall = calloc(runs, sizeof(double));
		c->cpu = calloc(runs, sizeof(double));
		c->user = calloc(runs, sizeof(double));
		c->sys = calloc(runs, sizeof(double));
		c->rss = calloc(runs, sizeof(double));
		if (!c->first || !c->wall || !c->cpu || !c->user || !c->sys || !c->rss)
			return 2;
	}
	if (!n)
		usage();
	for (i = 0; i < warmup; i++)
		for (j = 0; j < n; j++)
			run_one(&cmds[j], -1);
	for (i = 0; i < runs; i++)
		for (j = 0; j < n; j++)
			run_one(&cmds[j], i);
	for (j = 0; j < n; j++) {
		struct cmd *c = &cmds[j];
		double fmean = mean(c->first, runs), fmed = median(c->first, runs);
		double wmean = mean(c->wall, runs), cmean = mean(c->cpu, runs);
		double umean = mean(c->user, runs), smean = mean(c->sys, runs);
		double wmed = median(c->wall, runs), cmed = median(c->cpu, runs);
		double rmed = median(c->rss, runs);

		if (c->first[0] < 0)	/* sorted: some run never printed the marker */
			fmean = fmed = -1;
		printf("%s runs=%d first_med=%.2f first_mean=%.2f first_min=%.2f wall_med=%.2f wall_mean=%.2f wall_min=%.2f wall_max=%.2f "
		       "cpu_med=%.2f cpu_mean=%.2f user_mean=%.2f sys_mean=%.2f "
		       "rss_med=%.0f rss_max=%.0f\n",
		       c->label, runs, fmed, fmean, c->first[0], wmed, wmean, c->wall[0], c->wall[runs - 1], cmed, cmean,
		       umean, smean, rmed, c->rss[runs - 1]);
	}
	return 0;
}

/*
 * spawn.c - timing driver for benches/overhead.sh.
 *
 * Usage: spawn RUNS CMD1 [CMD2 ...]
 *
 * Each CMD is one argument: an optional "@PORT " prefix, then a command
 * line split on spaces (no quoting). The commands are run round-robin,
 * RUNS times each, so that drift (CPU frequency, other load) hits all of
 * them alike. One run = fork, execvp, [connect to 127.0.0.1:PORT until it
 * succeeds, for activators that wait for a first connection], waitpid.
 * stdout/stderr of the commands go to /dev/null. A run that exits non-zero
 * aborts the benchmark.
 *
 * Prints one line per command: "median_us mean_us p90_us".
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct cmd {
	int port;
	char **argv;
	double *us;
};

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void parse(struct cmd *c, char *text, int runs)
{
	int n = 0;
	char *save = NULL;
	c->port = 0;
	if (text[0] == '@') {
		c->port = atoi(text + 1);
		text = strchr(text, ' ');
		if (!text) {
			fprintf(stderr, "spawn: '@PORT' needs a command\n");
			exit(2);
		}
	}
	c->argv = calloc(strlen(text) / 2 + 2, sizeof(char *));
	for (char *w = strtok_r(text, " ", &save); w; w = strtok_r(NULL, " ", &save))
		c->argv[n++] = w;
	c->us = calloc(runs, sizeof(double));
}

static void trigger(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	for (;;) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		int rc = connect(fd, (struct sockaddr *)&a, sizeof a);
		close(fd);
		if (rc == 0)
			return;
		sched_yield();
	}
}

static double one(struct cmd *c, int devnull)
{
	double t0 = now_us();
	pid_t pid = fork();
	if (pid == 0) {
		dup2(devnull, 1);
		dup2(devnull, 2);
		execvp(c->argv[0], c->argv);
		_exit(127);
	}
	if (c->port)
		trigger(c->port);
	int status;
	waitpid(pid, &status, 0);
	double t = now_us() - t0;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "spawn: '%s' failed (status 0x%x)\n", c->argv[0], status);
		exit(1);
	}
	return t;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: spawn RUNS CMD...\n");
		return 2;
	}
	int runs = atoi(argv[1]), ncmd = argc - 2;
	struct cmd *cmds = calloc(ncmd, sizeof *cmds);
	for (int i = 0; i < ncmd; i++)
		parse(&cmds[i], argv[2 + i], runs);
	int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
	/* Warm-up: page cache, CPU frequency. */
	for (int r = 0; r < runs / 10 + 1; r++)
		for (int i = 0; i < ncmd; i++)
			one(&cmds[i], devnull);
	for (int r = 0; r < runs; r++)
		for (int i = 0; i < ncmd; i++)
			cmds[i].us[r] = one(&cmds[i], devnull);
	for (int i = 0; i < ncmd; i++) {
		double sum = 0;
		for (int r = 0; r < runs; r++)
			sum += cmds[i].us[r];
		qsort(cmds[i].us, runs, sizeof(double), cmp);
		printf("%.1f %.1f %.1f\n", cmds[i].us[runs / 2], sum / runs, cmds[i].us[runs * 9 / 10]);
	}
	return 0;
}

/* benches/accept_client.c - sequential connections, each read to EOF,
 * timed from before connect(2) to EOF. Prints one latency per line in
 * microseconds (nanosecond resolution) on stdout, and on stderr the
 * connections that did not get EXPECT.
 *
 * usage: accept_client PORT COUNT EXPECT
 * It first waits (up to 10 s) for the port to accept, and makes 20
 * connections that are not counted (warm-up).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

/* One connection: 0 if it got `expect` then EOF. */
static int one(const struct sockaddr_in *sa, const char *expect)
{
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (connect(s, (const struct sockaddr *)sa, sizeof *sa)) {
		close(s);
		return -1;
	}
	char buf[256];
	size_t got = 0;
	for (;;) {
		ssize_t n = read(s, buf + got, sizeof buf - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += n;
		if (got == sizeof buf - 1)
			break;
	}
	close(s);
	buf[got] = 0;
	return strcmp(buf, expect) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: accept_client PORT COUNT EXPECT\n");
		return 2;
	}
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons(atoi(argv[1])),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int count = atoi(argv[2]);
	char expect[256];
	snprintf(expect, sizeof expect, "%s\n", argv[3]);
	double until = now_us() + 10e6;
	while (one(&sa, expect) < 0) {
		if (now_us() > until) {
			fprintf(stderr, "accept_client: port %s never accepted\n", argv[1]);
			return 1;
		}
		usleep(2000);
	}
	for (int i = 0; i < 20; i++)
		one(&sa, expect);
	int bad = 0;
	for (int i = 0; i < count; i++) {
		double t0 = now_us();
		int r = one(&sa, expect);
		double t1 = now_us();
		if (r)
			bad++;
		printf("%.3f\n", t1 - t0);
	}
	if (bad)
		fprintf(stderr, "accept_client: %d of %d connections did not get the reply\n", bad,
			count);
	return bad != 0;
}

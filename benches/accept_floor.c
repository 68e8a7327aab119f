/* benches/accept_floor.c - the floor for an inetd-style accept loop: bind,
 * accept, vfork, the connection on stdin and stdout, execv, reap. Nothing
 * else: no environment, no limits, no signals, no error handling beyond
 * going on. benches/accept.sh compares gracewrap -a --inetd with it.
 *
 * usage: accept_floor PORT PROGRAM [ARGS...]   (PROGRAM: an absolute path)
 */
#define _GNU_SOURCE
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: accept_floor PORT PROGRAM [ARGS...]\n");
		return 2;
	}
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons(atoi(argv[1])),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (bind(l, (struct sockaddr *)&sa, sizeof sa) || listen(l, 4096)) {
		perror("accept_floor: bind/listen");
		return 1;
	}
	for (;;) {
		int c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0)
			continue;
		if (vfork() == 0) {
			dup2(c, 0);
			dup2(c, 1);
			execv(argv[2], argv + 2);
			_exit(127);
		}
		close(c);
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
	}
}

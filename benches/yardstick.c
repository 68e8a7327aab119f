/*
 * yardstick.c - the floor for benches/overhead.sh.
 *
 * yardstick N PORT PROGRAM [ARGS...]
 *     The minimal exec wrapper: binds N TCP listeners on 127.0.0.1:PORT,
 *     PORT+1, ..., moves them to fds 3.. (dup2), sets LISTEN_FDS and
 *     LISTEN_PID, execvp(PROGRAM). No parsing, no checks, no names: what
 *     any socket-activation wrapper has to do at the very least.
 *
 * yardstick --self N PORT
 *     A program that binds its own N sockets and exits: the cost of
 *     serving without any wrapper.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int bind_one(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, 4096)) {
		perror("yardstick: bind");
		exit(125);
	}
	return fd;
}

int main(int argc, char **argv)
{
	int self = argc > 1 && strcmp(argv[1], "--self") == 0;
	argv += self;
	argc -= self;
	if (argc < 3 + !self) {
		fprintf(stderr, "usage: yardstick [--self] N PORT [PROGRAM ARGS...]\n");
		return 2;
	}
	int n = atoi(argv[1]), port = atoi(argv[2]);
	/* Sockets are created in order and land at 3.. because nothing else
	 * is open; the dup2 is there for when they do not. */
	for (int i = 0; i < n; i++) {
		int fd = bind_one(port + i);
		if (!self && fd != 3 + i) {
			dup2(fd, 3 + i);
			close(fd);
		} else if (!self) {
			fcntl(fd, F_SETFD, 0);
		}
	}
	if (self)
		return 0;
	char buf[32];
	snprintf(buf, sizeof buf, "%d", n);
	setenv("LISTEN_FDS", buf, 1);
	snprintf(buf, sizeof buf, "%d", (int)getpid());
	setenv("LISTEN_PID", buf, 1);
	execvp(argv[3], argv + 3);
	perror("yardstick: execvp");
	return 127;
}

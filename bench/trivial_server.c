/*
 * trivial_server: the cheapest possible TCP service, for bench/startup.py.
 *
 *   trivial_server PORT [--delay-ms N]
 *
 * Sleeps N milliseconds (default 0), then listens on 127.0.0.1:PORT and accepts and closes
 * connections until SIGTERM or SIGINT, when it exits 0. Its own start-up cost is a few hundred
 * microseconds, so what a benchmark measures is the orchestrator's.
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop_requested = 0;

static void on_signal(int signo) {
    (void)signo;
    stop_requested = 1;
}

static void usage(void) {
    fprintf(stderr, "usage: trivial_server PORT [--delay-ms N]\n");
    exit(2);
}

static long parse_long(const char *s, long lo, long hi) {
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) usage();
    return v;
}

int main(int argc, char **argv) {
    long port = -1, delay_ms = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--delay-ms") == 0 && i + 1 < argc) {
            delay_ms = parse_long(argv[++i], 0, 3600L * 1000L);
        } else if (port < 0) {
            port = parse_long(argv[i], 1, 65535);
        } else {
            usage();
        }
    }
    if (port < 0) usage();

    /* No SA_RESTART: a signal interrupts accept() with EINTR and the loop ends. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    if (delay_ms > 0) {
        struct timespec ts = {delay_ms / 1000, (delay_ms % 1000) * 1000000L};
        while (!stop_requested && nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
        if (stop_requested) return 0;
    }

    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        perror("socket");
        return 1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        fprintf(stderr, "trivial_server: bind 127.0.0.1:%ld: %s\n", port, strerror(errno));
        return 1;
    }
    if (listen(fd, 4096) != 0) {
        perror("listen");
        return 1;
    }
    while (!stop_requested) {
        int c = accept(fd, NULL, NULL);
        if (c >= 0) {
            close(c);
        } else if (errno != EINTR && errno != ECONNABORTED && errno != EMFILE && errno != ENFILE) {
            perror("accept");
            return 1;
        }
    }
    close(fd);
    return 0;
}

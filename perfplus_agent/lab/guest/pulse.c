/*
 * pulse.c - heartbeat service of the Perf+ lab guest.
 *
 * A client outside the VM pings this service during a live migration to see
 * how long the guest's network stops answering, and whether the guest that
 * answers afterwards is the same boot (the boot id does not change across a
 * migration; it changes if the guest rebooted).
 *
 * Usage: pulse [-p port] [-a bind_address]
 *   -p  TCP and UDP port, default 7000; 0 = any free port (the one chosen is
 *       printed), meant for tests
 *   -a  IPv4 address to bind, default 0.0.0.0
 *
 * At start it prints one line on stdout:
 *   PULSE listening port=<port> boot=<16 hex digits, random per start>
 * TCP: each line "PING <seq>" (seq = decimal digits, echoed verbatim; a
 *   trailing CR is ignored) is answered at once with
 *   "PONG <seq> <boot> <CLOCK_MONOTONIC in ns>\n"; any other line gets
 *   "ERR\n".  Up to 64 clients at a time; a client beyond that is accepted
 *   and closed at once.  Lines longer than 255 bytes get one "ERR\n".
 * UDP: each datagram "PING <seq>" (an optional trailing newline is ignored)
 *   is answered to its sender with "PONG <seq> <boot> <ns>" (no newline);
 *   anything else gets "ERR".
 * A misbehaving client is dropped; the server itself never exits because of
 * one.
 *
 * Build: gcc -O2 -static -Wall -Wextra -o pulse pulse.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CLIENTS 64
#define IN_MAX 256      /* longest accepted request line, newline included */
#define OUT_MAX 8192    /* pending replies per client */
#define REPLY_MAX 96
#define SEQ_MAX_DIGITS 20
#define UDP_BURST 32    /* datagrams handled per wake-up */

struct client {
    int fd; /* -1 = free slot */
    char in[IN_MAX];
    size_t in_len;
    bool discarding; /* inside an over-long line */
    char out[OUT_MAX];
    size_t out_len;
};

struct server {
    int tcp_fd, udp_fd;
    uint16_t port;
    char boot[17]; /* boot id as 16 hex digits */
    struct client clients[MAX_CLIENTS];
};

/* ---- helpers ------------------------------------------------------------------- */

static uint64_t mono_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
        perror("pulse: clock_gettime");
        exit(1);
    }
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static bool read_urandom(void *buf, size_t len)
{
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, len);
    close(fd);
    return n == (ssize_t)len;
}

/* A random id that differs between starts; it need not be secret, so it does
 * not wait for the kernel's entropy pool early in boot. */
static uint64_t random_boot_id(void)
{
    uint64_t id;
    if (getrandom(&id, sizeof id, GRND_NONBLOCK) == (ssize_t)sizeof id)
        return id;
    if (getrandom(&id, sizeof id, GRND_INSECURE) == (ssize_t)sizeof id)
        return id;
    if (read_urandom(&id, sizeof id))
        return id;
    return mono_ns() ^ ((uint64_t)getpid() << 40);
}

/* "PING <digits>" -> pointer to the digits, else NULL.  line is NUL-terminated. */
static const char *parse_ping(const char *line, size_t len)
{
    if (len > 0 && line[len - 1] == '\r')
        len--;
    if (len < 6 || memcmp(line, "PING ", 5) != 0)
        return NULL;
    size_t ndigits = len - 5;
    if (ndigits > SEQ_MAX_DIGITS)
        return NULL;
    for (size_t i = 5; i < len; i++)
        if (line[i] < '0' || line[i] > '9')
            return NULL;
    return line + 5;
}

/* Reply to one request; returns its length (without a NUL). */
static size_t make_reply(const struct server *s, const char *line, size_t len, char *out,
                         bool newline)
{
    const char *seq = parse_ping(line, len);
    if (seq == NULL)
        return (size_t)snprintf(out, REPLY_MAX, "ERR%s", newline ? "\n" : "");
    size_t ndigits = 0;
    while (seq[ndigits] >= '0' && seq[ndigits] <= '9')
        ndigits++;
    return (size_t)snprintf(out, REPLY_MAX, "PONG %.*s %s %" PRIu64 "%s", (int)ndigits, seq,
                            s->boot, mono_ns(), newline ? "\n" : "");
}

/* ---- TCP clients --------------------------------------------------------------- */

static void client_close(struct client *c)
{
    if (close(c->fd) != 0)
        perror("pulse: close");
    c->fd = -1;
    c->in_len = 0;
    c->out_len = 0;
    c->discarding = false;
}

static bool client_queue(struct client *c, const char *data, size_t len)
{
    if (len > OUT_MAX - c->out_len)
        return false;
    memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
    return true;
}

/* Send what is pending; false if the connection is broken. */
static bool client_flush(struct client *c)
{
    while (c->out_len > 0) {
        ssize_t n = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK;
        }
        memmove(c->out, c->out + n, c->out_len - (size_t)n);
        c->out_len -= (size_t)n;
    }
    return true;
}

/* Answer every complete line in the input buffer; false if the client must go. */
static bool client_process(const struct server *s, struct client *c)
{
    char reply[REPLY_MAX];
    size_t start = 0;
    for (size_t i = 0; i < c->in_len; i++) {
        if (c->in[i] != '\n')
            continue;
        if (c->discarding) {
            c->discarding = false; /* the ERR was sent when the line overflowed */
        } else {
            c->in[i] = '\0';
            size_t n = make_reply(s, c->in + start, i - start, reply, true);
            if (!client_queue(c, reply, n))
                return false;
        }
        start = i + 1;
    }
    memmove(c->in, c->in + start, c->in_len - start);
    c->in_len -= start;
    if (c->in_len == sizeof c->in) { /* no newline in a full buffer */
        c->in_len = 0;
        if (!c->discarding && !client_queue(c, "ERR\n", 4))
            return false;
        c->discarding = true;
    }
    return true;
}

/* Read what the client sent; false on close or error. */
static bool client_read(const struct server *s, struct client *c)
{
    ssize_t n = read(c->fd, c->in + c->in_len, sizeof c->in - c->in_len);
    if (n < 0)
        return errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK;
    if (n == 0)
        return false;
    c->in_len += (size_t)n;
    return client_process(s, c);
}

static void accept_clients(struct server *s)
{
    for (;;) {
        int fd = accept4(s->tcp_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                perror("pulse: accept");
            return;
        }
        struct client *slot = NULL;
        for (int i = 0; i < MAX_CLIENTS && slot == NULL; i++)
            if (s->clients[i].fd < 0)
                slot = &s->clients[i];
        if (slot == NULL) { /* full: the client sees an immediate EOF */
            if (close(fd) != 0)
                perror("pulse: close");
            continue;
        }
        int one = 1;
        if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
            perror("pulse: TCP_NODELAY");
        slot->fd = fd;
    }
}

/* ---- UDP ----------------------------------------------------------------------- */

static void serve_udp(const struct server *s)
{
    for (int k = 0; k < UDP_BURST; k++) {
        char buf[IN_MAX + 1], reply[REPLY_MAX];
        struct sockaddr_in from;
        socklen_t fromlen = sizeof from;
        ssize_t n = recvfrom(s->udp_fd, buf, IN_MAX, MSG_DONTWAIT, (struct sockaddr *)&from,
                             &fromlen);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                perror("pulse: recvfrom");
            return;
        }
        size_t len = (size_t)n;
        if (len > 0 && buf[len - 1] == '\n')
            len--;
        buf[len] = '\0';
        size_t rlen = make_reply(s, buf, len, reply, false);
        if (sendto(s->udp_fd, reply, rlen, MSG_DONTWAIT | MSG_NOSIGNAL,
                   (const struct sockaddr *)&from, fromlen) < 0)
            perror("pulse: sendto");
    }
}

/* ---- setup --------------------------------------------------------------------- */

static int bound_socket(int type, struct sockaddr_in *addr)
{
    int fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)addr, sizeof *addr) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

/* Bind TCP and UDP to the same port; with port 0 the kernel picks the TCP
 * port and UDP follows it (retried if that UDP port happens to be taken). */
static bool open_sockets(struct server *s, struct in_addr ip, uint16_t port)
{
    for (int attempt = 0; attempt < 20; attempt++) {
        struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr = ip,
                                    .sin_port = htons(port) };
        s->tcp_fd = bound_socket(SOCK_STREAM, &addr);
        if (s->tcp_fd < 0) {
            perror("pulse: tcp bind");
            return false;
        }
        socklen_t alen = sizeof addr;
        if (listen(s->tcp_fd, 64) != 0 ||
            getsockname(s->tcp_fd, (struct sockaddr *)&addr, &alen) != 0) {
            perror("pulse: listen");
            return false;
        }
        s->udp_fd = bound_socket(SOCK_DGRAM, &addr);
        if (s->udp_fd >= 0) {
            s->port = ntohs(addr.sin_port);
            return true;
        }
        int err = errno;
        close(s->tcp_fd);
        if (port != 0 || err != EADDRINUSE) {
            errno = err;
            perror("pulse: udp bind");
            return false;
        }
    }
    fprintf(stderr, "pulse: no port free for both TCP and UDP\n");
    return false;
}

static void usage(void)
{
    fputs("usage: pulse [-p port (default 7000, 0 = any)] [-a bind_ipv4 (default 0.0.0.0)]\n",
          stderr);
}

static void parse_args(int argc, char **argv, struct in_addr *ip, uint16_t *port)
{
    int opt;
    ip->s_addr = htonl(INADDR_ANY);
    *port = 7000;
    while ((opt = getopt(argc, argv, "p:a:")) != -1) {
        char *end;
        long v;
        switch (opt) {
        case 'p':
            errno = 0;
            v = strtol(optarg, &end, 10);
            if (errno != 0 || *optarg == '\0' || *end != '\0' || v < 0 || v > 65535) {
                fprintf(stderr, "pulse: bad port '%s'\n", optarg);
                exit(2);
            }
            *port = (uint16_t)v;
            break;
        case 'a':
            if (inet_pton(AF_INET, optarg, ip) != 1) {
                fprintf(stderr, "pulse: bad IPv4 address '%s'\n", optarg);
                exit(2);
            }
            break;
        default:
            usage();
            exit(2);
        }
    }
    if (optind != argc) {
        usage();
        exit(2);
    }
}

/* ---- main loop ----------------------------------------------------------------- */

static void serve(struct server *s)
{
    struct pollfd pfd[2 + MAX_CLIENTS];
    int owner[2 + MAX_CLIENTS]; /* client index of pfd[i], for i >= 2 */
    for (;;) {
        nfds_t n = 0;
        pfd[n++] = (struct pollfd){ .fd = s->tcp_fd, .events = POLLIN };
        pfd[n++] = (struct pollfd){ .fd = s->udp_fd, .events = POLLIN };
        for (int i = 0; i < MAX_CLIENTS; i++) {
            struct client *c = &s->clients[i];
            if (c->fd < 0)
                continue;
            /* Read more only once earlier replies are out (back-pressure). */
            owner[n] = i;
            pfd[n++] = (struct pollfd){ .fd = c->fd, .events = c->out_len ? POLLOUT : POLLIN };
        }
        if (poll(pfd, n, -1) < 0) {
            if (errno == EINTR)
                continue;
            perror("pulse: poll");
            exit(1);
        }
        if (pfd[1].revents)
            serve_udp(s);
        for (nfds_t k = 2; k < n; k++) {
            struct client *c = &s->clients[owner[k]];
            short ev = pfd[k].revents;
            if (ev == 0)
                continue;
            bool ok = true;
            if (ev & POLLIN)
                ok = client_read(s, c);
            else if (ev & (POLLHUP | POLLERR | POLLNVAL))
                ok = false;
            if (ok)
                ok = client_flush(c);
            if (!ok)
                client_close(c);
        }
        if (pfd[0].revents)
            accept_clients(s);
    }
}

int main(int argc, char **argv)
{
    static struct server s;
    struct in_addr ip;
    uint16_t port;

    parse_args(argc, argv, &ip, &port);
    if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
        perror("pulse: signal");
        return 1;
    }
    for (int i = 0; i < MAX_CLIENTS; i++)
        s.clients[i].fd = -1;
    snprintf(s.boot, sizeof s.boot, "%016" PRIx64, random_boot_id());
    if (!open_sockets(&s, ip, port))
        return 1;
    printf("PULSE listening port=%u boot=%s\n", (unsigned)s.port, s.boot);
    if (fflush(stdout) != 0)
        perror("pulse: stdout");
    serve(&s);
}

/* connect-lab: what a non-blocking TCP connect reports on Linux, step by
 * step, with CLOCK_MONOTONIC microsecond timestamps. The figures in
 * docs/SOCKETS.md come from it (docs/sockets/measure.sh runs it inside a
 * private network namespace).
 *
 *   connect-lab probe ADDR PORT N WAIT_MS [EAGER]  N connects: connect()'s
 *        return, an eager SO_ERROR look (unless EAGER=0), epoll readiness,
 *        SO_ERROR, getpeername, getsockname; medians and outcomes seen
 *   connect-lab retrans ADDR PORT SECS     one connect to a silent target:
 *        when TCP_INFO's retransmission count goes up
 *   connect-lab self PORT N                connects to 127.0.0.1:PORT until
 *        one meets itself (local address == peer address)
 *   connect-lab linger ADDR PORT N ZERO    N connections closed with
 *        SO_LINGER 0 (ZERO=1) or plainly (ZERO=0), then the count of
 *        sockets per TCP state from /proc/net/tcp
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static struct sockaddr_in target(const char *addr, int port) {
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
        fprintf(stderr, "bad address %s\n", addr);
        exit(2);
    }
    return sa;
}

static int so_error(int fd) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    return err;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    if (n == 0) return -1;
    qsort(v, n, sizeof *v, cmp);
    return v[n / 2];
}

static const char *name(int e) {
    switch (e) {
    case 0: return "0";
    case EINPROGRESS: return "EINPROGRESS";
    case ECONNREFUSED: return "ECONNREFUSED";
    case EHOSTUNREACH: return "EHOSTUNREACH";
    case ENETUNREACH: return "ENETUNREACH";
    case EACCES: return "EACCES";
    case EPERM: return "EPERM";
    case ETIMEDOUT: return "ETIMEDOUT";
    case ENOTCONN: return "ENOTCONN";
    case EINVAL: return "EINVAL";
    default: return strerror(e);
    }
}

/* Outcome counters: "connect=X eager=Y final=Z". */
#define MAXK 16
static char keys[MAXK][96];
static int counts[MAXK];
static void count(const char *k) {
    for (int i = 0; i < MAXK; i++) {
        if (keys[i][0] == 0) strncpy(keys[i], k, sizeof keys[i] - 1);
        if (strcmp(keys[i], k) == 0) { counts[i]++; return; }
    }
}

static int probe(const char *addr, int port, int n, int wait_ms, int eager_look) {
    struct sockaddr_in sa = target(addr, port);
    double *t_connect = calloc(n, sizeof(double)), *t_eager = calloc(n, sizeof(double));
    double *t_ready = calloc(n, sizeof(double)), *t_soerr = calloc(n, sizeof(double));
    double *t_names = calloc(n, sizeof(double));
    int nc = 0, ne = 0, nr = 0, ns = 0, nn = 0;
    int ep = epoll_create1(0);
    for (int i = 0; i < n; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        double t0 = now_us();
        int rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
        int cerr = rc == 0 ? 0 : errno;
        double t1 = now_us();
        t_connect[nc++] = t1 - t0;
        char k[96];
        if (cerr != EINPROGRESS) {
            snprintf(k, sizeof k, "connect=%s", name(cerr));
            count(k);
            close(fd);
            continue;
        }
        int eager = -1;
        if (eager_look) {
            eager = so_error(fd);
            t_eager[ne++] = now_us() - t1;
        }
        struct epoll_event ev = {.events = EPOLLOUT, .data.fd = fd};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        struct epoll_event out;
        int got = epoll_wait(ep, &out, 1, wait_ms);
        double t3 = now_us();
        const char *final = "silent";
        char buf[32];
        if (got == 1) {
            t_ready[nr++] = t3 - t0;
            int e = so_error(fd);
            double t4 = now_us();
            t_soerr[ns++] = t4 - t3;
            if (e == 0) {
                struct sockaddr_in peer, local;
                socklen_t pl = sizeof peer, ll = sizeof local;
                int pe = getpeername(fd, (struct sockaddr *)&peer, &pl);
                getsockname(fd, (struct sockaddr *)&local, &ll);
                t_names[nn++] = now_us() - t4;
                final = pe == 0 ? "connected" : "no-peer";
            } else {
                snprintf(buf, sizeof buf, "%s", name(e));
                final = buf;
            }
        }
        snprintf(k, sizeof k, "connect=EINPROGRESS eager=%s final=%s", eager < 0 ? "-" : name(eager), final);
        count(k);
        epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
        close(fd);
    }
    printf("probe %s:%d x%d\n", addr, port, n);
    for (int i = 0; i < MAXK && keys[i][0]; i++) printf("  %6d  %s\n", counts[i], keys[i]);
    printf("  median us: connect() %.1f | eager SO_ERROR %.1f | launch->readiness %.1f | "
           "readiness->SO_ERROR %.1f | getpeername+getsockname %.1f\n",
           median(t_connect, nc), median(t_eager, ne), median(t_ready, nr), median(t_soerr, ns),
           median(t_names, nn));
    return 0;
}

static int retrans(const char *addr, int port, int secs) {
    struct sockaddr_in sa = target(addr, port);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    double t0 = now_us();
    int rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    printf("retrans %s:%d connect()=%s\n", addr, port, rc == 0 ? "0" : name(errno));
    unsigned last = 0;
    while (now_us() - t0 < secs * 1e6) {
        struct tcp_info ti;
        socklen_t len = sizeof ti;
        getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len);
        if (ti.tcpi_total_retrans != last) {
            last = ti.tcpi_total_retrans;
            printf("  +%.3f s  SYN retransmission %u (rto now %.0f ms)\n", (now_us() - t0) / 1e6, last,
                   ti.tcpi_rto / 1e3);
        }
        int e = so_error(fd);
        if (e) {
            printf("  +%.3f s  SO_ERROR=%s\n", (now_us() - t0) / 1e6, name(e));
            break;
        }
        usleep(2000);
    }
    close(fd);
    return 0;
}

static int self_connect(int port, int n) {
    struct sockaddr_in sa = target("127.0.0.1", port);
    for (int i = 0; i < n; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        double t0 = now_us();
        int rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
        double t1 = now_us();
        if (rc == 0) {
            struct sockaddr_in local;
            socklen_t ll = sizeof local;
            getsockname(fd, (struct sockaddr *)&local, &ll);
            printf("self: attempt %d connected in %.1f us from local port %d to %d: %s\n", i + 1,
                   t1 - t0, ntohs(local.sin_port), port,
                   ntohs(local.sin_port) == port ? "a self-connect" : "a listener");
            close(fd);
            return 0;
        }
        close(fd);
    }
    printf("self: no self-connect in %d attempts\n", n);
    return 0;
}

static void states(const char *label) {
    static const char *tcp_states[] = {"?", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1",
                                       "FIN_WAIT2", "TIME_WAIT", "CLOSE", "CLOSE_WAIT",
                                       "LAST_ACK", "LISTEN", "CLOSING"};
    int per[12] = {0};
    FILE *f = fopen("/proc/net/tcp", "r");
    char line[512];
    fgets(line, sizeof line, f);
    while (fgets(line, sizeof line, f)) {
        unsigned st;
        if (sscanf(line, "%*d: %*x:%*x %*x:%*x %x", &st) == 1 && st < 12) per[st]++;
    }
    fclose(f);
    printf("%s:", label);
    for (int i = 1; i < 12; i++)
        if (per[i]) printf(" %s=%d", tcp_states[i], per[i]);
    printf("\n");
}

static int linger(const char *addr, int port, int n, int zero) {
    struct sockaddr_in sa = target(addr, port);
    int *fds = calloc(n, sizeof(int));
    for (int i = 0; i < n; i++) {
        /* Non-blocking: a silent target leaves the socket in SYN_SENT. */
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fds[i], (struct sockaddr *)&sa, sizeof sa);
    }
    usleep(50000);
    char label[96];
    snprintf(label, sizeof label, "  %d connects to %s:%d, before close", n, addr, port);
    states(label);
    for (int i = 0; i < n; i++) {
        if (zero) {
            struct linger l = {.l_onoff = 1, .l_linger = 0};
            setsockopt(fds[i], SOL_SOCKET, SO_LINGER, &l, sizeof l);
        }
        close(fds[i]);
    }
    usleep(100000);
    snprintf(label, sizeof label, "  after close, SO_LINGER 0 %s", zero ? "on " : "off");
    states(label);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 6 && !strcmp(argv[1], "probe"))
        return probe(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), argc < 7 || atoi(argv[6]));
    if (argc >= 5 && !strcmp(argv[1], "retrans")) return retrans(argv[2], atoi(argv[3]), atoi(argv[4]));
    if (argc >= 4 && !strcmp(argv[1], "self")) return self_connect(atoi(argv[2]), atoi(argv[3]));
    if (argc >= 6 && !strcmp(argv[1], "linger"))
        return linger(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
    fprintf(stderr, "usage: see the comment at the top of connect-lab.c\n");
    return 2;
}

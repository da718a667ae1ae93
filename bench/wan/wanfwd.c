/* wanfwd: a WAN stand-in for bench/wan: two TUN devices in two network namespaces, every packet
 * held for a fixed delay in each direction, in order.
 *
 * This kernel has no netem, so the delay comes from user space. One thread, one poll loop: a
 * packet read from one TUN is stamped with its due time and queued; due packets are written to
 * the other TUN. The virtio-net header is passed through (IFF_VNET_HDR with TSO offloads on), so
 * the kernel hands over GSO batches of up to 64 KiB instead of 1500-byte frames, which keeps the
 * forwarder at a fraction of a core at 400 Mbit/s. The rate limit is the kernel's (tbf on each
 * TUN, set up by the caller).
 *
 *     wanfwd NETNS_A NETNS_B IFNAME DELAY_MS
 *
 * NETNS_A/B are paths such as /run/netns/NAME; each gets a TUN called IFNAME. "ready" is printed
 * on stdout once both exist; SIGTERM or SIGINT ends it (the TUNs vanish with the process).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define PKT_MAX (65536 + 64)
/* At 400 Mbit/s a 20 ms delay holds ~1 MB per direction; 64 MiB queued means something is
 * wrong (the rate limit is missing): drop rather than grow without bound. */
#define QUEUE_MAX_BYTES (64u << 20)

typedef struct pkt {
        struct pkt *next;
        uint64_t due_ns;
        size_t len;
        unsigned char data[];
} pkt;

typedef struct dir {
        int in, out;
        pkt *head, *tail;
        size_t queued;
        uint64_t packets, bytes, dropped;
} dir;

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
        (void)sig;
        stop = 1;
}

static uint64_t now_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int tun_open_in(const char *netns, const char *name)
{
        struct ifreq ifr = {0};
        int ns, fd;

        ns = open(netns, O_RDONLY | O_CLOEXEC);
        if (ns < 0) {
                fprintf(stderr, "wanfwd: cannot open %s: %m\n", netns);
                return -1;
        }
        if (setns(ns, CLONE_NEWNET) < 0) {
                fprintf(stderr, "wanfwd: cannot enter %s: %m\n", netns);
                close(ns);
                return -1;
        }
        close(ns);
        fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
        if (fd < 0) {
                fprintf(stderr, "wanfwd: cannot open /dev/net/tun: %m\n");
                return -1;
        }
        ifr.ifr_flags = IFF_TUN | IFF_NO_PI | IFF_VNET_HDR;
        snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
        if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
                fprintf(stderr, "wanfwd: TUNSETIFF %s in %s: %m\n", name, netns);
                close(fd);
                return -1;
        }
        /* Without offloads the kernel segments every TCP burst into MTU-sized packets. */
        if (ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) < 0)
                fprintf(stderr, "wanfwd: TUNSETOFFLOAD on %s: %m, forwarding single frames\n",
                        name);
        return fd;
}

static void dir_read(dir *d, uint64_t delay_ns)
{
        for (int i = 0; i < 64; i++) {
                pkt *p = malloc(sizeof(*p) + PKT_MAX);
                ssize_t n;

                if (!p)
                        return;
                n = read(d->in, p->data, PKT_MAX);
                if (n <= 0) {
                        free(p);
                        return;
                }
                if (d->queued + (size_t)n > QUEUE_MAX_BYTES) {
                        d->dropped++;
                        free(p);
                        continue;
                }
                p->len = (size_t)n;
                p->next = NULL;
                p->due_ns = now_ns() + delay_ns;
                if (d->tail)
                        d->tail->next = p;
                else
                        d->head = p;
                d->tail = p;
                d->queued += p->len;
        }
}

/* Writes every due packet; returns ms until the next one is due, or -1 when the queue is empty. */
static int dir_flush(dir *d)
{
        uint64_t t = now_ns();

        while (d->head && d->head->due_ns <= t) {
                pkt *p = d->head;

                if (write(d->out, p->data, p->len) < 0 && errno == EAGAIN)
                        return 1; /* the other side's queue is full: try again shortly */
                d->packets++;
                d->bytes += p->len;
                d->queued -= p->len;
                d->head = p->next;
                if (!d->head)
                        d->tail = NULL;
                free(p);
        }
        if (!d->head)
                return -1;
        return (int)((d->head->due_ns - t + 999999) / 1000000);
}

int main(int argc, char **argv)
{
        struct sigaction sa = {.sa_handler = on_signal};
        uint64_t delay_ns;
        dir d[2] = {0};
        int a, b;
        char *end;
        long ms;

        if (argc != 5) {
                fprintf(stderr, "usage: wanfwd NETNS_A NETNS_B IFNAME DELAY_MS\n");
                return 2;
        }
        errno = 0;
        ms = strtol(argv[4], &end, 10);
        if (errno || *end || end == argv[4] || ms < 0 || ms > 10000) {
                fprintf(stderr, "wanfwd: DELAY_MS must be 0-10000, got '%s'\n", argv[4]);
                return 2;
        }
        delay_ns = (uint64_t)ms * 1000000ull;
        a = tun_open_in(argv[1], argv[3]);
        if (a < 0)
                return 1;
        b = tun_open_in(argv[2], argv[3]);
        if (b < 0)
                return 1;
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        d[0].in = a;
        d[0].out = b;
        d[1].in = b;
        d[1].out = a;
        printf("ready\n");
        fflush(stdout);

        while (!stop) {
                struct pollfd pfd[2] = {{.fd = a, .events = POLLIN}, {.fd = b, .events = POLLIN}};
                int timeout = -1;

                for (int i = 0; i < 2; i++) {
                        int t = dir_flush(&d[i]);

                        if (t >= 0 && (timeout < 0 || t < timeout))
                                timeout = t;
                }
                /* poll's millisecond granularity is fine against a 20 ms delay; a due packet
                 * is sent at most ~1 ms late, the same for every packet. */
                if (poll(pfd, 2, timeout) < 0 && errno != EINTR)
                        break;
                if (pfd[0].revents & POLLIN)
                        dir_read(&d[0], delay_ns);
                if (pfd[1].revents & POLLIN)
                        dir_read(&d[1], delay_ns);
        }
        for (int i = 0; i < 2; i++)
                fprintf(stderr, "wanfwd: direction %d: %llu packets, %llu bytes, %llu dropped\n", i,
                        (unsigned long long)d[i].packets, (unsigned long long)d[i].bytes,
                        (unsigned long long)d[i].dropped);
        return 0;
}

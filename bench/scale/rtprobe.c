/* rtprobe: what a normal process gets from the CPUs beside real-time threads (docs/master.md,
 * "Effect on the rest of the node"). It sleeps 1 ms in a loop and times how late each wake-up
 * is: p50, p99, p99.9 and the longest, a stand-in for sshd or a FUSE daemon answering.
 *
 *     rtprobe SECONDS 0     the probe alone, until SECONDS or SIGTERM (beside a benchmark)
 *     rtprobe SECONDS N     the probe with 0, 1, ... N threads spinning at SCHED_RR 1 (a busy
 *                           real-time loop, and pool threads that inherited its policy)
 *
 * Build: cc -O2 -pthread -o rtprobe rtprobe.c. N > 0 needs CAP_SYS_NICE or RLIMIT_RTPRIO >= 1
 * (exit 77 otherwise), and takes the CPUs from every other process for SECONDS: keep it short on a
 * shared machine. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <signal.h>

static volatile sig_atomic_t term;
static void on_term(int s)
{
        (void)s;
        term = 1;
}

static atomic_bool stop;

static double now(void)
{
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return t.tv_sec + t.tv_nsec / 1e9;
}

static void *spin(void *a)
{
        struct sched_param p = {.sched_priority = 1};
        (void)a;
        if (pthread_setschedparam(pthread_self(), SCHED_RR, &p) != 0)
                perror("SCHED_RR"), exit(77);
        while (!atomic_load(&stop))
                ;
        return NULL;
}

static int cmp(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

static void probe(double secs, int n)
{
        static double lat[2000000];
        size_t k = 0;
        double end = now() + secs, worst = 0;
        while (!term && now() < end && k < 2000000) {
                double t0 = now();
                struct timespec d = {0, 1000000};
                nanosleep(&d, NULL);
                lat[k++] = (now() - t0 - 0.001) * 1000;
        }
        qsort(lat, k, sizeof(double), cmp);
        worst = lat[k - 1];
        printf("rt_threads=%d wakeups=%zu p50=%.2fms p99=%.2fms p99.9=%.1fms max=%.1fms"
               "\n",
               n, k, lat[k / 2], lat[k * 99 / 100], lat[k * 999 / 1000], worst);
        fflush(stdout);
}

int main(int argc, char **argv)
{
        double secs = argc > 1 ? atof(argv[1]) : 5;
        signal(SIGTERM, on_term);
        int maxn = argc > 2 ? atoi(argv[2]) : 2;
        if (maxn == 0) { /* a probe only, until SIGTERM or SECS */
                probe(secs, 0);
                return 0;
        }
        for (int n = 0; n <= maxn; n++) {
                pthread_t t[2];
                atomic_store(&stop, false);
                for (int i = 0; i < n; i++)
                        pthread_create(&t[i], NULL, spin, NULL);
                pid_t pid = fork();
                if (pid == 0) {
                        probe(secs, n);
                        _exit(0);
                }
                waitpid(pid, NULL, 0);
                atomic_store(&stop, true);
                for (int i = 0; i < n; i++)
                        pthread_join(t[i], NULL);
        }
        return 0;
}

/* Snapshot install by file: a lagging master copies a peer's state database instead of re-parsing
 * a serialised state (the raft snapshot only names how many entries the database holds). */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "apiauth.h"
#include "log.h"
#include "manager-internal.h"

#define FETCH_CONNECT_MS  1000
#define FETCH_LOW_SPEED_S 10 /* give up on a peer that sends less than 64 KiB/s for this long */
#define FETCH_ROUNDS      3

#define COPIES_MAX 2 /* database copies made at once; more are answered 503 */

typedef struct copy_job {
        manager *m;
        httpd_request *req;
} copy_job;

/* A compacted copy taken from one read transaction (writers go on meanwhile) into an unnamed
 * file, then sent with sendfile. On a thread of its own: a copy of a large database takes
 * seconds, and an HTTP thread busy with it would stall the calls assigned to that thread. */
static void *copy_thread(void *arg)
{
        copy_job *job = arg;
        manager *m = job->m;
        httpd_request *req = job->req;
        struct timespec t0, t1;
        struct stat st;

        free(job);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int fd = open(m->dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        int r = fd < 0 ? -errno : fsm_copy(m->fsm, fd);
        if (r >= 0 && fstat(fd, &st) < 0)
                r = -errno;
        if (r < 0) {
                safe_close(fd);
                httpd_reply_error(req, 500, "cannot copy the state database: %s", strerror(-r));
        } else {
                clock_gettime(CLOCK_MONOTONIC, &t1);
                log_info("Copied the state database for a peer: %lld bytes in %.3fs.",
                         (long long)st.st_size,
                         (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
                httpd_reply_fd(req, 200, "application/octet-stream", fd, 0, (uint64_t)st.st_size);
        }
        pthread_mutex_lock(&m->state_lock);
        m->copies_running--;
        pthread_cond_broadcast(&m->copies_cond);
        pthread_mutex_unlock(&m->state_lock);
        return NULL;
}

void manager_state_copy(httpd_request *req, void *userdata)
{
        manager *m = userdata;
        pthread_attr_t attr;
        pthread_t t;

        pthread_mutex_lock(&m->state_lock);
        bool busy = m->copies_running >= COPIES_MAX || m->stopping;
        if (!busy)
                m->copies_running++;
        pthread_mutex_unlock(&m->state_lock);
        if (busy) {
                httpd_reply_header(req, "Retry-After", "1");
                httpd_reply_error(req, 503, "%d database copies are being made; retry", COPIES_MAX);
                return;
        }
        copy_job *job = malloc(sizeof(*job));
        int r = job ? 0 : -ENOMEM;
        if (job) {
                *job = (copy_job){.m = m, .req = req};
                pthread_attr_init(&attr);
                pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
                r = -pthread_create(&t, &attr, copy_thread, job);
                pthread_attr_destroy(&attr);
        }
        if (r < 0) {
                free(job);
                pthread_mutex_lock(&m->state_lock);
                m->copies_running--;
                pthread_cond_broadcast(&m->copies_cond);
                pthread_mutex_unlock(&m->state_lock);
                httpd_reply_error(req, 500, "cannot start a copy: %s", strerror(-r));
        }
        /* Otherwise the thread replies: the request stays suspended until then. */
}

void manager_snapshot_copies_wait(manager *m)
{
        pthread_mutex_lock(&m->state_lock);
        while (m->copies_running > 0)
                pthread_cond_wait(&m->copies_cond, &m->state_lock);
        pthread_mutex_unlock(&m->state_lock);
}

static size_t write_fd(char *data, size_t size, size_t n, void *userdata)
{
        int fd = *(int *)userdata;
        size_t len = size * n, done = 0;

        while (done < len) {
                ssize_t w = write(fd, data + done, len - done);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        return 0; /* curl fails the transfer */
                }
                done += (size_t)w;
        }
        return len;
}

/* Downloads node N's database into PATH (the API's scheme, CA and token: apiauth.h). */
static int fetch_one(manager *m, const config_node *n, const char *path)
{
        char base[400], url[450], auth[4200], err[CURL_ERROR_SIZE] = "";
        const char *api = n->name;
        struct curl_slist *headers = NULL;
        long status = 0;
        int r;

        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
        if (fd < 0)
                return -errno;
        CURL *c = curl_easy_init();
        if (!c)
                return -ENOMEM;
        if (apiauth_base_url(m->cfg, n->address, n->master_port, base, sizeof(base)) < 0) {
                curl_easy_cleanup(c);
                return -ENAMETOOLONG;
        }
        snprintf(url, sizeof(url), "%s/v1/internal/state", base);
        if (m->cfg->api.tls_ca_file)
                curl_easy_setopt(c, CURLOPT_CAINFO, m->cfg->api.tls_ca_file);
        if (m->token) {
                snprintf(auth, sizeof(auth), "Authorization: Bearer %s", m->token);
                headers = curl_slist_append(headers, auth);
                explicit_bzero(auth, sizeof(auth));
        }
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, 0L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_fd);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &fd);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)FETCH_CONNECT_MS);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 65536L);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, (long)FETCH_LOW_SPEED_S);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
        CURLcode cc = curl_easy_perform(c);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_cleanup(c);
        curl_slist_free_all(headers);
        if (cc != CURLE_OK) {
                log_warning("Copying the state database from %s failed: %s", api,
                            err[0] ? err : curl_easy_strerror(cc));
                return -EIO;
        }
        if (status != 200) {
                log_warning("Copying the state database from %s failed: HTTP %ld", api, status);
                return -EIO;
        }
        r = fsync(fd) < 0 ? -errno : 0;
        return r;
}

int manager_snapshot_fetch(manager *m, uint64_t min_applied)
{
        _cleanup_free_ char *path = NULL;
        int r = -EHOSTUNREACH;

        if (asprintf(&path, "%s/state.mdb.fetch", m->dir) < 0)
                return -ENOMEM;
        for (unsigned round = 0; round < FETCH_ROUNDS; round++) {
                raft_id leader = 0;
                const char *laddr = NULL;
                if (m->raft_initialised)
                        raft_leader(&m->raft, &leader, &laddr);
                /* The leader first: it took the snapshot, so it has at least its entries. */
                for (size_t pass = 0; pass < 2; pass++)
                        for (size_t i = 0; i < m->cfg->n_nodes; i++) {
                                const config_node *n = &m->cfg->nodes[i];
                                store_meta meta;
                                if (!n->master || n == m->node ||
                                    (pass == 0) != (n->raft_id == (unsigned)leader))
                                        continue;
                                r = fetch_one(m, n, path);
                                if (r >= 0)
                                        r = store_db_file_meta(path, &meta);
                                if (r >= 0 && meta.applied < min_applied) {
                                        log_info("%s has applied %" PRIu64 " entries, fewer than "
                                                 "the snapshot's %" PRIu64 ".",
                                                 n->name, meta.applied, min_applied);
                                        r = -ESTALE;
                                }
                                if (r >= 0)
                                        r = fsm_replace(m->fsm, path);
                                if (r >= 0) {
                                        log_info("Installed the state database of %s (%" PRIu64
                                                 " entries applied).",
                                                 n->name, meta.applied);
                                        return 0;
                                }
                                (void)unlink(path);
                        }
                if (round + 1 < FETCH_ROUNDS)
                        sleep(1); /* peers may be starting too; nothing else can run meanwhile */
        }
        return r;
}

/* Unit tests for the FUSE daemon's local block descriptors: the worker socket protocol
 * (OPEN and WAIT / OK LENGTH + SCM_RIGHTS / MISS / ERR), the descriptor cache, the miss cache,
 * the plan's labels and splice extents. */
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <cmocka.h>

/* The module under test, for its statics (chrony-style). */
#include "reader.c"

#define BS 4096u

typedef struct fake_worker {
        char dir[64];
        char sock[128];
        int listen_fd;
        pthread_t thread;
        unsigned opens;   /* OPEN requests seen */
        unsigned waits;   /* WAIT requests seen */
        unsigned accepts; /* connections accepted */
        bool persistent;  /* answer every line of a connection (the real worker), not one */
        const char *mode; /* "ok", "miss", "err", "mismatch", "garbage", "short" */
} fake_worker;

static void *worker_thread(void *p)
{
        fake_worker *w = p;

        for (;;) {
                char line[256] = {}, path[512], reply[64];
                struct msghdr mh = {};
                struct iovec iov;
                union {
                        struct cmsghdr h;
                        char buf[CMSG_SPACE(sizeof(int))];
                } control;
                static __thread int c = -1;
                int fd = -1;
                ssize_t n;

                if (c < 0) {
                        c = accept4(w->listen_fd, NULL, NULL, SOCK_CLOEXEC);
                        if (c < 0)
                                return NULL;
                        __atomic_add_fetch(&w->accepts, 1, __ATOMIC_SEQ_CST);
                }
                /* one request at a time: a line never shares a recv with the next one */
                n = recv(c, line, sizeof(line) - 1, 0);
                if (n <= 0 || (strncmp(line, "OPEN ", 5) != 0 && strncmp(line, "WAIT ", 5) != 0)) {
                        close(c);
                        c = -1;
                        continue;
                }
                /* a WAIT is answered as an OPEN of a block already filled */
                __atomic_add_fetch(line[0] == 'O' ? &w->opens : &w->waits, 1, __ATOMIC_SEQ_CST);
                *strchr(line, '\n') = 0;
                *strchrnul(line + 5, ' ') = 0;
                snprintf(path, sizeof(path), "%s/%s", w->dir, line + 5);
                if (strcmp(w->mode, "ok") == 0 || strcmp(w->mode, "short") == 0)
                        fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd >= 0) {
                        struct stat st;

                        fstat(fd, &st);
                        snprintf(reply, sizeof(reply), "OK %lld\n",
                                 (long long)st.st_size + (strcmp(w->mode, "short") == 0));
                        iov = (struct iovec){.iov_base = reply, .iov_len = strlen(reply)};
                        mh.msg_iov = &iov;
                        mh.msg_iovlen = 1;
                        mh.msg_control = control.buf;
                        mh.msg_controllen = sizeof(control.buf);
                        CMSG_FIRSTHDR(&mh)->cmsg_level = SOL_SOCKET;
                        CMSG_FIRSTHDR(&mh)->cmsg_type = SCM_RIGHTS;
                        CMSG_FIRSTHDR(&mh)->cmsg_len = CMSG_LEN(sizeof(int));
                        memcpy(CMSG_DATA(CMSG_FIRSTHDR(&mh)), &fd, sizeof(int));
                        sendmsg(c, &mh, 0);
                        close(fd);
                } else if (strcmp(w->mode, "err") == 0) {
                        send(c, "ERR disk on fire\n", 17, 0);
                } else if (strcmp(w->mode, "mismatch") == 0) {
                        const char *m = "ERR " ETAG_MISMATCH_PREFIX ": bytes differ\n";

                        send(c, m, strlen(m), 0);
                } else if (strcmp(w->mode, "garbage") == 0) {
                        send(c, "WHAT\n", 5, 0);
                } else {
                        send(c, "MISS\n", 5, 0);
                }
                if (!w->persistent) {
                        close(c);
                        c = -1;
                }
        }
}

static void write_block(fake_worker *w, const char *id, unsigned len, unsigned char seed)
{
        char path[256];
        unsigned char buf[BS];
        FILE *f;

        for (unsigned i = 0; i < len; i++)
                buf[i] = (unsigned char)(seed + i * 7);
        snprintf(path, sizeof(path), "%s/%s", w->dir, id);
        f = fopen(path, "w");
        assert_non_null(f);
        fwrite(buf, 1, len, f);
        fclose(f);
}

typedef struct fixture {
        fake_worker w;
        config cfg;
        config_node nodes[2]; /* this node, and n2 (a worker only where a test says so) */
        config_mount mount;
        config_dataset ds;
        reader *r;
        reader_file f;
} fixture;

static int setup(void **state)
{
        fixture *x = calloc(1, sizeof(*x));
        struct sockaddr_un sa = {.sun_family = AF_UNIX};

        snprintf(x->w.dir, sizeof(x->w.dir), "/tmp/weir-reader-test-XXXXXX");
        assert_non_null(mkdtemp(x->w.dir));
        snprintf(x->w.sock, sizeof(x->w.sock), "%s/worker.sock", x->w.dir);
        x->w.mode = "ok";
        x->w.listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        strcpy(sa.sun_path, x->w.sock);
        assert_int_equal(bind(x->w.listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(listen(x->w.listen_fd, 16), 0);
        pthread_create(&x->w.thread, NULL, worker_thread, &x->w);

        x->nodes[0] = (config_node){.name = (char *)"n1",
                                    .address = (char *)"127.0.4.99",
                                    .worker_port = 9,
                                    .runtime_dir = x->w.dir,
                                    .worker = true};
        x->nodes[1] = (config_node){.name = (char *)"n2",
                                    .address = (char *)"127.0.4.98",
                                    .worker_port = 9,
                                    .runtime_dir = x->w.dir};
        x->mount =
                (config_mount){.name = (char *)"m", .mount_point = (char *)"file:///nonexistent"};
        x->ds = (config_dataset){
                .name = (char *)"ds", .mounts = &x->mount, .n_mounts = 1, .block_size = BS};
        x->cfg = (config){.nodes = x->nodes, .n_nodes = 2, .datasets = &x->ds, .n_datasets = 1};
        reader_options o = {.retry_ms = 100, .stall_ms = 1000, .fd_cache = 2};
        assert_int_equal(reader_new(&x->cfg, &x->nodes[0], &x->ds, NULL, &o, &x->r), 0);
        /* a file of 2 blocks and 100 bytes: ids E-5-1-0, E-5-1-1, E-5-1-2 */
        x->f = (reader_file){.path = (char *)"/m/f",
                             .epoch = 0xe1,
                             .file_id = 5,
                             .version = 1,
                             .size = 2 * BS + 100,
                             .block_size = BS};
        write_block(&x->w, "00000000000000e1-5-1-0", BS, 1);
        write_block(&x->w, "00000000000000e1-5-1-1", BS, 2);
        write_block(&x->w, "00000000000000e1-5-1-2", 100, 3);
        *state = x;
        return 0;
}

static int teardown(void **state)
{
        fixture *x = *state;
        char cmd[128];

        reader_free(x->r);
        shutdown(x->w.listen_fd, SHUT_RDWR);
        close(x->w.listen_fd);
        pthread_join(x->w.thread, NULL);
        snprintf(cmd, sizeof(cmd), "rm -rf %s", x->w.dir);
        assert_int_equal(system(cmd), 0);
        free(x);
        return 0;
}

static void test_open_ok_and_cached(void **state)
{
        fixture *x = *state;
        uint64_t len = 0;
        unsigned char b[16];
        int fd;

        fd = local_block(x->r, "00000000000000e1-5-1-2", 100, &len);
        assert_true(fd >= 0);
        assert_true(len == 100);
        assert_int_equal(pread_all(fd, b, 16, 10), 0);
        assert_int_equal(b[0], (unsigned char)(3 + 10 * 7));
        /* read-only, close-on-exec */
        assert_true((fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDONLY);
        assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        safe_close(fd);
        /* the second time comes from the descriptor cache, without asking the worker */
        fd = local_block(x->r, "00000000000000e1-5-1-2", 100, &len);
        assert_true(fd >= 0);
        safe_close(fd);
        assert_int_equal(x->w.opens, 1);
}

static void test_cache_is_bounded(void **state)
{
        fixture *x = *state;
        uint64_t len;

        for (int i = 0; i < 3; i++) {
                static const char *const ids[] = {"00000000000000e1-5-1-0",
                                                  "00000000000000e1-5-1-1",
                                                  "00000000000000e1-5-1-2"};
                int fd = local_block(x->r, ids[i], i == 2 ? 100 : BS, &len);

                assert_true(fd >= 0);
                safe_close(fd);
        }
        assert_int_equal(x->r->fds.n, 2); /* fd_cache = 2: the oldest was closed */
        assert_null(hmap_get_str(&x->r->fds, "00000000000000e1-5-1-0"));
}

static void test_miss_err_garbage_short(void **state)
{
        fixture *x = *state;
        uint64_t len;

        x->w.mode = "miss";
        assert_int_equal(local_block(x->r, "00000000000000e1-5-1-0", BS, &len), -ENOENT);
        /* the miss is remembered: the socket is not asked again for a while */
        assert_int_equal(local_block(x->r, "00000000000000e1-5-1-0", BS, &len), -ENOENT);
        assert_int_equal(x->w.opens, 1);
        for (unsigned i = 0; i < READER_MISSES; i++)
                x->r->misses[i].until_ms = 0;
        x->w.mode = "err";
        assert_int_equal(local_open(x->r, "00000000000000e1-5-1-0", &len), -ENODATA);
        /* an answer, not a broken socket: the worker is not skipped */
        assert_int_equal(local_block(x->r, "00000000000000e1-5-1-0", BS, &len), -ENOENT);
        assert_int_equal(x->r->local_down_until, 0);
        x->w.mode = "garbage";
        assert_int_equal(local_open(x->r, "00000000000000e1-5-1-0", &len), -EIO);
        assert_int_equal(local_block(x->r, "00000000000000e1-5-1-0", BS, &len), -ENOENT);
        assert_true(x->r->local_down_until > 0); /* skipped for a while */
        /* a descriptor whose length disagrees with the block's is not used */
        x->w.mode = "short";
        x->r->local_down_until = 0;
        assert_int_equal(local_block(x->r, "00000000000000e1-5-1-1", BS, &len), -ENOENT);
}

static void test_extents(void **state)
{
        fixture *x = *state;
        reader_extent ext[4];
        reader_plan p;
        unsigned n = 0;

        /* 200 bytes across the first block boundary: two extents, each one WAIT */
        reader_plan_init(x->r, &x->f, BS - 50, 200, &p);
        assert_int_equal(reader_plan_extents(x->r, &x->f, &p, ext, 4, &n), 0);
        reader_plan_done(&p);
        assert_int_equal(n, 2);
        assert_int_equal(x->w.waits, 2);
        assert_true(ext[0].offset == BS - 50 && ext[0].len == 50);
        assert_true(ext[1].offset == 0 && ext[1].len == 150);
        for (unsigned i = 0; i < n; i++)
                safe_close(ext[i].fd);
        /* clamped at EOF, and nothing past it */
        reader_plan_init(x->r, &x->f, 2 * BS + 90, 4096, &p);
        assert_int_equal(reader_plan_extents(x->r, &x->f, &p, ext, 4, &n), 0);
        reader_plan_done(&p);
        assert_int_equal(n, 1);
        assert_true(ext[0].len == 10);
        safe_close(ext[0].fd);
        reader_plan_init(x->r, &x->f, 2 * BS + 100, 10, &p);
        assert_int_equal(reader_plan_extents(x->r, &x->f, &p, ext, 4, &n), 0);
        reader_plan_done(&p);
        assert_int_equal(n, 0);
        /* more extents than room: nothing is opened */
        reader_plan_init(x->r, &x->f, 0, 3 * BS, &p);
        assert_int_equal(reader_plan_extents(x->r, &x->f, &p, ext, 2, &n), -E2BIG);
        reader_plan_done(&p);
        /* a block the worker cannot give: nothing is left open, the span is relabelled */
        x->w.mode = "err";
        x->r->opts.fd_cache = 0;
        reader_plan_init(x->r, &x->f, 0, 3 * BS, &p);
        assert_int_equal(reader_plan_extents(x->r, &x->f, &p, ext, 4, &n), -ENODATA);
        assert_int_equal(p.spans[0].source, READER_STORE);
        reader_plan_done(&p);
}

static void test_plan_labels(void **state)
{
        fixture *x = *state;
        char n2[] = "n2", n1[] = "n1";
        char *only_n2[] = {n2}, *both[] = {n2, n1};
        struct meta_block_loc blocks[] = {
                {.index = 0, .n_nodes = 1, .nodes = only_n2},
                {.index = 1, .n_nodes = 2, .nodes = both},
        };
        meta_locations loc = {.refcount = 1, .block_size = BS, .n = 2, .blocks = blocks};
        reader_extent ext[4];
        reader_plan p;
        unsigned n, waits;

        /* without locations and with a local worker: every span is the local worker's */
        reader_plan_init(x->r, &x->f, 0, 3 * BS, &p);
        assert_int_equal(p.n, 3);
        assert_true(p.len == 2 * BS + 100 && p.want == p.len);
        for (unsigned i = 0; i < p.n; i++)
                assert_int_equal(p.spans[i].source, READER_LOCAL);
        assert_int_equal(reader_plan_extents(x->r, &x->f, &p, ext, 4, &n), 0);
        reader_plan_done(&p);
        for (unsigned i = 0; i < n; i++)
                safe_close(ext[i].fd);
        assert_int_equal(x->w.waits, 3);
        assert_int_equal(x->w.opens, 0); /* no OPEN before the WAIT */
        /* the whole blocks were kept (fd_cache = 2: the last two): hits, no round trip */
        reader_plan_init(x->r, &x->f, 0, 3 * BS, &p);
        assert_int_equal(p.spans[0].source, READER_LOCAL);
        assert_int_equal(p.spans[1].source, READER_LOCAL_HIT);
        assert_int_equal(p.spans[2].source, READER_LOCAL_HIT);
        assert_true(p.spans[1].fd >= 0 && p.spans[0].fd < 0);
        reader_plan_done(&p);
        assert_int_equal(x->w.waits, 3);

        /* with n2 a worker: a block only n2 holds is read from n2; one both hold stays here; one
         * nobody holds is filled here */
        x->nodes[1].worker = true;
        {
                reader_span s[3] = {
                        {.span = {.index = 0}}, {.span = {.index = 1}}, {.span = {.index = 2}}};

                for (unsigned i = 0; i < 3; i++) {
                        /* version 2: none of its blocks is in the descriptor cache yet */
                        block_key key = {.epoch = 0xe1, .file_id = 5, .version = 2, .index = i};

                        block_id_format(s[i].id, &key);
                        plan_label(x->r, &loc, &s[i]);
                }
                assert_int_equal(s[0].source, READER_REMOTE);
                assert_ptr_equal(s[0].holder, &x->nodes[1]);
                assert_int_equal(s[1].source, READER_LOCAL);
                assert_int_equal(s[2].source, READER_LOCAL);
                assert_null(s[2].holder);

                /* the local worker failed block 2: the next plans send it to n2, and its socket
                 * is not asked again while the miss is remembered */
                x->w.mode = "err";
                waits = x->w.waits;
                assert_true(local_wait(x->r, &x->f, &s[2], 0, 10) < 0);
                assert_int_equal(s[2].source, READER_REMOTE);
                plan_label(x->r, &loc, &s[2]);
                assert_int_equal(s[2].source, READER_REMOTE);
                assert_int_equal(x->w.waits, waits + 1);
                /* a hit-only lookup of it does not ask either */
                x->f.version = 2;
                assert_int_equal(reader_local_fd(x->r, &x->f, 2), -ENOENT);
                x->f.version = 1;
                assert_int_equal(x->w.opens, 0);
                /* until the memory expires */
                for (unsigned i = 0; i < READER_MISSES; i++)
                        x->r->misses[i].until_ms = 0;
                plan_label(x->r, &loc, &s[2]);
                assert_int_equal(s[2].source, READER_LOCAL);
        }

        /* no worker anywhere: the store */
        x->nodes[0].worker = false;
        x->nodes[1].worker = false;
        reader_plan_init(x->r, &x->f, 0, 10, &p);
        assert_int_equal(p.spans[0].source, READER_STORE);
        reader_plan_done(&p);
}

/* A worker that refuses a version whose bytes did not match its content hash ends the read: no
 * retry, no store (which would send the same bytes; here it would say ENOENT), EIO. */
static void test_content_mismatch_is_final(void **state)
{
        fixture *x = *state;
        reader_plan p;
        char buf[BS];

        x->w.mode = "mismatch";
        x->r->opts.store_fallback = true;
        x->r->opts.retry_ms = 60000; /* a retry would show as a second WAIT */
        reader_plan_init(x->r, &x->f, 0, 100, &p);
        assert_int_equal(p.n, 1);
        assert_int_equal(fetch_span(x->r, &x->f, &p.spans[0], buf, false), -EILSEQ);
        assert_int_equal(x->w.waits, 1);
        assert_int_equal(x->r->local_down_until, 0); /* an answer, not a broken socket */
        reader_plan_done(&p);
        reader_plan_init(x->r, &x->f, 0, 100, &p);
        for (unsigned i = 0; i < READER_MISSES; i++)
                x->r->misses[i].until_ms = 0;
        assert_int_equal(reader_read_plan(x->r, &x->f, &p, buf), -EIO);
        assert_int_equal(x->w.waits, 2);
        reader_plan_done(&p);
}

/* Requests share one connection while the worker keeps it; one it closed (after each answer
 * here, as after a WAIT answered from a fill) or one idle too long is replaced, and the request
 * is answered all the same. */
static void test_connections_are_kept(void **state)
{
        fixture *x = *state;
        static const char *const ids[] = {"00000000000000e1-5-1-0", "00000000000000e1-5-1-1",
                                          "00000000000000e1-5-1-2"};
        uint64_t len;

        x->r->opts.fd_cache = 0; /* every lookup asks the worker */
        x->w.persistent = true;
        for (int round = 0; round < 3; round++)
                for (int i = 0; i < 3; i++) {
                        int fd = local_open(x->r, ids[i], &len);

                        assert_true(fd >= 0);
                        assert_true(len == (i == 2 ? 100 : BS));
                        safe_close(fd);
                }
        assert_int_equal(x->w.opens, 9);
        assert_int_equal(x->w.accepts, 1);
        assert_int_equal(x->r->n_pool, 1);

        /* idle for longer than the worker allows: a fresh connection */
        x->r->pool[0].used_ms -= READER_POOL_IDLE_MS;
        safe_close(local_open(x->r, ids[0], &len));
        assert_int_equal(x->w.accepts, 2);

        /* a worker that closes after each answer: every request still answered */
        x->w.persistent = false;
        for (int i = 0; i < 6; i++) {
                int fd = local_open(x->r, ids[i % 3], &len);

                assert_true(fd >= 0);
                safe_close(fd);
        }
        assert_int_equal(x->w.opens, 16);
        assert_true(x->r->local_down_until == 0); /* never taken for a broken socket */
}

/* A file of one block asks the local worker before any master: with no locations at all (no
 * meta here) the plan is a hit from one OPEN, and a miss falls back to the usual labels. */
static void test_one_block_file_asks_the_worker_first(void **state)
{
        fixture *x = *state;
        reader_file small = {.path = (char *)"/m/s",
                             .epoch = 0xe1,
                             .file_id = 6,
                             .version = 1,
                             .size = 100,
                             .block_size = BS};
        reader_plan p;

        write_block(&x->w, "00000000000000e1-6-1-0", 100, 9);
        reader_plan_init(x->r, &small, 0, 4096, &p);
        assert_int_equal(p.n, 1);
        assert_int_equal(p.spans[0].source, READER_LOCAL_HIT);
        assert_true(p.spans[0].fd >= 0);
        reader_plan_done(&p);
        assert_int_equal(x->w.opens, 1);
        assert_int_equal(x->w.waits, 0);

        /* not cached here: one OPEN (a miss), then the plan's own labels */
        small.version = 2;
        x->w.mode = "miss";
        reader_plan_init(x->r, &small, 0, 4096, &p);
        assert_int_equal(p.spans[0].source, READER_LOCAL);
        reader_plan_done(&p);
        assert_int_equal(x->w.opens, 2);

        /* files of several blocks keep asking for locations first: no OPEN */
        reader_plan_init(x->r, &x->f, 0, 3 * BS, &p);
        reader_plan_done(&p);
        assert_int_equal(x->w.opens, 2);
}

static void test_no_socket(void **state)
{
        fixture *x = *state;
        uint64_t len;

        unlink(x->w.sock);
        assert_int_equal(local_block(x->r, "00000000000000e1-5-1-0", BS, &len), -ENOENT);
        /* and it is not asked again for a while */
        assert_true(local_is_down(x->r));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_open_ok_and_cached, setup, teardown),
                cmocka_unit_test_setup_teardown(test_cache_is_bounded, setup, teardown),
                cmocka_unit_test_setup_teardown(test_miss_err_garbage_short, setup, teardown),
                cmocka_unit_test_setup_teardown(test_extents, setup, teardown),
                cmocka_unit_test_setup_teardown(test_plan_labels, setup, teardown),
                cmocka_unit_test_setup_teardown(test_connections_are_kept, setup, teardown),
                cmocka_unit_test_setup_teardown(test_one_block_file_asks_the_worker_first, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_no_socket, setup, teardown),
                cmocka_unit_test_setup_teardown(test_content_mismatch_is_final, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}

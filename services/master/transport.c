/* weir's Raft transport (struct raft_uv_transport): TCP streams that libraft gets only after a
 * mutual challenge-response handshake keyed by the cluster secret.
 *
 * Everything runs on the master's libuv loop thread. Each connection in its handshake is one
 * `hs` on the transport's list; it owns a TCP handle (allocated with raft_malloc because libraft
 * frees the stream it is given with raft_free) and a deadline timer. On success the stream goes
 * to libraft (its connect or accept callback) with nothing read beyond the handshake: reads ask
 * for exactly the bytes of the next message. On failure both handles are closed; the raft
 * connect callback (outbound) fires after they are. Inbound connections in their handshake are
 * capped in total and per source address; the oldest is dropped for a newer one, so that slow
 * strangers cannot keep the real masters out. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cleanup.h"
#include "fsutil.h"
#include "log.h"
#include "raft-compat.h"
#include "transport.h"
#include "weir-build.h"

#define MAX_IPS        8
#define ADDRESS_MAX    300
#define LOG_WINDOW_MS  10000
#define LOG_PER_WINDOW 10
#define LISTEN_BACKLOG 128

typedef struct peer {
        unsigned id;
        char address[ADDRESS_MAX]; /* "host:port" as raft's configuration has it */
        char host[ADDRESS_MAX];
        char ips[MAX_IPS][INET6_ADDRSTRLEN];
        size_t n_ips; /* 0: unresolved, the source address is not checked */
        struct sockaddr_storage sa;
        bool have_sa;
} peer;

typedef struct hs hs;

typedef struct ratelimit {
        uint64_t window;
        unsigned count, suppressed;
} ratelimit;

typedef struct transport {
        struct raft_uv_transport *t;
        uv_loop_t *loop;
        uint8_t key[HS_KEY_BYTES];
        const config *const *cfgp; /* the manager's current config (a reload swaps it) */
        const config *cfg_seen;    /* the one PEERS were built from */
        peer *peers;
        size_t n_peers;
        peer self; /* fixed at init: a master's own address changes only with a restart */

        uv_tcp_t listener;
        bool listener_open;
        raft_uv_accept_cb accept_cb;
        bool listen_called;

        hs *handshakes;
        unsigned n_inbound;

        bool closing;
        bool free_on_close;
        raft_uv_transport_close_cb close_cb;

        ratelimit log_in, log_out; /* refusals of inbound, failures of outbound connections */
} transport;

enum {
        HS_IN_HELLO,
        HS_IN_PROOF,
        HS_IN_ACCEPTING, /* ACCEPT being written */
        HS_OUT_CONNECTING,
        HS_OUT_CHALLENGE,
        HS_OUT_ACCEPT,
        HS_OUT_DONE, /* ACCEPT read, PROOF's write still pending */
};

struct hs {
        transport *tr;
        hs *prev, *next;
        bool inbound;
        int state;
        uint64_t started;

        uv_tcp_t *tcp; /* NULL once libraft owns it */
        uv_timer_t timer;
        unsigned open_handles;
        uv_connect_t connect;
        uv_write_t writes[2];
        unsigned pending_writes;

        uint8_t hello[HS_HELLO_MAX];
        size_t hello_len;
        uint8_t challenge[HS_CHALLENGE_BYTES];
        uint8_t proof[HS_PROOF_BYTES];
        uint8_t accept[HS_ACCEPT_BYTES];
        uint8_t in[HS_HELLO_MAX];
        size_t in_len, in_want;

        char source[INET6_ADDRSTRLEN]; /* inbound: the connection's source address */
        unsigned peer_id;              /* inbound: the master it claims to be, once checked */
        char peer_address[ADDRESS_MAX];

        /* outbound */
        unsigned target_id;
        char target_address[ADDRESS_MAX];
        struct raft_uv_connect *req;
        raft_uv_connect_cb cb;
        bool cb_done;

        bool failed;
};

static transport *transport_of(struct raft_uv_transport *t)
{
        return t->impl;
}

static void format_address(char *buf, size_t len, const char *host, unsigned port)
{
        snprintf(buf, len, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, port);
}

static void sockaddr_name(const struct sockaddr *sa, char *buf, size_t len)
{
        buf[0] = 0;
        if (sa->sa_family == AF_INET)
                uv_ip4_name((const struct sockaddr_in *)sa, buf, len);
        else if (sa->sa_family == AF_INET6) {
                const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
                /* An IPv4 client on a dual-stack socket: compare as IPv4. */
                if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
                        inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], buf, (socklen_t)len);
                else
                        uv_ip6_name(s6, buf, len);
        }
}

static void sockaddr_set_port(struct sockaddr_storage *sa, unsigned port)
{
        if (sa->ss_family == AF_INET)
                ((struct sockaddr_in *)sa)->sin_port = htons((uint16_t)port);
        else
                ((struct sockaddr_in6 *)sa)->sin6_port = htons((uint16_t)port);
}

/* A literal IPv4/IPv6 address, else the host name's addresses (once, at start). */
static void peer_resolve(peer *p, const char *host, unsigned port)
{
        struct sockaddr_in s4;
        struct sockaddr_in6 s6;

        if (uv_ip4_addr(host, (int)port, &s4) == 0)
                memcpy(&p->sa, &s4, sizeof(s4));
        else if (uv_ip6_addr(host, (int)port, &s6) == 0)
                memcpy(&p->sa, &s6, sizeof(s6));
        else {
                struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
                int r = getaddrinfo(host, NULL, &hints, &res);
                if (r != 0) {
                        log_warning("Cannot resolve master address %s: %s; connections claiming "
                                    "raft id %u are not checked by source address, ignoring",
                                    host, gai_strerror(r), p->id);
                        return;
                }
                for (struct addrinfo *a = res; a && p->n_ips < MAX_IPS; a = a->ai_next) {
                        if (a->ai_family != AF_INET && a->ai_family != AF_INET6)
                                continue;
                        if (!p->have_sa) {
                                memcpy(&p->sa, a->ai_addr, a->ai_addrlen);
                                sockaddr_set_port(&p->sa, port);
                                p->have_sa = true;
                        }
                        sockaddr_name(a->ai_addr, p->ips[p->n_ips], sizeof(p->ips[0]));
                        p->n_ips++;
                }
                freeaddrinfo(res);
                return;
        }
        p->have_sa = true;
        sockaddr_name((const struct sockaddr *)&p->sa, p->ips[0], sizeof(p->ips[0]));
        p->n_ips = 1;
}

static const peer *peer_by_id(const transport *tr, uint64_t id)
{
        for (size_t i = 0; i < tr->n_peers; i++)
                if (tr->peers[i].id == id)
                        return &tr->peers[i];
        return NULL;
}

static bool peer_has_ip(const peer *p, const char *ip)
{
        for (size_t i = 0; i < p->n_ips; i++)
                if (strcmp(p->ips[i], ip) == 0)
                        return true;
        return false;
}

/* The masters of the current config, resolved. A reload (members.c) swaps the manager's config;
 * the peers follow it at the next connection. Masters that left the YAML stay accepted until
 * this master restarts, so that their removal can still be replicated to them. */
static int peers_refresh(transport *tr)
{
        const config *cfg = *tr->cfgp;
        if (cfg == tr->cfg_seen)
                return 0;
        size_t n = config_n_masters(cfg), k = 0;
        peer *peers = calloc(n + tr->n_peers + 1, sizeof(*peers));
        if (!peers)
                return log_oom();
        for (size_t i = 0; i < cfg->n_nodes; i++) {
                const config_node *node = &cfg->nodes[i];
                if (!node->master)
                        continue;
                peer *p = &peers[k++];
                p->id = node->raft_id;
                snprintf(p->host, sizeof(p->host), "%s", node->address);
                format_address(p->address, sizeof(p->address), node->address, node->raft_port);
                const peer *old = peer_by_id(tr, p->id);
                if (old && strcmp(old->address, p->address) == 0)
                        *p = *old; /* resolved already */
                else
                        peer_resolve(p, node->address, node->raft_port);
        }
        for (size_t i = 0; i < tr->n_peers; i++) {
                bool still = false;
                for (size_t j = 0; j < k && !still; j++)
                        still = peers[j].id == tr->peers[i].id;
                if (!still)
                        peers[k++] = tr->peers[i];
        }
        free(tr->peers);
        tr->peers = peers;
        tr->n_peers = k;
        tr->cfg_seen = cfg;
        return 0;
}

/* Could a master connect from IP? false only when every master's addresses are known. */
static bool ip_may_be_master(const transport *tr, const char *ip)
{
        for (size_t i = 0; i < tr->n_peers; i++)
                if (tr->peers[i].n_ips == 0 || peer_has_ip(&tr->peers[i], ip))
                        return true;
        return false;
}

static uint64_t now_ms(const transport *tr)
{
        return uv_now(tr->loop);
}

/* Refusals are logged, at most LOG_PER_WINDOW per LOG_WINDOW_MS and direction: a flood must not
 * flood the journal too, nor hide why this master's own connections fail. */
_printf_(3, 4) static void log_limited(transport *tr, ratelimit *rl, const char *fmt, ...)
{
        char buf[512];
        va_list ap;
        uint64_t now = now_ms(tr);

        if (now - rl->window >= LOG_WINDOW_MS) {
                if (rl->suppressed)
                        log_warning("%u more such Raft connection messages were not logged.",
                                    rl->suppressed);
                rl->window = now;
                rl->count = rl->suppressed = 0;
        }
        if (rl->count >= LOG_PER_WINDOW) {
                rl->suppressed++;
                return;
        }
        rl->count++;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        log_warning("%s", buf);
}

#define log_refused(tr, ...)  log_limited(tr, &(tr)->log_in, __VA_ARGS__)
#define log_outbound(tr, ...) log_limited(tr, &(tr)->log_out, __VA_ARGS__)

/* ---- one handshake ---- */

static void transport_maybe_closed(transport *tr);

static void hs_unlink(hs *h)
{
        transport *tr = h->tr;
        if (h->prev)
                h->prev->next = h->next;
        else
                tr->handshakes = h->next;
        if (h->next)
                h->next->prev = h->prev;
        h->prev = h->next = NULL;
        if (h->inbound)
                tr->n_inbound--;
}

/* Both handles closed: report to libraft if it still waits, free. */
static void hs_finish(hs *h)
{
        transport *tr = h->tr;

        hs_unlink(h);
        if (!h->inbound && !h->cb_done) {
                h->cb_done = true;
                h->cb(h->req, NULL, tr->closing ? RAFT_CANCELED : RAFT_NOCONNECTION);
        }
        free(h);
        transport_maybe_closed(tr);
}

static void on_hs_handle_closed(uv_handle_t *handle)
{
        hs *h = handle->data;
        if ((uv_handle_t *)h->tcp == handle) {
                raft_free(h->tcp);
                h->tcp = NULL;
        }
        if (--h->open_handles == 0)
                hs_finish(h);
}

static void hs_close_handles(hs *h)
{
        if (h->tcp && !uv_is_closing((uv_handle_t *)h->tcp))
                uv_close((uv_handle_t *)h->tcp, on_hs_handle_closed);
        if (!uv_is_closing((uv_handle_t *)&h->timer))
                uv_close((uv_handle_t *)&h->timer, on_hs_handle_closed);
}

static void hs_fail(hs *h)
{
        if (h->failed)
                return;
        h->failed = true;
        hs_close_handles(h);
}

static const char *hs_peer_name(const hs *h, char *buf, size_t len)
{
        if (h->inbound)
                snprintf(buf, len, "from %s", h->source);
        else
                snprintf(buf, len, "to raft id %u at %s", h->target_id, h->target_address);
        return buf;
}

/* libraft gets the stream; the hs goes away once its timer is closed. */
static void hs_hand_over(hs *h)
{
        transport *tr = h->tr;
        uv_stream_t *stream = (uv_stream_t *)h->tcp;

        uv_read_stop(stream);
        stream->data = NULL;
        h->tcp = NULL;
        h->open_handles--;
        h->failed = true; /* nothing more to do but close the timer */
        uv_timer_stop(&h->timer);
        uv_close((uv_handle_t *)&h->timer, on_hs_handle_closed);
        if (h->inbound) {
                log_debug("Raft connection from raft id %u (%s) authenticated.", h->peer_id,
                          h->source);
                /* Counted until the hs is freed; libraft owns the stream from here. */
                tr->accept_cb(tr->t, h->peer_id, h->peer_address, stream);
        } else {
                log_debug("Raft connection to raft id %u at %s authenticated.", h->target_id,
                          h->target_address);
                h->cb_done = true;
                h->cb(h->req, stream, 0);
        }
}

static void on_write(uv_write_t *w, int status)
{
        hs *h = w->data;
        char name[400];

        h->pending_writes--;
        if (h->failed)
                return;
        if (status < 0) {
                log_debug("Raft handshake %s: write failed: %s",
                          hs_peer_name(h, name, sizeof(name)), uv_strerror(status));
                return hs_fail(h);
        }
        if (h->pending_writes == 0 && (h->state == HS_IN_ACCEPTING || h->state == HS_OUT_DONE))
                hs_hand_over(h);
}

static int hs_write(hs *h, unsigned slot, const void *buf, size_t len)
{
        uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);
        h->writes[slot].data = h;
        int r = uv_write(&h->writes[slot], (uv_stream_t *)h->tcp, &b, 1, on_write);
        if (r == 0)
                h->pending_writes++;
        return r;
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
        hs *h = handle->data;
        /* Exactly what the current message still lacks: nothing past the handshake is read. */
        *buf = uv_buf_init((char *)h->in + h->in_len, (unsigned)(h->in_want - h->in_len));
}

static void hs_expect(hs *h, size_t n)
{
        h->in_len = 0;
        h->in_want = n;
}

static const char *hs_format_error(int r)
{
        switch (r) {
        case -EPROTO:
                return "not a weir Raft handshake (a libraft transport without weir's "
                       "authentication, or another program)";
        case -EPROTONOSUPPORT:
                return "handshake version not supported (this master speaks version 1)";
        default:
                return "malformed handshake message";
        }
}

static void hs_in_hello(hs *h)
{
        transport *tr = h->tr;
        hs_hello hello;

        if (h->in_want == HS_HELLO_FIXED) {
                int len = hs_hello_length(h->in, h->in_len);
                if (len < 0) {
                        log_refused(tr, "Refused Raft connection from %s: %s.", h->source,
                                    hs_format_error(len));
                        return hs_fail(h);
                }
                if ((size_t)len > h->in_len) {
                        h->in_want = (size_t)len;
                        return;
                }
        }
        int r = hs_hello_parse(h->in, h->in_len, &hello);
        if (r < 0) {
                log_refused(tr, "Refused Raft connection from %s: %s.", h->source,
                            hs_format_error(r));
                return hs_fail(h);
        }
        const peer *p = peer_by_id(tr, hello.from_id);
        if (hello.to_id != tr->self.id) {
                log_refused(tr,
                            "Refused Raft connection from %s: addressed to raft id %" PRIu64
                            ", this master is raft id %u.",
                            h->source, hello.to_id, tr->self.id);
                return hs_fail(h);
        }
        if (!p || p->id == tr->self.id) {
                log_refused(tr,
                            "Refused Raft connection from %s: raft id %" PRIu64
                            " is not another master of the cluster YAML.",
                            h->source, hello.from_id);
                return hs_fail(h);
        }
        if (strcmp(hello.address, p->address) != 0) {
                log_refused(tr,
                            "Refused Raft connection from %s: raft id %u claims the address %s, "
                            "the cluster YAML gives it %s.",
                            h->source, p->id, hello.address, p->address);
                return hs_fail(h);
        }
        if (p->n_ips > 0 && !peer_has_ip(p, h->source)) {
                log_refused(tr,
                            "Refused Raft connection from %s: claims to be raft id %u, whose "
                            "address in the cluster YAML is %s.",
                            h->source, p->id, p->host);
                return hs_fail(h);
        }
        h->peer_id = p->id;
        snprintf(h->peer_address, sizeof(h->peer_address), "%s", p->address);
        memcpy(h->hello, h->in, h->in_len);
        h->hello_len = h->in_len;

        hs_challenge c = {.from_id = tr->self.id};
        randombytes_buf(c.nonce, sizeof(c.nonce));
        hs_challenge_encode(tr->key, h->hello, h->hello_len, &c, h->challenge);
        if (hs_write(h, 0, h->challenge, sizeof(h->challenge)) < 0)
                return hs_fail(h);
        h->state = HS_IN_PROOF;
        hs_expect(h, HS_PROOF_BYTES);
}

static void hs_in_proof(hs *h)
{
        transport *tr = h->tr;
        int r = hs_proof_verify(tr->key, h->hello, h->hello_len, h->challenge, h->in, h->in_len);
        if (r < 0) {
                log_refused(tr, "Refused Raft connection from %s claiming raft id %u: %s.",
                            h->source, h->peer_id,
                            r == -EACCES ? "wrong cluster secret (its proof does not match)"
                                         : hs_format_error(r));
                return hs_fail(h);
        }
        uv_read_stop((uv_stream_t *)h->tcp);
        hs_accept_encode(h->accept);
        if (hs_write(h, 1, h->accept, sizeof(h->accept)) < 0)
                return hs_fail(h);
        h->state = HS_IN_ACCEPTING;
}

static void hs_out_challenge(hs *h)
{
        transport *tr = h->tr;
        hs_challenge c;

        int r = hs_challenge_verify(tr->key, h->hello, h->hello_len, h->in, h->in_len, &c);
        if (r < 0) {
                log_outbound(tr, "Raft connection to raft id %u at %s dropped: %s.", h->target_id,
                             h->target_address,
                             r == -EACCES ? "it does not prove the cluster secret (wrong secret "
                                            "on one side, or not a master of this cluster)"
                                          : hs_format_error(r));
                return hs_fail(h);
        }
        if (c.from_id != h->target_id) {
                log_outbound(tr,
                             "Raft connection to raft id %u at %s dropped: it answered as raft "
                             "id %" PRIu64 ".",
                             h->target_id, h->target_address, c.from_id);
                return hs_fail(h);
        }
        memcpy(h->challenge, h->in, sizeof(h->challenge));
        hs_proof_encode(tr->key, h->hello, h->hello_len, h->challenge, h->proof);
        if (hs_write(h, 1, h->proof, sizeof(h->proof)) < 0)
                return hs_fail(h);
        h->state = HS_OUT_ACCEPT;
        hs_expect(h, HS_ACCEPT_BYTES);
}

static void hs_out_accept(hs *h)
{
        int r = hs_accept_parse(h->in, h->in_len);
        if (r < 0) {
                log_outbound(h->tr, "Raft connection to raft id %u at %s dropped: %s.",
                             h->target_id, h->target_address, hs_format_error(r));
                return hs_fail(h);
        }
        uv_read_stop((uv_stream_t *)h->tcp);
        h->state = HS_OUT_DONE;
        if (h->pending_writes == 0)
                hs_hand_over(h);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
        hs *h = stream->data;
        char name[400];

        if (h->failed || nread == 0)
                return;
        if (nread < 0) {
                if (h->state == HS_IN_PROOF)
                        /* It could not verify our challenge's MAC. */
                        log_refused(h->tr,
                                    "Raft connection from %s (raft id %u) closed after this "
                                    "master's challenge: probably a different cluster secret.",
                                    h->source, h->peer_id);
                else if (h->state == HS_OUT_ACCEPT)
                        /* It checked our proof and hung up: it does not take us. */
                        log_outbound(h->tr,
                                     "Raft id %u at %s closed the connection after this master's "
                                     "proof: a different cluster secret, or this master's raft "
                                     "id or address is not in its cluster YAML.",
                                     h->target_id, h->target_address);
                else
                        log_debug("Raft handshake %s: %s", hs_peer_name(h, name, sizeof(name)),
                                  nread == UV_EOF ? "closed by the peer" : uv_strerror((int)nread));
                return hs_fail(h);
        }
        h->in_len += (size_t)nread;
        if (h->in_len < h->in_want)
                return;
        switch (h->state) {
        case HS_IN_HELLO:
                return hs_in_hello(h);
        case HS_IN_PROOF:
                return hs_in_proof(h);
        case HS_OUT_CHALLENGE:
                return hs_out_challenge(h);
        case HS_OUT_ACCEPT:
                return hs_out_accept(h);
        default:
                return hs_fail(h);
        }
}

static void on_deadline(uv_timer_t *timer)
{
        hs *h = timer->data;
        char name[400];

        if (h->inbound)
                log_refused(h->tr,
                            "Refused Raft connection from %s: no complete handshake "
                            "within %u ms.",
                            h->source, TRANSPORT_HANDSHAKE_TIMEOUT_MS);
        else
                log_debug("Raft handshake %s: no answer within %u ms.",
                          hs_peer_name(h, name, sizeof(name)), TRANSPORT_HANDSHAKE_TIMEOUT_MS);
        hs_fail(h);
}

/* A new hs with both handles initialised and linked in; NULL on failure (nothing to undo). */
static hs *hs_new(transport *tr, bool inbound)
{
        hs *h = calloc(1, sizeof(*h));
        if (!h)
                return NULL;
        h->tcp = raft_malloc(sizeof(*h->tcp));
        if (!h->tcp) {
                free(h);
                return NULL;
        }
        if (uv_tcp_init(tr->loop, h->tcp) < 0) {
                raft_free(h->tcp);
                free(h);
                return NULL;
        }
        uv_timer_init(tr->loop, &h->timer); /* cannot fail */
        h->tcp->data = h->timer.data = h;
        h->open_handles = 2;
        h->tr = tr;
        h->inbound = inbound;
        h->started = now_ms(tr);
        h->next = tr->handshakes;
        if (h->next)
                h->next->prev = h;
        tr->handshakes = h;
        if (inbound)
                tr->n_inbound++;
        uv_timer_start(&h->timer, on_deadline, TRANSPORT_HANDSHAKE_TIMEOUT_MS, 0);
        return h;
}

/* ---- inbound ---- */

/* Room for one more inbound handshake from SOURCE: the oldest one goes (per source address,
 * then overall). */
static void make_room(transport *tr, const hs *new_hs, const char *source)
{
        hs *oldest_same = NULL, *oldest = NULL;
        unsigned same = 0, total = 0;

        for (hs *h = tr->handshakes; h; h = h->next) {
                if (h == new_hs || !h->inbound || h->failed || h->state == HS_IN_ACCEPTING)
                        continue;
                total++;
                oldest = h;
                if (strcmp(h->source, source) == 0) {
                        same++;
                        oldest_same = h;
                }
        }
        hs *victim = same >= TRANSPORT_MAX_PENDING_PER_IP ? oldest_same
                     : total >= TRANSPORT_MAX_PENDING     ? oldest
                                                          : NULL;
        if (victim) {
                log_refused(tr,
                            "Dropped an unfinished Raft handshake from %s: too many at once "
                            "(%u from that address, %u in all).",
                            victim->source, same, total);
                hs_fail(victim);
        }
}

static void on_connection(uv_stream_t *listener, int status)
{
        transport *tr = listener->data;
        struct sockaddr_storage sa;
        int len = sizeof(sa);
        char source[INET6_ADDRSTRLEN];

        if (status < 0) {
                log_warning("Raft listener: %s, ignoring", uv_strerror(status));
                return;
        }
        (void)peers_refresh(tr); /* on failure the previous list stays */
        hs *h = hs_new(tr, true);
        if (!h) {
                /* Take the connection off the backlog all the same. */
                uv_tcp_t *t = malloc(sizeof(*t));
                if (t && uv_tcp_init(tr->loop, t) == 0) {
                        (void)uv_accept(listener, (uv_stream_t *)t);
                        uv_close((uv_handle_t *)t, (uv_close_cb)free);
                } else
                        free(t);
                log_oom();
                return;
        }
        if (uv_accept(listener, (uv_stream_t *)h->tcp) < 0 ||
            uv_tcp_getpeername(h->tcp, (struct sockaddr *)&sa, &len) < 0)
                return hs_fail(h);
        sockaddr_name((struct sockaddr *)&sa, source, sizeof(source));
        if (tr->closing)
                return hs_fail(h);
        if (!ip_may_be_master(tr, source)) {
                log_refused(tr,
                            "Refused Raft connection from %s: not the address of a master in "
                            "the cluster YAML.",
                            source);
                return hs_fail(h);
        }
        make_room(tr, h, source);
        snprintf(h->source, sizeof(h->source), "%s", source);
        h->state = HS_IN_HELLO;
        hs_expect(h, HS_HELLO_FIXED);
        (void)uv_tcp_nodelay(h->tcp, 1);
        if (uv_read_start((uv_stream_t *)h->tcp, on_alloc, on_read) < 0)
                return hs_fail(h);
}

/* ---- outbound ---- */

static void on_connect(uv_connect_t *c, int status)
{
        hs *h = c->data;

        if (h->failed)
                return;
        if (status < 0) {
                log_debug("Raft connection to raft id %u at %s: %s", h->target_id,
                          h->target_address, uv_strerror(status));
                return hs_fail(h);
        }
        (void)uv_tcp_nodelay(h->tcp, 1);
        h->state = HS_OUT_CHALLENGE;
        hs_expect(h, HS_CHALLENGE_BYTES);
        if (hs_write(h, 0, h->hello, h->hello_len) < 0 ||
            uv_read_start((uv_stream_t *)h->tcp, on_alloc, on_read) < 0)
                return hs_fail(h);
}

static int parse_target(const transport *tr, unsigned id, const char *address,
                        struct sockaddr_storage *ret)
{
        const peer *p = peer_by_id(tr, id);
        if (p && p->have_sa && strcmp(p->address, address) == 0) {
                *ret = p->sa;
                return 0;
        }
        /* Not as in the YAML: only a literal "IPv4:port" or "[IPv6]:port". */
        char host[ADDRESS_MAX];
        const char *colon = strrchr(address, ':');
        uint64_t port;
        char *end;
        if (!colon || colon == address || (size_t)(colon - address) >= sizeof(host))
                return -EINVAL;
        memcpy(host, address, (size_t)(colon - address));
        host[colon - address] = 0;
        errno = 0;
        port = strtoull(colon + 1, &end, 10);
        if (errno || *end || end == colon + 1 || port == 0 || port > 65535)
                return -EINVAL;
        size_t hl = strlen(host);
        if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
                host[hl - 1] = 0;
                return uv_ip6_addr(host + 1, (int)port, (struct sockaddr_in6 *)ret) == 0 ? 0
                                                                                         : -EINVAL;
        }
        return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ret) == 0 ? 0 : -EINVAL;
}

static int tr_connect(struct raft_uv_transport *t, struct raft_uv_connect *req, raft_id id,
                      const char *address, raft_uv_connect_cb cb)
{
        transport *tr = transport_of(t);
        struct sockaddr_storage sa = {};
        hs_hello hello = {.from_id = tr->self.id, .to_id = id};

        if (tr->closing)
                return RAFT_CANCELED;
        (void)peers_refresh(tr);
        if (parse_target(tr, (unsigned)id, address, &sa) < 0) {
                log_refused(tr,
                            "Cannot connect to raft id %llu at %s: not an address of the "
                            "cluster YAML nor an IP address with a port.",
                            (unsigned long long)id, address);
                return RAFT_NOCONNECTION;
        }
        hs *h = hs_new(tr, false);
        if (!h)
                return RAFT_NOMEM;
        h->req = req;
        h->cb = cb;
        req->cb = cb;
        h->target_id = (unsigned)id;
        snprintf(h->target_address, sizeof(h->target_address), "%s", address);
        size_t alen = strlen(tr->self.address);
        if (alen > HS_ADDRESS_MAX)
                return RAFT_INVALID; /* tr_init refused it already */
        memcpy(hello.address, tr->self.address, alen + 1);
        randombytes_buf(hello.nonce, sizeof(hello.nonce));
        int len = hs_hello_encode(&hello, h->hello);
        if (len < 0) {
                h->cb_done = true; /* failing synchronously: libraft retries, no callback */
                hs_fail(h);
                return RAFT_INVALID;
        }
        h->hello_len = (size_t)len;
        /* From this master's own address, which the acceptor checks. */
        if (tr->self.have_sa) {
                struct sockaddr_storage local = tr->self.sa;
                sockaddr_set_port(&local, 0);
                int r = uv_tcp_bind(h->tcp, (struct sockaddr *)&local, 0);
                if (r < 0)
                        log_debug("Cannot bind the Raft connection to %s: %s, ignoring",
                                  tr->self.host, uv_strerror(r));
        }
        h->state = HS_OUT_CONNECTING;
        h->connect.data = h;
        int r = uv_tcp_connect(&h->connect, h->tcp, (struct sockaddr *)&sa, on_connect);
        if (r < 0) {
                log_debug("Raft connection to %s: %s", address, uv_strerror(r));
                h->cb_done = true;
                hs_fail(h);
                return RAFT_NOCONNECTION;
        }
        return 0;
}

/* ---- the transport interface ---- */

static int tr_init(struct raft_uv_transport *t, raft_id id, const char *address)
{
        transport *tr = transport_of(t);

        (void)peers_refresh(tr);
        const peer *self = peer_by_id(tr, id);
        if (!self || strcmp(self->address, address) != 0) {
                snprintf(t->errmsg, sizeof(t->errmsg),
                         "raft id %llu at %s is not a master of the cluster YAML",
                         (unsigned long long)id, address);
                return RAFT_INVALID;
        }
        if (strlen(address) > HS_ADDRESS_MAX) {
                snprintf(t->errmsg, sizeof(t->errmsg), "raft address longer than %d bytes",
                         HS_ADDRESS_MAX);
                return RAFT_INVALID;
        }
        if (!self->have_sa) {
                snprintf(t->errmsg, sizeof(t->errmsg),
                         "cannot resolve this master's address %.200s", self->host);
                return RAFT_INVALID;
        }
        tr->self = *self;
        if (uv_tcp_init(tr->loop, &tr->listener) < 0) {
                snprintf(t->errmsg, sizeof(t->errmsg), "cannot create the listening socket");
                return RAFT_NOMEM;
        }
        tr->listener.data = tr;
        tr->listener_open = true;
        return 0;
}

static int tr_listen(struct raft_uv_transport *t, raft_uv_accept_cb cb)
{
        transport *tr = transport_of(t);
        int r;

        tr->accept_cb = cb;
        tr->listen_called = true;
        r = uv_tcp_bind(&tr->listener, (const struct sockaddr *)&tr->self.sa, 0);
        if (r == 0)
                r = uv_listen((uv_stream_t *)&tr->listener, LISTEN_BACKLOG, on_connection);
        if (r < 0) {
                snprintf(t->errmsg, sizeof(t->errmsg), "listen on %.200s: %s", tr->self.address,
                         uv_strerror(r));
                log_error("Cannot listen for Raft on %s: %s", tr->self.address, uv_strerror(r));
                return RAFT_IOERR;
        }
        return 0;
}

static void do_free(transport *tr)
{
        sodium_memzero(tr->key, sizeof(tr->key));
        tr->t->impl = NULL;
        free(tr->peers);
        free(tr);
}

static void transport_maybe_closed(transport *tr)
{
        if (!tr->closing || tr->listener_open || tr->handshakes)
                return;
        raft_uv_transport_close_cb cb = TAKE_PTR(tr->close_cb);
        bool free_now = tr->free_on_close;
        if (cb)
                cb(tr->t);
        if (free_now)
                do_free(tr);
}

static void on_listener_closed(uv_handle_t *handle)
{
        transport *tr = handle->data;
        tr->listener_open = false;
        transport_maybe_closed(tr);
}

static void transport_start_close(transport *tr)
{
        if (tr->closing)
                return;
        tr->closing = true;
        if (tr->listener_open)
                uv_close((uv_handle_t *)&tr->listener, on_listener_closed);
        for (hs *h = tr->handshakes, *next; h; h = next) {
                next = h->next;
                hs_fail(h);
        }
}

static void tr_close(struct raft_uv_transport *t, raft_uv_transport_close_cb cb)
{
        transport *tr = transport_of(t);
        tr->close_cb = cb;
        bool idle = !tr->listener_open && !tr->handshakes;
        transport_start_close(tr);
        if (idle) {
                /* Nothing to wait for; libraft expects the callback all the same. */
                tr->close_cb = NULL;
                cb(t);
        }
}

int transport_init(struct raft_uv_transport *t, uv_loop_t *loop, const config *const *cfgp,
                   const uint8_t key[HS_KEY_BYTES])
{
        transport *tr = calloc(1, sizeof(*tr));
        if (!tr)
                return -ENOMEM;
        tr->cfgp = cfgp;
        tr->loop = loop;
        tr->t = t;
        memcpy(tr->key, key, HS_KEY_BYTES);
        int r = peers_refresh(tr);
        if (r < 0) {
                free(tr);
                return r;
        }

        raft_compat_transport_init(t);
        t->impl = tr;
        t->init = tr_init;
        t->listen = tr_listen;
        t->connect = tr_connect;
        t->close = tr_close;
        return 0;
}

bool transport_listen_called(const struct raft_uv_transport *t)
{
        const transport *tr = t->impl;
        return tr && tr->listen_called;
}

void transport_free(struct raft_uv_transport *t)
{
        transport *tr = t ? transport_of(t) : NULL;
        if (!tr)
                return;
        if (!tr->closing && (tr->listener_open || tr->handshakes))
                transport_start_close(tr);
        if (tr->listener_open || tr->handshakes) {
                tr->free_on_close = true; /* the loop runs the close chain to its end */
                return;
        }
        do_free(tr);
}

/* ---- the secret ---- */

int transport_load_key(const config *cfg, const char *token, uint8_t key[HS_KEY_BYTES],
                       bool *ret_keyed)
{
        if (sodium_init() < 0)
                return log_error_errno(EIO, "Failed to initialise libsodium.");
        if (cfg->raft_secret_file) {
                _cleanup_secret_ char *s = NULL;
                struct stat st;
                int r = read_secret_file(cfg->raft_secret_file, SECRET_MAX, &s);

                if (r < 0)
                        return log_error_errno(r, "Failed to read the Raft secret from %s: %m%s",
                                               cfg->raft_secret_file,
                                               r == -E2BIG ? " (longer than 4096 bytes)" : "");
                if (stat(cfg->raft_secret_file, &st) == 0 && (st.st_mode & S_IROTH))
                        log_warning("%s is readable by every user: anyone on this host can join "
                                    "the Raft cluster with it; chmod o-r it.",
                                    cfg->raft_secret_file);
                hs_derive_key(s, strlen(s), key);
                *ret_keyed = true;
                return 0;
        }
        if (token) {
                hs_derive_key(token, strlen(token), key);
                *ret_keyed = true;
                return 0;
        }
        hs_derive_key("", 0, key);
        *ret_keyed = false;
        if (config_n_masters(cfg) > 1)
                log_warning("*** Raft traffic is NOT authenticated: the cluster YAML sets neither "
                            "spec.raft.secretFile nor spec.tokenFile, so anyone who reaches a "
                            "Raft port can write the replicated state (the API is open to writes "
                            "too). Set spec.tokenFile or spec.raft.secretFile. ***");
        return 0;
}

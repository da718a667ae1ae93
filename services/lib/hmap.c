/* A small chained hash map with string, 64-bit or binary keys (see hmap.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hmap.h"

static uint64_t hash_str(const char *s)
{
        uint64_t h = 1469598103934665603ull; /* FNV-1a */

        for (; *s; s++) {
                h ^= (unsigned char)*s;
                h *= 1099511628211ull;
        }
        return h;
}

static uint64_t hash_u64(uint64_t x)
{
        /* splitmix64 finaliser: sequential inode numbers spread over the buckets */
        x ^= x >> 30;
        x *= 0xbf58476d1ce4e5b9ull;
        x ^= x >> 27;
        x *= 0x94d049bb133111ebull;
        x ^= x >> 31;
        return x;
}

static uint64_t hash_mem(const void *key, size_t size)
{
        const unsigned char *p = key;
        uint64_t h = size, w;
        size_t off = 0;

        /* Whole words mixed in with a multiply each, one finaliser at the end: the worker's block
         * keys (four words) differ in one word at a time (the index), and that must spread. */
        for (; off + 8 <= size; off += 8) {
                memcpy(&w, p + off, 8);
                h = (h ^ w) * 0x9e3779b97f4a7c15ull;
                h ^= h >> 32;
        }
        if (off < size) {
                w = 0;
                memcpy(&w, p + off, size - off);
                h = (h ^ w) * 0x9e3779b97f4a7c15ull;
        }
        return hash_u64(h);
}

void hmap_init(hmap *m, bool string_keys)
{
        *m = (hmap){.string_keys = string_keys};
}

void hmap_init_mem(hmap *m, size_t key_size)
{
        *m = (hmap){.key_size = key_size};
}

void hmap_done(hmap *m)
{
        for (size_t i = 0; i < m->n_buckets; i++) {
                hmap_node *n = m->buckets[i];

                while (n) {
                        hmap_node *next = n->next;

                        free(n);
                        n = next;
                }
        }
        free(m->buckets);
        *m = (hmap){.string_keys = m->string_keys, .key_size = m->key_size};
}

/* SKEY: the string or binary key; UKEY: the 64-bit one. */
static bool node_matches(const hmap *m, const hmap_node *n, uint64_t hash, const void *skey,
                         uint64_t ukey)
{
        if (n->hash != hash)
                return false;
        if (m->key_size)
                return memcmp(n->key.mem, skey, m->key_size) == 0;
        return m->string_keys ? strcmp(n->key.str, skey) == 0 : n->key.u64 == ukey;
}

static hmap_node **find_slot(const hmap *m, uint64_t hash, const void *skey, uint64_t ukey)
{
        hmap_node **p;

        if (m->n_buckets == 0)
                return NULL;
        for (p = &m->buckets[hash & (m->n_buckets - 1)]; *p; p = &(*p)->next)
                if (node_matches(m, *p, hash, skey, ukey))
                        return p;
        return NULL;
}

static int grow(hmap *m)
{
        size_t nb = m->n_buckets ? m->n_buckets * 2 : 64;
        hmap_node **b = calloc(nb, sizeof(*b));

        if (!b)
                return -ENOMEM;
        for (size_t i = 0; i < m->n_buckets; i++) {
                hmap_node *n = m->buckets[i];

                while (n) {
                        hmap_node *next = n->next;
                        size_t j = n->hash & (nb - 1);

                        n->next = b[j];
                        b[j] = n;
                        n = next;
                }
        }
        free(m->buckets);
        m->buckets = b;
        m->n_buckets = nb;
        return 0;
}

static int put(hmap *m, uint64_t hash, const void *skey, uint64_t ukey, void *value, void **ret_old)
{
        hmap_node **slot = find_slot(m, hash, skey, ukey);
        hmap_node *n;
        size_t j;

        if (slot) {
                if (ret_old)
                        *ret_old = (*slot)->value;
                (*slot)->value = value;
                if (m->string_keys || m->key_size)
                        (*slot)->key.mem = skey; /* the new value owns the key now */
                return 0;
        }
        if (m->n + 1 > m->n_buckets * 3 / 4) {
                int r = grow(m);

                if (r < 0)
                        return r;
        }
        n = calloc(1, sizeof(*n));
        if (!n)
                return -ENOMEM;
        n->hash = hash;
        if (m->string_keys || m->key_size)
                n->key.mem = skey;
        else
                n->key.u64 = ukey;
        n->value = value;
        j = hash & (m->n_buckets - 1);
        n->next = m->buckets[j];
        m->buckets[j] = n;
        m->n++;
        if (ret_old)
                *ret_old = NULL;
        return 0;
}

static void *take(hmap *m, hmap_node **slot)
{
        hmap_node *n;
        void *v;

        if (!slot)
                return NULL;
        n = *slot;
        v = n->value;
        *slot = n->next;
        free(n);
        m->n--;
        return v;
}

void *hmap_get_str(const hmap *m, const char *key)
{
        hmap_node **slot = find_slot(m, hash_str(key), key, 0);

        return slot ? (*slot)->value : NULL;
}

void *hmap_get_u64(const hmap *m, uint64_t key)
{
        hmap_node **slot = find_slot(m, hash_u64(key), NULL, key);

        return slot ? (*slot)->value : NULL;
}

int hmap_put_str(hmap *m, const char *key, void *value, void **ret_old)
{
        return put(m, hash_str(key), key, 0, value, ret_old);
}

int hmap_put_u64(hmap *m, uint64_t key, void *value, void **ret_old)
{
        return put(m, hash_u64(key), NULL, key, value, ret_old);
}

void *hmap_get_mem(const hmap *m, const void *key)
{
        hmap_node **slot = find_slot(m, hash_mem(key, m->key_size), key, 0);

        return slot ? (*slot)->value : NULL;
}

int hmap_put_mem(hmap *m, const void *key, void *value, void **ret_old)
{
        return put(m, hash_mem(key, m->key_size), key, 0, value, ret_old);
}

void *hmap_remove_mem(hmap *m, const void *key)
{
        return take(m, find_slot(m, hash_mem(key, m->key_size), key, 0));
}

void *hmap_remove_str(hmap *m, const char *key)
{
        return take(m, find_slot(m, hash_str(key), key, 0));
}

void *hmap_remove_u64(hmap *m, uint64_t key)
{
        return take(m, find_slot(m, hash_u64(key), NULL, key));
}

hmap_node *hmap_first(const hmap *m, size_t *iter)
{
        for (*iter = 0; *iter < m->n_buckets; (*iter)++)
                if (m->buckets[*iter])
                        return m->buckets[*iter];
        return NULL;
}

hmap_node *hmap_next(const hmap *m, hmap_node *node, size_t *iter)
{
        if (node->next)
                return node->next;
        for ((*iter)++; *iter < m->n_buckets; (*iter)++)
                if (m->buckets[*iter])
                        return m->buckets[*iter];
        return NULL;
}

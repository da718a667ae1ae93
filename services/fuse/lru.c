/* A string-keyed cache bounded by bytes and entries, evicting the least recently used. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hmap.h"
#include "lru.h"

typedef struct lru_item {
        struct lru_item *prev, *next; /* prev: more recently used */
        void *value;
        size_t bytes; /* the caller's cost plus the key's */
        char key[];
} lru_item;

struct lru {
        hmap map;              /* key -> lru_item */
        lru_item *head, *tail; /* head: most recently used */
        size_t bytes, max_bytes, max_entries, evictions;
        void (*free_value)(void *value);
};

lru *lru_new(size_t max_bytes, size_t max_entries, void (*free_value)(void *value))
{
        lru *c = calloc(1, sizeof(*c));

        if (!c)
                return NULL;
        hmap_init(&c->map, true);
        c->max_bytes = max_bytes;
        c->max_entries = max_entries;
        c->free_value = free_value;
        return c;
}

static void unlink_item(lru *c, lru_item *i)
{
        if (i->prev)
                i->prev->next = i->next;
        else
                c->head = i->next;
        if (i->next)
                i->next->prev = i->prev;
        else
                c->tail = i->prev;
        i->prev = i->next = NULL;
}

static void push_front(lru *c, lru_item *i)
{
        i->prev = NULL;
        i->next = c->head;
        if (c->head)
                c->head->prev = i;
        c->head = i;
        if (!c->tail)
                c->tail = i;
}

static void drop_item(lru *c, lru_item *i)
{
        unlink_item(c, i);
        hmap_remove_str(&c->map, i->key);
        c->bytes -= i->bytes;
        if (c->free_value)
                c->free_value(i->value);
        free(i);
}

lru *lru_free(lru *c)
{
        if (!c)
                return NULL;
        while (c->head)
                drop_item(c, c->head);
        hmap_done(&c->map);
        free(c);
        return NULL;
}

void *lru_get(lru *c, const char *key)
{
        lru_item *i = hmap_get_str(&c->map, key);

        if (!i)
                return NULL;
        unlink_item(c, i);
        push_front(c, i);
        return i->value;
}

static bool over(const lru *c)
{
        return (c->max_bytes && c->bytes > c->max_bytes) ||
               (c->max_entries && c->map.n > c->max_entries);
}

int lru_put(lru *c, const char *key, void *value, size_t bytes)
{
        size_t kl = strlen(key);
        lru_item *i = malloc(sizeof(*i) + kl + 1), *old;
        int r;

        if (!i) {
                if (c->free_value)
                        c->free_value(value);
                return -ENOMEM;
        }
        *i = (lru_item){.value = value, .bytes = bytes + sizeof(*i) + kl + 1};
        memcpy(i->key, key, kl + 1);
        old = hmap_get_str(&c->map, key);
        if (old)
                drop_item(c, old);
        r = hmap_put_str(&c->map, i->key, i, NULL);
        if (r < 0) {
                if (c->free_value)
                        c->free_value(value);
                free(i);
                return r;
        }
        push_front(c, i);
        c->bytes += i->bytes;
        while (over(c) && c->tail != i) {
                drop_item(c, c->tail);
                c->evictions++;
        }
        return 0;
}

bool lru_remove(lru *c, const char *key)
{
        lru_item *i = hmap_get_str(&c->map, key);

        if (!i)
                return false;
        drop_item(c, i);
        return true;
}

size_t lru_bytes(const lru *c)
{
        return c->bytes;
}

size_t lru_entries(const lru *c)
{
        return c->map.n;
}

size_t lru_evictions(const lru *c)
{
        return c->evictions;
}

/* The growable array every part uses: an element pointer, a count kept by the caller and an
 * allocated capacity; the capacity doubles (from 8) so appending is amortised O(1). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Grows the array *P to hold NEED elements of SIZE bytes; false when it cannot (out of memory or
 * an overflowing size), with *P and *ALLOC unchanged. */
static inline bool array_grow(void **p, size_t *alloc, size_t need, size_t size)
{
        size_t n;
        void *q;

        if (need <= *alloc)
                return true;
        n = *alloc > SIZE_MAX / 2 ? SIZE_MAX : *alloc * 2;
        n = n > need ? n : need;
        n = n < 8 ? 8 : n;
        if (n > SIZE_MAX / size)
                return false;
        q = realloc(*p, n * size);
        if (!q)
                return false;
        *p = q;
        *alloc = n;
        return true;
}

/* ARRAY_GROW(items, allocated, n + 1): room for N + 1 elements of *ITEMS. */
#define ARRAY_GROW(p, alloc, need) array_grow((void **)&(p), &(alloc), (need), sizeof(*(p)))

/* Appends N bytes of DATA to the text buffer *P (*LEN bytes used, *ALLOC allocated) and keeps a
 * NUL after them, so that the body of an HTTP reply can be parsed as a string; false when out of
 * memory, with the buffer unchanged. The caller limits *LEN + N. */
static inline bool array_append_text(char **p, size_t *len, size_t *alloc, const void *data,
                                     size_t n)
{
        if (n > SIZE_MAX - *len - 1 || !array_grow((void **)p, alloc, *len + n + 1, 1))
                return false;
        if (n)
                memcpy(*p + *len, data, n);
        *len += n;
        (*p)[*len] = 0;
        return true;
}

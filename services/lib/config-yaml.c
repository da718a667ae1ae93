/* The cluster YAML's first stage: libyaml events into a small tree, every limit checked on the
 * way, libyaml's errors translated here and nowhere else. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "array.h"
#include "cleanup.h"
#include "config-yaml.h"

/* Records the first problem; returns -EINVAL for "return fail(...)". */
_printf_(4, 5) static int fail(config_yaml *y, unsigned line, unsigned column, const char *format,
                               ...)
{
        va_list ap;

        if (y->error)
                return -EINVAL;
        va_start(ap, format);
        if (vasprintf(&y->error, format, ap) < 0)
                y->error = NULL;
        va_end(ap);
        y->error_line = line;
        y->error_column = column;
        return -EINVAL;
}

static void ynode_free(ynode *n)
{
        free(n->value);
        free(n->items);
        free(n);
}

static ynode *ynode_new(config_yaml *y, ynode_type type, const yaml_mark_t *mark)
{
        ynode *n;

        if (!ARRAY_GROW(y->nodes, y->n_nodes_alloc, y->n_nodes + 1))
                return NULL;
        n = calloc(1, sizeof(*n));
        if (!n)
                return NULL;
        n->type = type;
        n->line = (unsigned)MIN(mark->line + 1, (size_t)UINT32_MAX);
        n->column = (unsigned)MIN(mark->column + 1, (size_t)UINT32_MAX);
        n->weight = 1;
        y->nodes[y->n_nodes++] = n;
        return n;
}

static void anchors_clear(config_yaml *y)
{
        for (size_t i = 0; i < y->n_anchors; i++)
                free(y->anchors[i].name);
        y->n_anchors = 0;
}

static int anchor_add(config_yaml *y, const char *name, ynode *n)
{
        if (!name)
                return 0;
        if (y->n_anchors >= CONFIG_YAML_MAX_ANCHORS) {
                fail(y, n->line, n->column, "more than %u anchors in one document",
                     CONFIG_YAML_MAX_ANCHORS);
                return -EINVAL;
        }
        y->anchors[y->n_anchors].name = strdup(name);
        if (!y->anchors[y->n_anchors].name)
                return -ENOMEM;
        y->anchors[y->n_anchors++].node = n;
        return 0;
}

static ynode *anchor_find(config_yaml *y, const char *name)
{
        /* The latest definition wins: YAML allows redefining an anchor. */
        for (size_t i = y->n_anchors; i > 0; i--)
                if (strcmp(y->anchors[i - 1].name, name) == 0)
                        return y->anchors[i - 1].node;
        return NULL;
}

/* Line and column of byte OFFSET, for libyaml's reader errors which only carry an offset. */
static void offset_to_mark(const config_yaml *y, size_t offset, unsigned *line, unsigned *column)
{
        unsigned ln = 1, col = 1;

        for (size_t i = 0; i < offset && i < y->size; i++) {
                if (y->data[i] == '\n') {
                        ln++;
                        col = 1;
                } else if (((unsigned char)y->data[i] & 0xc0) != 0x80)
                        col++;
        }
        *line = ln;
        *column = col;
}

/* The one place libyaml's errors are translated. */
static int yaml_error(config_yaml *y, const yaml_parser_t *p)
{
        const char *problem = p->problem ? p->problem : "unknown error";
        unsigned line, column;

        if (p->error == YAML_MEMORY_ERROR)
                return -ENOMEM;
        if (p->error == YAML_READER_ERROR) {
                offset_to_mark(y, p->problem_offset, &line, &column);
                fail(y, line, column, "invalid YAML: %s", problem);
                return -EINVAL;
        }
        line = (unsigned)p->problem_mark.line + 1;
        column = (unsigned)p->problem_mark.column + 1;
        if (p->context)
                fail(y, line, column, "invalid YAML: %s (%s at %u:%u)", problem, p->context,
                     (unsigned)p->context_mark.line + 1, (unsigned)p->context_mark.column + 1);
        else
                fail(y, line, column, "invalid YAML: %s", problem);
        return -EINVAL;
}

static int weigh(config_yaml *y, const yaml_mark_t *mark, uint64_t w)
{
        y->doc_weight += w;
        if (y->doc_weight > CONFIG_YAML_MAX_EXPANDED) {
                fail(y, (unsigned)mark->line + 1, (unsigned)mark->column + 1,
                     "document too large once its aliases are expanded (more than %u nodes)",
                     CONFIG_YAML_MAX_EXPANDED);
                return -EINVAL;
        }
        return 0;
}

typedef struct tree_stack {
        ynode *node[CONFIG_MAX_DEPTH];
        char *anchor[CONFIG_MAX_DEPTH];
        size_t depth;
        ynode *root;
} tree_stack;

static int tree_attach(tree_stack *s, ynode *n)
{
        ynode *p;

        if (s->depth == 0) {
                s->root = n;
                return 0;
        }
        p = s->node[s->depth - 1];
        if (!ARRAY_GROW(p->items, p->n_alloc, p->n_items + 1))
                return -ENOMEM;
        p->items[p->n_items++] = n;
        return 0;
}

/* Counts N (WEIGHT nodes, an alias counts what it expands to) and attaches it where the tree is. */
static int weigh_attach(config_yaml *y, tree_stack *s, const yaml_mark_t *mark, ynode *n,
                        uint64_t weight)
{
        int r = weigh(y, mark, weight);
        if (r < 0)
                return r;
        return tree_attach(s, n);
}

static int tree_event(config_yaml *y, tree_stack *s, yaml_event_t *e, bool *done)
{
        ynode *n;
        int r;

        switch (e->type) {
        case YAML_STREAM_START_EVENT:
                return 0;
        case YAML_STREAM_END_EVENT:
                *done = true;
                return 0;
        case YAML_DOCUMENT_START_EVENT:
                if (y->n_docs >= CONFIG_MAX_DOCUMENTS) {
                        fail(y, (unsigned)e->start_mark.line + 1,
                             (unsigned)e->start_mark.column + 1,
                             "more than %u documents in one file", CONFIG_MAX_DOCUMENTS);
                        return -EINVAL;
                }
                anchors_clear(y);
                y->doc_weight = 0;
                s->root = NULL;
                s->depth = 0;
                return 0;
        case YAML_DOCUMENT_END_EVENT:
                y->docs[y->n_docs++] = s->root;
                return 0;
        case YAML_ALIAS_EVENT:
                n = anchor_find(y, (const char *)e->data.alias.anchor);
                if (!n) {
                        fail(y, (unsigned)e->start_mark.line + 1,
                             (unsigned)e->start_mark.column + 1, "undefined alias '*%s'",
                             (const char *)e->data.alias.anchor);
                        return -EINVAL;
                }
                return weigh_attach(y, s, &e->start_mark, n, n->weight);
        case YAML_SCALAR_EVENT:
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
                break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT: {
                _cleanup_free_ char *a = NULL;

                if (s->depth == 0)
                        return -EINVAL; /* libyaml never does this */
                s->depth--;
                n = s->node[s->depth];
                a = TAKE_PTR(s->anchor[s->depth]);
                for (size_t i = 0; i < n->n_items; i++)
                        n->weight = MIN(n->weight + n->items[i]->weight,
                                        (uint64_t)CONFIG_YAML_MAX_EXPANDED + 1);
                return anchor_add(y, a, n);
        }
        default:
                return 0;
        }

        if (y->n_nodes >= CONFIG_YAML_MAX_NODES) {
                fail(y, (unsigned)e->start_mark.line + 1, (unsigned)e->start_mark.column + 1,
                     "more than %u YAML nodes in one file", CONFIG_YAML_MAX_NODES);
                return -EINVAL;
        }

        if (e->type == YAML_SCALAR_EVENT) {
                if (e->data.scalar.length > CONFIG_MAX_STRING) {
                        fail(y, (unsigned)e->start_mark.line + 1,
                             (unsigned)e->start_mark.column + 1, "string longer than %u bytes",
                             CONFIG_MAX_STRING);
                        return -EINVAL;
                }
                n = ynode_new(y, YNODE_SCALAR, &e->start_mark);
                if (!n)
                        return -ENOMEM;
                n->value = malloc(e->data.scalar.length + 1);
                if (!n->value)
                        return -ENOMEM;
                memcpy(n->value, e->data.scalar.value, e->data.scalar.length);
                n->value[e->data.scalar.length] = 0;
                n->len = e->data.scalar.length;
                n->plain = e->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
                r = weigh_attach(y, s, &e->start_mark, n, 1);
                if (r < 0)
                        return r;
                return anchor_add(y, (const char *)e->data.scalar.anchor, n);
        }

        if (s->depth >= CONFIG_MAX_DEPTH) {
                fail(y, (unsigned)e->start_mark.line + 1, (unsigned)e->start_mark.column + 1,
                     "nested deeper than %u levels", CONFIG_MAX_DEPTH);
                return -EINVAL;
        }
        n = ynode_new(y, e->type == YAML_SEQUENCE_START_EVENT ? YNODE_SEQ : YNODE_MAP,
                      &e->start_mark);
        if (!n)
                return -ENOMEM;
        r = weigh_attach(y, s, &e->start_mark, n, 1);
        if (r < 0)
                return r;
        {
                const yaml_char_t *a = e->type == YAML_SEQUENCE_START_EVENT
                                               ? e->data.sequence_start.anchor
                                               : e->data.mapping_start.anchor;
                s->anchor[s->depth] = NULL;
                if (a) {
                        s->anchor[s->depth] = strdup((const char *)a);
                        if (!s->anchor[s->depth])
                                return -ENOMEM;
                }
        }
        s->node[s->depth++] = n;
        return 0;
}

int config_yaml_parse(config_yaml *y, const char *data, size_t len)
{
        yaml_parser_t parser;
        tree_stack s = {};
        bool done = false;
        int r = 0;

        y->data = data;
        y->size = len;
        if (!yaml_parser_initialize(&parser))
                return -ENOMEM;
        yaml_parser_set_input_string(&parser, (const unsigned char *)y->data, y->size);
        while (!done) {
                yaml_event_t e;

                if (!yaml_parser_parse(&parser, &e)) {
                        r = yaml_error(y, &parser);
                        break;
                }
                r = tree_event(y, &s, &e, &done);
                yaml_event_delete(&e);
                if (r < 0)
                        break;
        }
        for (size_t i = 0; i < s.depth; i++)
                free(s.anchor[i]);
        anchors_clear(y);
        yaml_parser_delete(&parser);
        return r;
}

void config_yaml_done(config_yaml *y)
{
        for (size_t i = 0; i < y->n_nodes; i++)
                ynode_free(y->nodes[i]);
        free(y->nodes);
        anchors_clear(y);
        free(y->error);
        *y = (config_yaml){};
}

bool config_yaml_is_null(const ynode *n)
{
        return n->type == YNODE_SCALAR && n->plain &&
               (n->len == 0 || strcmp(n->value, "~") == 0 || strcmp(n->value, "null") == 0 ||
                strcmp(n->value, "Null") == 0 || strcmp(n->value, "NULL") == 0);
}

const char *config_yaml_describe(const ynode *n)
{
        switch (n->type) {
        case YNODE_MAP:
                return "a mapping";
        case YNODE_SEQ:
                return "a list";
        default:
                return config_yaml_is_null(n) ? "nothing" : "a scalar";
        }
}

/* The cluster YAML's first stage, for config.c only: libyaml events into a small bounded tree. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "config.h"

/* Limits on the tree, beyond config.h's: together they bound memory and time for any input. */
#define CONFIG_YAML_MAX_NODES    200000u  /* per stream */
#define CONFIG_YAML_MAX_EXPANDED 1000000u /* per document, every alias counted as a copy */
#define CONFIG_YAML_MAX_ANCHORS  1024u    /* per document */

typedef enum ynode_type {
        YNODE_SCALAR,
        YNODE_MAP,
        YNODE_SEQ,
} ynode_type;

/* One YAML node. An alias is the anchored node itself, shared; config_yaml owns every node. */
typedef struct ynode {
        ynode_type type;
        unsigned line, column; /* 1-based */
        char *value; /* scalars: the text, NUL-terminated (may hold other NULs: see len) */
        size_t len;
        bool plain;           /* unquoted scalar: may be null */
        struct ynode **items; /* sequence: the items; mapping: key, value, key, value, ... */
        size_t n_items, n_alloc;
        uint64_t weight; /* nodes in the subtree, aliases expanded */
} ynode;

typedef struct config_yaml_anchor {
        char *name;
        ynode *node;
} config_yaml_anchor;

typedef struct config_yaml {
        ynode *docs[CONFIG_MAX_DOCUMENTS]; /* in stream order; NULL for an empty document */
        size_t n_docs;
        char *error; /* why config_yaml_parse() returned -EINVAL */
        unsigned error_line, error_column;

        /* Private to config-yaml.c. */
        const char *data;
        size_t size;
        ynode **nodes;
        size_t n_nodes, n_nodes_alloc;
        config_yaml_anchor anchors[CONFIG_YAML_MAX_ANCHORS];
        size_t n_anchors;
        uint64_t doc_weight;
} config_yaml;

/* Parses LEN bytes of DATA into Y, which must be zeroed. Returns 0; -EINVAL for invalid YAML or
 * input over a limit, with Y->error and its position set (error NULL when that message could not
 * be allocated); -ENOMEM. Release Y with config_yaml_done() in every case. */
int config_yaml_parse(config_yaml *y, const char *data, size_t len);
void config_yaml_done(config_yaml *y);

/* A plain empty, "~" or "null" scalar. */
bool config_yaml_is_null(const ynode *n);

/* "a mapping", "a list", "a scalar" or "nothing", for "expected X, got Y" messages. */
const char *config_yaml_describe(const ynode *n);

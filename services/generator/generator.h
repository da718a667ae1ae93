/* weir-generator's logic: find this host in the cluster YAML and pull in the units of its roles. */
#pragma once

#include <stdbool.h>

#include "config.h"

/* Where the node file lives unless $WEIR_NODE_FILE says otherwise. */
#define GENERATOR_NODE_FILE "/etc/weir/node"
/* The generators' normal output directory at boot (systemd.generator(7)). */
#define GENERATOR_NORMAL_DIR "/run/systemd/generator"

/* How this host was matched to a node, for the journal message. */
typedef enum generator_match {
        GENERATOR_MATCH_NODE_FILE,
        GENERATOR_MATCH_HOSTNAME,
        GENERATOR_MATCH_ADDRESS,
} generator_match;

const char *generator_match_to_string(generator_match m);

/* Escapes S the way "systemd-escape S" does for an instance name: '/' becomes '-', characters
 * outside [A-Za-z0-9:_.] (and a leading '.') become "\xNN". 0 or -ENOMEM; -EINVAL if empty. */
int generator_escape_instance(const char *s, char **ret);

/* Finds the node this host is. NODE_FILE (may not exist) names it explicitly; else HOSTNAME (NULL:
 * gethostname()) or its first label equals a node name; else an address of a local interface
 * equals a node's address literal. -ENOENT when nothing matches, -EINVAL when the node file names
 * an unknown node, -ENOTUNIQ when several nodes match by address. */
int generator_find_node(const config *c, const char *node_file, const char *hostname,
                        const config_node **ret, generator_match *ret_match);

/* Writes the wants symlinks and drop-ins for NODE's roles into DEST (the generator's normal
 * directory). Links point at units in UNIT_DIR. Either everything is written or, on failure,
 * what was written is removed again. */
int generator_write(const config *c, const config_node *node, const char *dest,
                    const char *unit_dir);

/* "weir-generator --rescan", run by weir-rescan.service after network-online.target: when the
 * boot-time run found no node (an address that DHCP assigned later), reload systemd so that the
 * generator runs again, and start weir.target if GENERATOR_DIR now pulls it in. Logs via log.h. */
int generator_rescan(const char *generator_dir);

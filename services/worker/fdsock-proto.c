/* Request lines of the local descriptor socket: "OPEN BLOCK_ID", "WAIT BLOCK_ID OFFSET LENGTH". */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "fdsock-proto.h"
#include "parse.h"

/* The next space-separated word of *P into BUF (SIZE bytes); false when none or too long. */
static bool next_word(const char **p, char *buf, size_t size)
{
        size_t n = strcspn(*p, " ");

        if (n == 0 || n >= size)
                return false;
        memcpy(buf, *p, n);
        buf[n] = 0;
        *p += n;
        if (**p == ' ')
                (*p)++;
        return true;
}

int fdsock_parse(const char *line, fdsock_cmd *ret, const char **ret_error)
{
        char id[BLOCK_ID_MAX], num[2][24];
        fdsock_cmd c = {};
        const char *p;

        if (strncmp(line, "OPEN ", 5) == 0) {
                c.verb = FDSOCK_OPEN;
                if (block_id_parse(line + 5, &c.key) < 0) {
                        *ret_error = "ERR invalid block id\n";
                        return -EINVAL;
                }
                *ret = c;
                return 0;
        }
        if (strncmp(line, "WAIT ", 5) != 0) {
                *ret_error = "ERR unknown command, expected OPEN or WAIT\n";
                return -EINVAL;
        }
        c.verb = FDSOCK_WAIT;
        p = line + 5;
        /* exactly three words, one space apart, nothing after */
        if (!next_word(&p, id, sizeof(id)) || !next_word(&p, num[0], sizeof(num[0])) ||
            !next_word(&p, num[1], sizeof(num[1])) || *p != 0 || p[-1] == ' ' ||
            parse_u64(num[0], &c.offset) < 0 || parse_u64(num[1], &c.length) < 0 || c.length == 0) {
                *ret_error = "ERR expected WAIT BLOCK_ID OFFSET LENGTH\n";
                return -EINVAL;
        }
        if (block_id_parse(id, &c.key) < 0) {
                *ret_error = "ERR invalid block id\n";
                return -EINVAL;
        }
        *ret = c;
        return 0;
}

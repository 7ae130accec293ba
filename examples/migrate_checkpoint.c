/* redtls-migrate --checkpoint: the run's fingerprint and each source
 * node's progress in a small text file, replaced atomically.
 *
 *   redtls-migrate checkpoint 1
 *   from URL[ cluster]          (the URL without user and token)
 *   to URL[ cluster]
 *   match PATTERN|-
 *   db N|-
 *   node ADDR RUN_ID DONE CURSOR SCANNED COPIED SKIPPED EXPIRED FAILED BYTES
 *   end
 *
 * Every field is escaped (bytes outside '!'..'~', and '%', as %XX), so a
 * line splits on spaces. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "migrate.h"

#define CHECKPOINT_MAGIC "redtls-migrate checkpoint 1"

void checkpoint_escape(const char *in, size_t len, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t i, o = 0;

    for (i = 0; i < len && o + 4 <= cap; i++) {
        unsigned char ch = (unsigned char)in[i];
        if (ch > ' ' && ch < 0x7f && ch != '%') {
            out[o++] = (char)ch;
        } else {
            out[o++] = '%';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        }
    }
    out[o] = '\0';
}

/* scheme://[user[:token]@]host... without the user information. */
static void url_without_secrets(const char *url, int cluster, char *out, size_t cap)
{
    char plain[FINGERPRINT_MAX];
    const char *auth = strstr(url, "://"), *at = NULL, *p;

    if (auth == NULL) {
        snprintf(plain, sizeof plain, "%s", url);
    } else {
        const char *end;
        auth += 3;
        end = auth + strcspn(auth, "/?#");
        for (p = auth; p < end; p++)
            if (*p == '@')
                at = p;
        snprintf(plain, sizeof plain, "%.*s%s", (int)(auth - url), url, at != NULL ? at + 1 : auth);
    }
    if (cluster)
        snprintf(plain + strlen(plain), sizeof plain - strlen(plain), " cluster");
    checkpoint_escape(plain, strlen(plain), out, cap);
}

void checkpoint_fingerprint(const struct migrate_options *o, struct checkpoint *cp)
{
    url_without_secrets(o->from.url, o->from.cluster, cp->from, sizeof cp->from);
    url_without_secrets(o->to.url, o->to.cluster, cp->to, sizeof cp->to);
    if (o->match != NULL)
        checkpoint_escape(o->match, strlen(o->match), cp->match, sizeof cp->match);
    else
        snprintf(cp->match, sizeof cp->match, "-");
    if (o->db >= 0)
        snprintf(cp->db, sizeof cp->db, "%ld", o->db);
    else
        snprintf(cp->db, sizeof cp->db, "-");
}

static int load_failed(const char *path, int line, const char *what)
{
    fprintf(stderr,
            "redtls-migrate: checkpoint %s, line %d: %s; it was not written by this version of redtls-migrate or "
            "was edited (remove it to start over)\n",
            path, line, what);
    return -1;
}

/* A word of at most cap - 1 bytes into dst; the rest of the line after it. */
static const char *take_word(const char *p, char *dst, size_t cap)
{
    size_t len = strcspn(p, " ");
    if (len == 0 || len >= cap)
        return NULL;
    memcpy(dst, p, len);
    dst[len] = '\0';
    return p[len] == ' ' ? p + len + 1 : p + len;
}

static const char *take_number(const char *p, unsigned long long *v)
{
    char *end;
    if (p == NULL || *p < '0' || *p > '9')
        return NULL;
    errno = 0;
    *v = strtoull(p, &end, 10);
    if (errno != 0 || (*end != ' ' && *end != '\0'))
        return NULL;
    return *end == ' ' ? end + 1 : end;
}

/* ADDR RUN_ID DONE CURSOR SCANNED COPIED SKIPPED EXPIRED FAILED BYTES CHUNKED */
static int parse_node(const char *p, struct node_progress *np)
{
    unsigned long long done = 2;
    struct counts *n = &np->n;

    p = take_word(p, np->addr, sizeof np->addr);
    p = p != NULL ? take_word(p, np->run_id, sizeof np->run_id) : NULL;
    p = take_number(p, &done);
    p = p != NULL ? take_word(p, np->cursor, sizeof np->cursor) : NULL;
    p = take_number(p, &n->scanned);
    p = take_number(p, &n->copied);
    p = take_number(p, &n->skipped);
    p = take_number(p, &n->expired);
    p = take_number(p, &n->failed);
    p = take_number(p, &n->bytes);
    p = take_number(p, &n->chunked);
    if (p == NULL || *p != '\0' || done > 1 || strlen(np->run_id) != RUN_ID_LEN)
        return -1;
    np->done = (int)done;
    return 0;
}

int checkpoint_load(const char *path, struct checkpoint *cp)
{
    char line[4 * FINGERPRINT_MAX];
    FILE *f = fopen(path, "r");
    int lineno = 0, ended = 0;

    memset(cp, 0, sizeof(*cp));
    if (f == NULL) {
        if (errno == ENOENT)
            return 1;
        fprintf(stderr, "redtls-migrate: cannot read the checkpoint %s: %s\n", path, strerror(errno));
        return -1;
    }
    while (fgets(line, sizeof line, f) != NULL) {
        size_t len = strlen(line);
        lineno++;
        if (len == 0 || line[len - 1] != '\n') {
            fclose(f);
            return load_failed(path, lineno, "line too long or cut short");
        }
        line[--len] = '\0';
        if (lineno == 1) {
            if (strcmp(line, CHECKPOINT_MAGIC) != 0) {
                fclose(f);
                return load_failed(path, lineno, "not a redtls-migrate checkpoint");
            }
        } else if (strncmp(line, "from ", 5) == 0 || strncmp(line, "to ", 3) == 0 || strncmp(line, "match ", 6) == 0 ||
                   strncmp(line, "db ", 3) == 0) {
            const char *value = strchr(line, ' ') + 1;
            char *field = line[0] == 'f' ? cp->from : line[0] == 't' ? cp->to : line[0] == 'm' ? cp->match : cp->db;
            size_t cap = line[0] == 'd' ? sizeof cp->db : sizeof cp->from, vlen = strlen(value);
            if (vlen >= cap) {
                fclose(f);
                return load_failed(path, lineno, "value too long");
            }
            memcpy(field, value, vlen + 1);
        } else if (strncmp(line, "node ", 5) == 0) {
            if (cp->nnodes == MAX_NODES) {
                fclose(f);
                return load_failed(path, lineno, "too many nodes");
            }
            if (parse_node(line + 5, &cp->node[cp->nnodes]) != 0) {
                fclose(f);
                return load_failed(path, lineno, "malformed node line");
            }
            cp->nnodes++;
        } else if (strcmp(line, "end") == 0) {
            ended = 1;
        } else {
            fclose(f);
            return load_failed(path, lineno, "unknown line");
        }
    }
    fclose(f);
    if (lineno == 0 || !ended)
        return load_failed(path, lineno, "no 'end' line: the file is incomplete");
    if (cp->from[0] == '\0' || cp->to[0] == '\0' || cp->match[0] == '\0' || cp->db[0] == '\0')
        return load_failed(path, lineno, "a from, to, match or db line is missing");
    return 0;
}

int checkpoint_match(const char *path, const struct checkpoint *saved, const struct checkpoint *now)
{
    const char *what = NULL, *was = NULL, *is = NULL;

    if (strcmp(saved->from, now->from) != 0)
        what = "--from", was = saved->from, is = now->from;
    else if (strcmp(saved->to, now->to) != 0)
        what = "--to", was = saved->to, is = now->to;
    else if (strcmp(saved->match, now->match) != 0)
        what = "--match", was = saved->match, is = now->match;
    else if (strcmp(saved->db, now->db) != 0)
        what = "--db", was = saved->db, is = now->db;
    if (what == NULL)
        return EXIT_CONTINUE;
    fprintf(stderr,
            "redtls-migrate: the checkpoint %s records another run: %s was '%s', now '%s' (escaped, '-' for none); "
            "nothing was copied. Resume with the command that wrote it, or use another --checkpoint file\n",
            path, what, was, is);
    return EXIT_USAGE;
}

static int save_failed(char *why, size_t cap, const char *what, const char *path, int err)
{
    snprintf(why, cap, "%s %s: %s", what, path, strerror(err));
    return -1;
}

int checkpoint_save(const char *path, const struct checkpoint *cp, char *why, size_t cap)
{
    char tmp[4096], dir[4096];
    const char *slash = strrchr(path, '/');
    size_t i;
    FILE *f;
    int fd, err;

    /* One name, so a run killed while writing leaves at most one stray
     * file, replaced by the next write. */
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp)
        return save_failed(why, cap, "path too long:", path, ENAMETOOLONG);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return save_failed(why, cap, "cannot create", tmp, errno);
    f = fdopen(fd, "w");
    if (f == NULL) {
        err = errno;
        close(fd);
        unlink(tmp);
        return save_failed(why, cap, "cannot write", tmp, err);
    }
    fprintf(f, "%s\nfrom %s\nto %s\nmatch %s\ndb %s\n", CHECKPOINT_MAGIC, cp->from, cp->to, cp->match, cp->db);
    for (i = 0; i < cp->nnodes; i++) {
        const struct node_progress *np = &cp->node[i];
        fprintf(f, "node %s %s %d %s %llu %llu %llu %llu %llu %llu %llu\n", np->addr, np->run_id, np->done, np->cursor,
                np->n.scanned, np->n.copied, np->n.skipped, np->n.expired, np->n.failed, np->n.bytes, np->n.chunked);
    }
    fputs("end\n", f);
    /* On disk before the rename makes it the checkpoint: a crash leaves
     * either the old file or the new one, whole. */
    if (fflush(f) != 0 || fsync(fd) != 0) {
        err = errno;
        fclose(f);
        unlink(tmp);
        return save_failed(why, cap, "cannot write", tmp, err);
    }
    if (fclose(f) != 0) {
        err = errno;
        unlink(tmp);
        return save_failed(why, cap, "cannot write", tmp, err);
    }
    if (rename(tmp, path) != 0) {
        err = errno;
        unlink(tmp);
        return save_failed(why, cap, "cannot rename to", path, err);
    }
    /* The rename itself is durable once the directory is synced. */
    if (slash == NULL)
        snprintf(dir, sizeof dir, ".");
    else
        snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
    fd = open(dir, O_RDONLY);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    return 0;
}

/* --checkpoint without --resume must not overwrite a run's progress;
 * with --resume the file must record this very run. */
int checkpoint_open(const struct migrate_options *o, struct checkpoint **saved)
{
    struct checkpoint *now, *cp;
    int rc;

    *saved = NULL;
    if (o->checkpoint == NULL)
        return EXIT_CONTINUE;
    if (!o->resume) {
        if (access(o->checkpoint, F_OK) == 0) {
            fprintf(stderr,
                    "redtls-migrate: the checkpoint %s exists: add --resume to continue the run it records, or "
                    "remove it to start over\n",
                    o->checkpoint);
            return EXIT_USAGE;
        }
        return EXIT_CONTINUE;
    }
    cp = malloc(sizeof(*cp));
    now = malloc(sizeof(*now));
    if (cp == NULL || now == NULL) {
        free(cp);
        free(now);
        fputs("redtls-migrate: out of memory\n", stderr);
        return EXIT_CONNECT;
    }
    rc = checkpoint_load(o->checkpoint, cp);
    if (rc == 1) {
        fprintf(stderr, "redtls-migrate: note: no checkpoint %s yet; starting from the beginning\n", o->checkpoint);
        free(cp);
        free(now);
        return EXIT_CONTINUE;
    }
    if (rc == 0) {
        memset(now, 0, sizeof(*now));
        checkpoint_fingerprint(o, now);
        rc = checkpoint_match(o->checkpoint, cp, now) == EXIT_CONTINUE ? 0 : -1;
    }
    free(now);
    if (rc != 0) {
        free(cp);
        return EXIT_USAGE;
    }
    *saved = cp;
    return EXIT_CONTINUE;
}

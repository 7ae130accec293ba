#include "cli_common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_parse_number(const char *s, long min, long max, long *out)
{
    char *end;
    long v;

    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int cli_parse_tls_min(const char *s)
{
    if (strcmp(s, "1.2") == 0)
        return REDTLS_TLS_1_2;
    if (strcmp(s, "1.3") == 0)
        return REDTLS_TLS_1_3;
    return 0;
}

static int resolve_error(const char *prog, const char *what, const char *option, const char *spec)
{
    fprintf(stderr, "%s: %s %s '%s'%s\nTry '%s --help'.\n", prog, what, option, spec,
            strcmp(what, "bad") == 0 ? " (HOST:PORT:ADDR)" : "", prog);
    return -1;
}

int cli_apply_resolve(redtls_config *cfg, const char *spec, const char *prog, const char *option)
{
    char buf[512];
    char *host, *port, *addr, *end;
    long p = 0;

    if (strlen(spec) >= sizeof(buf)) {
        fprintf(stderr, "%s: %s '%.40s...' is too long\nTry '%s --help'.\n", prog, option, spec, prog);
        return -1;
    }
    strcpy(buf, spec);
    host = buf;
    if (*host == '[') {
        end = strchr(host, ']');
        if (end == NULL || end[1] != ':')
            return resolve_error(prog, "bad", option, spec);
        host++;
        *end = '\0';
        port = end + 2;
    } else {
        port = strchr(host, ':');
        if (port == NULL)
            return resolve_error(prog, "bad", option, spec);
        *port++ = '\0';
    }
    addr = strchr(port, ':');
    if (addr == NULL || *host == '\0' || addr[1] == '\0')
        return resolve_error(prog, "bad", option, spec);
    *addr++ = '\0';
    if (strcmp(port, "*") != 0 && cli_parse_number(port, 0, 65535, &p) != 0)
        return resolve_error(prog, "bad port in", option, spec);
    if (redtls_config_add_resolve(cfg, host, (uint16_t)p, addr) != REDTLS_OK) {
        const char *detail = redtls_config_errmsg(cfg);
        fprintf(stderr, "%s: %s: %s\n", prog, option, *detail != '\0' ? detail : redtls_strerror(REDTLS_E_INVALID));
        return -1;
    }
    return 0;
}

/* Option parsing shared by the command-line examples (redtls-cli,
 * redtls-migrate). Messages name the program and the option as given. */
#ifndef REDTLS_EXAMPLES_CLI_COMMON_H
#define REDTLS_EXAMPLES_CLI_COMMON_H

#include <redtls/redtls.h>

/* Whole decimal number in [min, max], nothing else (no sign, no spaces).
 * Returns 0, or -1 leaving *out alone. */
int cli_parse_number(const char *s, long min, long max, long *out);

/* "1.2" or "1.3" to REDTLS_TLS_1_2 / REDTLS_TLS_1_3; 0 for anything else. */
int cli_parse_tls_min(const char *s);

/* HOST:PORT:ADDR (HOST and ADDR may be bracketed IPv6, PORT may be *) added
 * to cfg with redtls_config_add_resolve(). On failure prints
 * "PROG: bad OPTION ..." and the --help hint to stderr and returns -1. */
int cli_apply_resolve(redtls_config *cfg, const char *spec, const char *prog, const char *option);

#endif

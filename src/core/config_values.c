/* config_values.c: the value syntaxes of levee.yaml (durations, sizes,
 * listen addresses), declared in config.h.
 *
 * Each parser takes a NUL-terminated string and either accepts all of it or
 * rejects it: no leading or trailing blanks, no signs, no fractions, and any
 * result that would overflow its type is a syntax error rather than a
 * wrapped number. They only check syntax; ranges (e.g. "greater than 0")
 * are the caller's business, because they differ per key. */
#include "core/config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *suffix;
    uint64_t factor;
} unit_t;

/* Reads the leading run of decimal digits into *value. Returns the number of
 * digits (0 when there are none) or -1 when the number overflows. */
static int leading_number(const char *s, uint64_t *value)
{
    uint64_t v = 0;
    int n = 0;
    for (; s[n] >= '0' && s[n] <= '9'; n++) {
        unsigned digit = (unsigned)(s[n] - '0');
        if (v > (UINT64_MAX - digit) / 10)
            return -1;
        v = v * 10 + digit;
    }
    *value = v;
    return n;
}

/* Parses "<digits><unit>" where unit is one of the table's suffixes;
 * the first suffix in the table may be "" (no unit). */
static int number_with_unit(const char *s, const unit_t *units, size_t num_units, uint64_t limit,
                            uint64_t *out)
{
    if (!s)
        return -1;
    uint64_t v;
    int digits = leading_number(s, &v);
    if (digits <= 0)
        return -1;
    const char *unit = s + digits;
    for (size_t i = 0; i < num_units; i++) {
        if (strcmp(unit, units[i].suffix) != 0)
            continue;
        if (v > limit / units[i].factor)
            return -1;
        *out = v * units[i].factor;
        return 0;
    }
    return -1;
}

int lv_config_parse_duration(const char *s, int64_t *ms)
{
    static const unit_t units[] = {
        {"", 1000}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000},
    };
    uint64_t v;
    if (number_with_unit(s, units, sizeof units / sizeof units[0], INT64_MAX, &v) != 0)
        return -1;
    *ms = (int64_t)v;
    return 0;
}

int lv_config_parse_size(const char *s, uint64_t *bytes)
{
    /* Binary units are what memory is counted in; the decimal ones are
     * accepted because people write them, and mean exactly what they say.
     * Bare k/m/g are not accepted: nobody agrees on what they mean. */
    static const unit_t units[] = {
        {"", 1},
        {"B", 1},
        {"KiB", 1ull << 10},
        {"MiB", 1ull << 20},
        {"GiB", 1ull << 30},
        {"TiB", 1ull << 40},
        {"KB", 1000ull},
        {"MB", 1000ull * 1000},
        {"GB", 1000ull * 1000 * 1000},
        {"TB", 1000ull * 1000 * 1000 * 1000},
    };
    return number_with_unit(s, units, sizeof units / sizeof units[0], UINT64_MAX, bytes);
}

int lv_config_parse_number(const char *s, double *out)
{
    /* Plain decimal only: no sign, no exponent, no hex, no inf/nan. */
    size_t digits = 0, dots = 0;
    for (const char *c = s; *c; c++) {
        if (*c >= '0' && *c <= '9')
            digits++;
        else if (*c == '.' && dots == 0)
            dots++;
        else
            return -1;
    }
    if (digits == 0 || digits > 15 || s[0] == '.' || s[strlen(s) - 1] == '.')
        return -1;
    *out = strtod(s, NULL);
    return 0;
}

/* A port is 1 to 5 digits with a value in 1..65535; nothing else. */
static int parse_port(const char *s, uint16_t *port)
{
    uint64_t v;
    int digits = leading_number(s, &v);
    if (digits <= 0 || digits > 5 || s[digits] != '\0' || v < 1 || v > 65535)
        return -1;
    *port = (uint16_t)v;
    return 0;
}

static void set_ipv4(lv_config_listen_t *out, struct in_addr ip, uint16_t port)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)&out->addr;
    sin->sin_family = AF_INET;
    sin->sin_addr = ip;
    sin->sin_port = htons(port);
    out->addr_len = sizeof *sin;
}

static int parse_bracketed_ipv6(const char *s, lv_config_listen_t *out)
{
    const char *close = strchr(s, ']');
    if (!close || close[1] != ':' || (size_t)(close - s - 1) >= INET6_ADDRSTRLEN)
        return -1;
    char host[INET6_ADDRSTRLEN];
    memcpy(host, s + 1, (size_t)(close - s - 1));
    host[close - s - 1] = '\0';
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->addr;
    uint16_t port;
    if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1 || parse_port(close + 2, &port) != 0)
        return -1;
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    out->addr_len = sizeof *sin6;
    return 0;
}

int lv_config_parse_listen(const char *s, lv_config_listen_t *out)
{
    if (!s)
        return -1;
    memset(&out->addr, 0, sizeof out->addr);
    out->addr_len = 0;
    uint16_t port;
    struct in_addr ip = {.s_addr = htonl(INADDR_LOOPBACK)};
    if (s[0] == '[')
        return parse_bracketed_ipv6(s, out);
    const char *colon = strrchr(s, ':');
    if (!colon) {
        /* A bare port: loopback, so that a forgotten host never exposes
         * the gateway to the network by accident. */
        if (parse_port(s, &port) != 0)
            return -1;
        set_ipv4(out, ip, port);
        return 0;
    }
    if (parse_port(colon + 1, &port) != 0)
        return -1;
    size_t host_len = (size_t)(colon - s);
    char host[INET_ADDRSTRLEN];
    if (host_len == 0 || (host_len == 1 && s[0] == '*')) {
        ip.s_addr = htonl(INADDR_ANY);
    } else if (host_len == 9 && strncmp(s, "localhost", 9) == 0) {
        /* already loopback */
    } else {
        if (host_len >= sizeof host)
            return -1;
        memcpy(host, s, host_len);
        host[host_len] = '\0';
        if (inet_pton(AF_INET, host, &ip) != 1)
            return -1;
    }
    set_ipv4(out, ip, port);
    return 0;
}

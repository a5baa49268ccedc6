/* config_values.c: the value syntaxes of levee.yaml (durations, sizes,
 * listen addresses, RFC 3339 times), declared in config.h.
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
#include <time.h>

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


/* Reads exactly n decimal digits. Stops at the first non-digit, so it never
 * reads past the terminating NUL. */
static bool fixed_digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

static int days_in_month(int year, int month)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    return month == 2 && leap ? 29 : days[month - 1];
}

/* The date part, "YYYY-MM-DD". Returns NULL or what is wrong. */
static const char *parse_date(const char *s, struct tm *tm)
{
    int year, month, day;
    if (!fixed_digits(s, 4, &year) || s[4] != '-' || !fixed_digits(s + 5, 2, &month) ||
        s[7] != '-' || !fixed_digits(s + 8, 2, &day))
        return "expected a date like 2026-11-27 (YYYY-MM-DD)";
    if (year < 1970)
        return "the year must be 1970 or later";
    if (month < 1 || month > 12)
        return "the month must be 01 to 12";
    if (day < 1 || day > days_in_month(year, month))
        return "that day does not exist in that month";
    tm->tm_year = year - 1900;
    tm->tm_mon = month - 1;
    tm->tm_mday = day;
    return NULL;
}

/* The time of day, "HH:MM:SS" with an optional fraction; *end is set past
 * it. Leap seconds (:60) are refused: a schedule never needs one. */
static const char *parse_clock(const char *s, struct tm *tm, int *millis, const char **end)
{
    int hour, minute, second;
    if (!fixed_digits(s, 2, &hour) || s[2] != ':' || !fixed_digits(s + 3, 2, &minute) ||
        s[5] != ':' || !fixed_digits(s + 6, 2, &second))
        return "expected a time of day like 15:00:00 (HH:MM:SS) after the 'T'";
    if (hour > 23)
        return "the hour must be 00 to 23";
    if (minute > 59)
        return "the minutes must be 00 to 59";
    if (second > 59)
        return "the seconds must be 00 to 59";
    tm->tm_hour = hour;
    tm->tm_min = minute;
    tm->tm_sec = second;
    s += 8;
    *millis = 0;
    if (*s == '.') {
        /* Digits past milliseconds are read and dropped. */
        int n = 0;
        for (s++; s[n] >= '0' && s[n] <= '9'; n++)
            if (n < 3)
                *millis = *millis * 10 + (s[n] - '0');
        if (n == 0)
            return "expected digits after the '.'";
        for (int i = n; i < 3; i++)
            *millis *= 10;
        s += n;
    }
    *end = s;
    return NULL;
}

/* "Z" or "+HH:MM" / "-HH:MM", and nothing after it. */
static const char *parse_zone(const char *s, int *offset_minutes)
{
    *offset_minutes = 0;
    if (*s == 'Z' || *s == 'z')
        return s[1] ? "unexpected text after the time zone" : NULL;
    if (*s == '\0')
        return "the time zone is missing: end with Z (UTC) or an offset like +01:00";
    if (*s != '+' && *s != '-')
        return "expected Z or an offset like +01:00 after the time";
    int hours, minutes;
    if (!fixed_digits(s + 1, 2, &hours) || s[3] != ':' || !fixed_digits(s + 4, 2, &minutes))
        return "expected an offset like +01:00 or -05:30";
    if (hours > 23 || minutes > 59)
        return "the offset must be at most 23:59";
    if (s[6])
        return "unexpected text after the time zone";
    *offset_minutes = (hours * 60 + minutes) * (*s == '-' ? -1 : 1);
    return NULL;
}

int lv_config_parse_time(const char *s, int64_t *ms, const char **why)
{
    struct tm tm = {0};
    int millis = 0, offset_minutes = 0;
    const char *rest = NULL, *problem = NULL;
    if (!s)
        problem = "no time given";
    else if (!(problem = parse_date(s, &tm)) && s[10] != 'T' && s[10] != 't')
        problem = "expected 'T' between the date and the time (2026-11-27T15:00:00Z)";
    if (!problem)
        problem = parse_clock(s + 11, &tm, &millis, &rest);
    if (!problem)
        problem = parse_zone(rest, &offset_minutes);
    int64_t v = 0;
    if (!problem) {
        /* Local time minus its offset from UTC is UTC. */
        v = (int64_t)timegm(&tm) * 1000 + millis - (int64_t)offset_minutes * 60000;
        if (v < 0)
            problem = "the time must not be before 1970-01-01T00:00:00Z";
    }
    if (problem) {
        if (why)
            *why = problem;
        return -1;
    }
    *ms = v;
    return 0;
}

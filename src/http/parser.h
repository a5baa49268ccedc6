/* parser.h: a strict, zero-copy, resumable HTTP/1.1 message-head parser, for
 * requests from clients and responses from origins, plus an in-place
 * chunked-body decoder.
 *
 * Ownership: the parser never allocates and never copies. Every lv_slice_t it
 * fills in points into the buffer the caller passed (or, for a few empty or
 * implied values, at a static string), so the results are valid exactly as
 * long as that buffer is unchanged. The caller owns the request/response
 * structs; the parser only writes to them. On error their contents are
 * unspecified apart from *status.
 *
 * Strictness: the parser follows RFC 9112 where it says "MUST reject", and
 * also rejects what it only "MAY" reject when accepting it has been a source
 * of request smuggling: obs-fold, bare CR, bare LF line endings (CRLF is
 * required), control characters, whitespace before the colon, conflicting or
 * malformed Content-Length / Transfer-Encoding. docs/http-parser.md lists
 * every rule, and every difference from nodejs' http_parser. */
#ifndef LV_HTTP_PARSER_H
#define LV_HTTP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/slice.h"

#define LV_HTTP_MAX_HEADERS 100

/* More leading empty lines than this before a request line is an error (400).
 * RFC 9112 2.2 asks servers to skip at least one; the cap keeps a stream of
 * CRLFs from costing more than a few bytes of work per call. */
#define LV_HTTP_MAX_LEADING_CRLF 8

/* Chunked decoding limits: a chunk-size line (with extensions and CRLF) and
 * the whole trailer section (with the final CRLF). */
#define LV_HTTP_MAX_CHUNK_LINE 4096
#define LV_HTTP_MAX_TRAILER_BYTES 16384

enum { LV_HTTP_INCOMPLETE = -2, LV_HTTP_ERROR = -1 };

/* One header field as received; value is trimmed of leading and trailing
 * OWS (SP / HTAB). */
typedef struct {
    lv_slice_t name, value;
} lv_http_header_t;

typedef struct {
    lv_slice_t method, target;      /* request-target as sent */
    lv_slice_t path, query;         /* target split at the first '?'; query excludes the '?'
                                       and is empty if none. For absolute-form targets they come
                                       from the URL (path is "/" when the URL has none) */
    int minor_version;              /* 0 or 1 */
    lv_http_header_t headers[LV_HTTP_MAX_HEADERS];
    size_t num_headers;
    int64_t content_length;         /* -1 when absent */
    bool chunked;                   /* Transfer-Encoding: chunked */
    bool keep_alive;                /* 1.1: unless Connection: close; 1.0: only with keep-alive */
    bool expect_continue;           /* Expect: 100-continue (HTTP/1.1 only) */
    lv_slice_t host;                /* Host header (or absolute-form authority); empty if none */
} lv_http_request_t;

/* Parses a request head (optional leading CRLFs, request line, header fields,
 * empty line) from buf[0..len).
 *
 * prev_len: how many bytes of this same buffer an earlier call already saw and
 * reported LV_HTTP_INCOMPLETE (0 the first time). With it, a client that sends
 * a byte at a time costs O(n) in total. The result never depends on prev_len:
 * a given buffer always gets the same answer, however it was split.
 *
 * max_header_bytes: the largest head accepted (leading CRLFs included); 0 means
 * no limit. Once len reaches it without a complete head the call fails: 414 if
 * the request line alone does not fit, else 431.
 *
 * Returns the head's length when complete (the body or the next pipelined
 * request starts there), LV_HTTP_INCOMPLETE when more bytes are needed, or
 * LV_HTTP_ERROR with *status set to the 4xx/5xx to answer before closing the
 * connection. A syntax error is reported once the head is complete, or as soon
 * as the buffer holds a byte that can never appear in a valid head (a control
 * character, a bare CR or LF) or reaches the size limit. */
ssize_t lv_http_parse_request(const char *buf, size_t len, size_t prev_len,
                              size_t max_header_bytes, lv_http_request_t *req, int *status);

typedef struct {
    int minor_version, status;      /* status is 100..599 */
    lv_slice_t reason;              /* may be empty */
    lv_http_header_t headers[LV_HTTP_MAX_HEADERS];
    size_t num_headers;
    int64_t content_length;         /* -1 when absent */
    bool chunked;
    bool keep_alive;
} lv_http_response_t;

/* Same contract as lv_http_parse_request for a response head from an origin.
 * There is no status: any error means "bad gateway". */
ssize_t lv_http_parse_response(const char *buf, size_t len, size_t prev_len,
                               size_t max_header_bytes, lv_http_response_t *res);

typedef enum {
    LV_HTTP_BODY_NONE,
    LV_HTTP_BODY_LENGTH,
    LV_HTTP_BODY_CHUNKED,
    LV_HTTP_BODY_UNTIL_CLOSE
} lv_http_body_kind_t;

/* How a response's body is delimited (RFC 9112 6.3): none for 1xx, 204, 304
 * and replies to HEAD; then chunked, Content-Length, or read until close. */
lv_http_body_kind_t lv_http_response_body_kind(const lv_http_response_t *res, bool request_was_head);

/* Chunked decoder state. Private; zero-initialise it to start a body, and
 * again for each new body. */
typedef struct {
    uint64_t remaining;     /* bytes of chunk data still to come */
    uint32_t line_bytes;    /* bytes of the current chunk-size line so far */
    uint32_t trailer_bytes; /* bytes of the trailer section so far */
    uint8_t state;
} lv_http_chunked_t;

/* Decodes a chunked body in place. On entry buf[0..*len) holds raw bytes that
 * follow what the previous call consumed. On return buf[0..*len) holds the
 * decoded data produced by this call. Returns LV_HTTP_INCOMPLETE if the body
 * has not ended (everything given was consumed), LV_HTTP_ERROR on bad framing
 * (sticky: later calls fail too), or, once the last chunk and the trailers are
 * complete, the number of bytes that followed the body (the next pipelined
 * message), which now sit at buf + *len. Trailer fields are checked with the
 * same strictness as header fields, then dropped. */
ssize_t lv_http_chunked_decode(lv_http_chunked_t *d, char *buf, size_t *len);

/* The first header named name (ASCII case-insensitive), or NULL. */
const lv_http_header_t *lv_http_find_header(const lv_http_header_t *h, size_t n, lv_slice_t name);

/* True if the comma-separated list value (e.g. Connection) has an element
 * equal to token, ASCII case-insensitively, ignoring OWS around elements. */
bool lv_http_list_has_token(lv_slice_t value, lv_slice_t token);

/* The standard reason phrase for status ("Not Found"), or "Unknown". The
 * string is static. */
const char *lv_http_status_reason(int status);

#endif

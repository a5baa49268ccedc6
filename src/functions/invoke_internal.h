/* invoke_internal.h (private to functions/invoke_api.c and its tests): the
 * pure pieces of the Invoke API, each a function of its input alone, so the
 * tests can check them without a pool or a socket. */
#ifndef LV_FUNCTIONS_INVOKE_INTERNAL_H
#define LV_FUNCTIONS_INVOKE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"
#include "core/slice.h"

/* The longest FunctionName Lambda accepts (a full ARN with a qualifier). */
#define LV_INVOKE_MAX_FUNCTION_NAME 170
#define LV_INVOKE_MAX_QUALIFIER 128

/* Where a request path points under /2015-03-31/functions/. */
typedef enum {
    LV_INVOKE_NOT_OURS,    /* not under the prefix: another service's */
    LV_INVOKE_INVOCATIONS, /* /2015-03-31/functions/{name}/invocations; *name set (still encoded) */
    LV_INVOKE_OTHER,       /* under the prefix, but no operation levee has */
} lv_invoke_route_t;

lv_invoke_route_t lv_invoke_route(lv_slice_t path, lv_slice_t *encoded_name);

/* Percent-decodes in into out (cap bytes). Returns the decoded length, or
 * -1 for a malformed escape, a decoded NUL, or more than cap bytes. '+' is
 * kept as is (path segments are not form-encoded). */
long lv_invoke_percent_decode(lv_slice_t in, char *out, size_t cap);

/* Splits a decoded FunctionName into the function's name and qualifier
 * (empty when there is none). Accepted forms, as Lambda's pattern:
 *   name | name:qualifier | 123456789012:function:name[:qualifier] |
 *   arn:aws[-partition]:lambda:region:123456789012:function:name[:qualifier]
 * with name [A-Za-z0-9_.-]{1,64} and qualifier $LATEST or [A-Za-z0-9_-]+.
 * Returns 0, or -1 when the text does not match. Slices point into s. */
int lv_invoke_parse_function_name(lv_slice_t s, lv_slice_t *name, lv_slice_t *qualifier);

/* True if q is a valid Qualifier query value: [A-Za-z0-9$_-]{1,128}. */
bool lv_invoke_valid_qualifier(lv_slice_t q);

/* Finds name=value in a query string (no '?'); *raw is the value still
 * percent-encoded. The first occurrence wins. */
bool lv_invoke_query_param(lv_slice_t query, const char *name, lv_slice_t *raw);


#endif

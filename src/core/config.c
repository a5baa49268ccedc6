/* config.c: loads levee.yaml into lv_config_t (see config.h).
 *
 * Three stages:
 *   1. libyaml's event parser builds a small tree of nodes, each carrying its
 *      position. Anchors, aliases and tags are refused here (an alias would
 *      make a value's position lie about where it came from).
 *   2. The tree is walked against the schema. Every section is a table of
 *      {key, handler}; walk_section() looks keys up in the table, reports
 *      unknown and duplicate keys, and calls one small handler per key. Adding
 *      a key is one table entry plus one handler.
 *   3. Cross-references are resolved once everything is read: route origins,
 *      functions and capture streams, and a consumer's stream and function
 *      (the sections they name may come later in the file), defaults that
 *      depend on other keys (dead-letter files live in data_dir), duplicate
 *      routes and names, default listen address, and listeners (public,
 *      admin, api) that share an address.
 *
 * Problems never stop the walk. Each is recorded with its position and the
 * whole list is sorted by position before it is handed to the caller, so
 * messages come out in file order whichever stage found them. A handler that
 * meets a node already reported (an alias) stays silent, which keeps one
 * mistake from producing a cascade of messages. */
#include "core/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/slice.h"

/* Deeper than any real configuration; stops pathological input early. */
#define MAX_DEPTH 64
/* A configuration is a few kilobytes; this only guards against mistakes
 * like pointing levee at a log file. */
#define MAX_FILE_BYTES (16u << 20)
/* At most this many fields per schema section (the walker's seen-array). */
#define MAX_FIELDS 16
/* How much of a value is quoted back in a message. */
#define SHOW_CHARS 60

/* ======================================================================
 * The tree
 * ====================================================================== */

typedef enum {
    NODE_SCALAR,
    NODE_MAP,
    NODE_LIST,
    NODE_BROKEN, /* an alias: already reported, and ignored from then on */
} node_kind_t;

typedef struct node node_t;
struct node {
    node_kind_t kind;
    lv_config_pos_t pos;
    bool plain;       /* unquoted scalar; only those can spell null */
    char *text;       /* scalar bytes, NUL-terminated, may hold NULs */
    size_t len;
    node_t **kids;    /* list items, or key, value, key, value, ... */
    size_t count;
};

static void node_free(node_t *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->count; i++)
        node_free(n->kids[i]);
    free(n->kids);
    free(n->text);
    free(n);
}

/* Makes room for element number `count` in an array that grows by doubling:
 * capacity is implied by count (the next power of two), so no array here
 * needs a capacity field. */
static void *grow(void *array, size_t count, size_t elem_size)
{
    if (count & (count - 1)) /* not 0, 1, 2, 4, 8, ...: there is room */
        return array;
    return lv_realloc(array, (count ? count * 2 : 1) * elem_size);
}

static void node_push(node_t *n, node_t *kid)
{
    n->kids = grow(n->kids, n->count, sizeof *n->kids);
    n->kids[n->count++] = kid;
}

/* `key:` with nothing after it, `~` or `null` (unquoted). A null stands for
 * an empty mapping or list where one is expected, so `respond:` alone means
 * "respond with the defaults". */
static bool is_null(const node_t *n)
{
    if (n->kind != NODE_SCALAR || !n->plain)
        return false;
    return n->len == 0 || strcmp(n->text, "~") == 0 || strcmp(n->text, "null") == 0 ||
           strcmp(n->text, "Null") == 0 || strcmp(n->text, "NULL") == 0;
}

static const char *describe(const node_t *n)
{
    switch (n->kind) {
    case NODE_MAP: return "a mapping";
    case NODE_LIST: return "a list";
    default: return "a single value";
    }
}

/* ======================================================================
 * Problems
 * ====================================================================== */

typedef struct {
    lv_config_pos_t pos;
    size_t seq; /* order of discovery, to keep the sort stable */
    char *msg;
} problem_t;

/* A name that refers to another section (a route's `origin:`, `function:`
 * or capture stream; a consumer's `stream:` or `function:`), resolved after
 * the whole file is read, since the section it names may come later.
 * `owner` is the index of the route or consumer that holds the name. */
typedef struct {
    size_t owner;
    char *ref;
    lv_config_pos_t pos;
} target_ref_t;

typedef struct {
    target_ref_t *items;
    size_t count;
} ref_list_t;

/* Where a consumer's name came from, for the duplicate-name check that runs
 * once every consumer is read. */
typedef struct {
    lv_config_pos_t pos; /* of `name:`'s value, or of the consumer when defaulted */
    bool given;          /* `name:` was written */
} consumer_name_t;

typedef struct {
    const char *file;   /* name used in messages */
    const char *dir;    /* relative paths resolve against this */
    lv_config_t *cfg;
    problem_t *problems;
    size_t num_problems;
    ref_list_t origin_refs;        /* routes' origin: */
    ref_list_t function_refs;      /* routes' function: */
    ref_list_t capture_refs;       /* routes' capture stream */
    ref_list_t consumer_streams;   /* consumers' stream: */
    ref_list_t consumer_functions; /* consumers' function: */
    consumer_name_t *consumer_names; /* one per cfg->consumers entry */
    /* Small ring of sanitized copies of values quoted in messages; a
     * message quotes at most a few values, so four slots suffice. */
    char shown[4][SHOW_CHARS * 4 + 8];
    unsigned next_shown;
} parser_t;

/* Remembers that `owner` names `v`'s text, to be looked up in stage 3. */
static void add_ref(ref_list_t *list, size_t owner, const node_t *v)
{
    list->items = grow(list->items, list->count, sizeof *list->items);
    list->items[list->count++] = (target_ref_t){owner, lv_strdup(v->text), v->pos};
}

static void free_refs(ref_list_t *list)
{
    for (size_t i = 0; i < list->count; i++)
        free(list->items[i].ref);
    free(list->items);
    *list = (ref_list_t){0};
}

static char *vformat(const char *fmt, va_list ap)
{
    lv_buf_t b = LV_BUF_INIT;
    lv_buf_vprintf(&b, fmt, ap);
    char *s = lv_memdup0(lv_buf_data(&b), lv_buf_len(&b));
    lv_buf_free(&b);
    return s;
}

static void report(parser_t *p, lv_config_pos_t pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void report(parser_t *p, lv_config_pos_t pos, const char *fmt, ...)
{
    p->problems = grow(p->problems, p->num_problems, sizeof *p->problems);
    va_list ap;
    va_start(ap, fmt);
    p->problems[p->num_problems] = (problem_t){pos, p->num_problems, vformat(fmt, ap)};
    va_end(ap);
    p->num_problems++;
}

static int problem_order(const void *a, const void *b)
{
    const problem_t *x = a, *y = b;
    if (x->pos.line != y->pos.line)
        return x->pos.line < y->pos.line ? -1 : 1;
    if (x->pos.col != y->pos.col)
        return x->pos.col < y->pos.col ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Sorts the problems into file order and hands them to errs. */
static void flush_problems(parser_t *p, lv_config_errors_t *errs)
{
    if (p->num_problems)
        qsort(p->problems, p->num_problems, sizeof *p->problems, problem_order);
    for (size_t i = 0; i < p->num_problems; i++) {
        lv_config_error(errs, p->file, p->problems[i].pos, "%s", p->problems[i].msg);
        free(p->problems[i].msg);
    }
    free(p->problems);
    p->problems = NULL;
    p->num_problems = 0;
}

/* A printable, bounded copy of bytes for quoting in a message: control and
 * non-ASCII bytes become \xNN, long values are cut with "...". Valid until
 * three more calls. */
static const char *show_bytes(parser_t *p, const char *s, size_t len)
{
    char *out = p->shown[p->next_shown++ % 4];
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (i == SHOW_CHARS) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f)
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, 5, "\\x%02X", c);
    }
    out[o] = '\0';
    return out;
}

static const char *show(parser_t *p, const node_t *n)
{
    return show_bytes(p, n->text ? n->text : "", n->len);
}

static const char *show_str(parser_t *p, const char *s)
{
    return show_bytes(p, s, strlen(s));
}

/* ======================================================================
 * Stage 1: YAML events to tree
 * ====================================================================== */

typedef struct {
    yaml_parser_t yp;
    parser_t *p;
    const char *input;
    size_t len;
    bool failed; /* a syntax error: the tree is incomplete */
} reader_t;

static int clamp_int(size_t v)
{
    return v >= INT_MAX ? INT_MAX : (int)v;
}

static lv_config_pos_t mark_pos(yaml_mark_t m)
{
    return (lv_config_pos_t){clamp_int(m.line + 1), clamp_int(m.column + 1)};
}

/* Reader errors (bad encoding) come with a byte offset instead of a mark. */
static lv_config_pos_t offset_pos(const char *input, size_t len, size_t offset)
{
    lv_config_pos_t pos = {1, 1};
    for (size_t i = 0; i < offset && i < len; i++) {
        if (input[i] == '\n') {
            pos.line = clamp_int((size_t)pos.line + 1);
            pos.col = 1;
        } else {
            pos.col = clamp_int((size_t)pos.col + 1);
        }
    }
    return pos;
}

static void report_syntax_error(reader_t *r)
{
    yaml_parser_t *yp = &r->yp;
    const char *problem = yp->problem ? yp->problem : "invalid YAML";
    if (yp->error == YAML_READER_ERROR) {
        lv_config_pos_t pos = offset_pos(r->input, r->len, yp->problem_offset);
        if (yp->problem_value != -1)
            report(r->p, pos, "syntax error: %s (0x%X)", problem, (unsigned)yp->problem_value);
        else
            report(r->p, pos, "syntax error: %s", problem);
        return;
    }
    lv_config_pos_t pos = mark_pos(yp->problem_mark);
    if (yp->context) {
        lv_config_pos_t at = mark_pos(yp->context_mark);
        report(r->p, pos, "syntax error: %s (%s at %d:%d)", problem, yp->context, at.line, at.col);
    } else {
        report(r->p, pos, "syntax error: %s", problem);
    }
}

static bool next_event(reader_t *r, yaml_event_t *ev)
{
    if (yaml_parser_parse(&r->yp, ev))
        return true;
    report_syntax_error(r);
    r->failed = true;
    return false;
}

static void refuse_anchor_and_tag(reader_t *r, lv_config_pos_t pos, const yaml_char_t *anchor,
                                  const yaml_char_t *tag)
{
    if (anchor)
        report(r->p, pos, "YAML anchors (&%s) are not supported; repeat the value instead",
               show_str(r->p, (const char *)anchor));
    if (tag)
        report(r->p, pos,
               "YAML tags (%s) are not supported; quote the value if it must be a string",
               show_str(r->p, (const char *)tag));
}

static node_t *build_node(reader_t *r, yaml_event_t *ev, int depth);

/* Reads the items of a mapping or list up to its end event. */
static node_t *build_children(reader_t *r, node_t *n, yaml_event_type_t end, int depth)
{
    for (;;) {
        yaml_event_t ev;
        if (!next_event(r, &ev))
            break;
        if (ev.type == end) {
            yaml_event_delete(&ev);
            return n;
        }
        node_t *kid = build_node(r, &ev, depth + 1);
        if (!kid)
            break;
        node_push(n, kid);
    }
    node_free(n);
    return NULL;
}

/* Builds the node that starts with *ev (which this consumes). Returns NULL
 * after a fatal problem (syntax error, too deep). */
static node_t *build_node(reader_t *r, yaml_event_t *ev, int depth)
{
    node_t *n = lv_calloc(1, sizeof *n);
    n->pos = mark_pos(ev->start_mark);
    yaml_event_type_t end = YAML_NO_EVENT;
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        refuse_anchor_and_tag(r, n->pos, ev->data.scalar.anchor, ev->data.scalar.tag);
        n->kind = NODE_SCALAR;
        n->text = lv_memdup0(ev->data.scalar.value, ev->data.scalar.length);
        n->len = ev->data.scalar.length;
        n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        break;
    case YAML_ALIAS_EVENT:
        report(r->p, n->pos, "YAML aliases (*%s) are not supported; repeat the value instead",
               show_str(r->p, (const char *)ev->data.alias.anchor));
        n->kind = NODE_BROKEN;
        break;
    case YAML_SEQUENCE_START_EVENT:
        refuse_anchor_and_tag(r, n->pos, ev->data.sequence_start.anchor,
                              ev->data.sequence_start.tag);
        n->kind = NODE_LIST;
        end = YAML_SEQUENCE_END_EVENT;
        break;
    case YAML_MAPPING_START_EVENT:
        refuse_anchor_and_tag(r, n->pos, ev->data.mapping_start.anchor,
                              ev->data.mapping_start.tag);
        n->kind = NODE_MAP;
        end = YAML_MAPPING_END_EVENT;
        break;
    default: /* libyaml never sends anything else here */
        report(r->p, n->pos, "syntax error: unexpected YAML event");
        r->failed = true;
        break;
    }
    yaml_event_delete(ev);
    if (r->failed) {
        node_free(n);
        return NULL;
    }
    if (end == YAML_NO_EVENT)
        return n;
    if (depth >= MAX_DEPTH) {
        report(r->p, n->pos, "nested more than %d levels deep", MAX_DEPTH);
        r->failed = true;
        node_free(n);
        return NULL;
    }
    return build_children(r, n, end, depth);
}

/* Expects an event of the given type and drops it. */
static bool skip_event(reader_t *r, yaml_event_type_t type)
{
    yaml_event_t ev;
    if (!next_event(r, &ev))
        return false;
    bool ok = ev.type == type;
    if (!ok) { /* libyaml guarantees the order; never trust a tree built otherwise */
        report(r->p, mark_pos(ev.start_mark), "syntax error: unexpected YAML event");
        r->failed = true;
    }
    yaml_event_delete(&ev);
    return ok;
}

static node_t *empty_map(void)
{
    node_t *n = lv_calloc(1, sizeof *n);
    n->kind = NODE_MAP;
    n->pos = (lv_config_pos_t){1, 1};
    return n;
}

/* The first document of the stream (an empty stream is an empty mapping).
 * Returns NULL after a syntax error, which is already reported. */
static node_t *read_document(reader_t *r)
{
    yaml_event_t ev;
    if (!skip_event(r, YAML_STREAM_START_EVENT) || !next_event(r, &ev))
        return NULL;
    if (ev.type == YAML_STREAM_END_EVENT) {
        yaml_event_delete(&ev);
        return empty_map();
    }
    yaml_event_delete(&ev); /* DOCUMENT-START */
    if (!next_event(r, &ev))
        return NULL;
    node_t *root = build_node(r, &ev, 0);
    if (!root || !skip_event(r, YAML_DOCUMENT_END_EVENT) || !next_event(r, &ev)) {
        node_free(root);
        return NULL;
    }
    if (ev.type == YAML_DOCUMENT_START_EVENT)
        report(r->p, mark_pos(ev.start_mark),
               "only one YAML document is allowed; remove this '---' and what follows");
    yaml_event_delete(&ev);
    return root;
}

static node_t *parse_yaml(parser_t *p, const char *yaml, size_t len)
{
    reader_t r = {.p = p, .input = yaml, .len = len};
    if (!yaml_parser_initialize(&r.yp))
        abort(); /* only fails when out of memory */
    yaml_parser_set_input_string(&r.yp, (const unsigned char *)yaml, len);
    node_t *root = read_document(&r);
    yaml_parser_delete(&r.yp);
    if (r.failed) {
        node_free(root);
        return NULL;
    }
    return root;
}

/* ======================================================================
 * Stage 2: schema walking
 * ====================================================================== */

/* A handler parses one key's value into obj (the section's struct). `key`
 * is the key as spelled in the schema, for messages. */
typedef void (*field_fn)(parser_t *p, const char *key, const node_t *value, void *obj);

typedef struct {
    const char *key;
    field_fn parse;
} field_t;

typedef struct {
    const char *where; /* "in route", for "unknown key ... in route" */
    const field_t *fields;
    size_t count;
} section_t;

#define SECTION(where, table) {(where), (table), sizeof(table) / sizeof((table)[0])}

/* What walk_section saw for each field of the table (NULLs when absent). */
typedef struct {
    const node_t *key[MAX_FIELDS];
    const node_t *value[MAX_FIELDS];
} seen_t;

/* Where a key sits in its section's table. */
static size_t field_index(const section_t *sec, const char *key)
{
    for (size_t i = 0; i < sec->count; i++)
        if (strcmp(sec->fields[i].key, key) == 0)
            return i;
    abort(); /* a typo in this file, not in the user's */
}

/* The key and value nodes walk_section saw for a key (NULL if absent). */
static const node_t *seen_key(const section_t *sec, const seen_t *seen, const char *key)
{
    return seen->key[field_index(sec, key)];
}

static const node_t *seen_value(const section_t *sec, const seen_t *seen, const char *key)
{
    return seen->value[field_index(sec, key)];
}

/* Checks that v is a mapping (or null, meaning empty). */
static bool expect_map(parser_t *p, const char *name, const node_t *v)
{
    if (v->kind == NODE_MAP || is_null(v))
        return true;
    if (v->kind != NODE_BROKEN)
        report(p, v->pos, "'%s' must be a mapping, not %s", name, describe(v));
    return false;
}

/* Checks that v is a list (or null, meaning empty). */
static bool expect_list(parser_t *p, const char *name, const node_t *v)
{
    if (v->kind == NODE_LIST || is_null(v))
        return true;
    if (v->kind != NODE_BROKEN)
        report(p, v->pos, "'%s' must be a list, not %s", name, describe(v));
    return false;
}

/* Checks a mapping key: it must be a plain value to be looked up. */
static bool usable_key(parser_t *p, const node_t *key)
{
    if (key->kind == NODE_SCALAR)
        return true;
    if (key->kind != NODE_BROKEN)
        report(p, key->pos, "a key must be a single value, not %s", describe(key));
    return false;
}

static void report_unknown_key(parser_t *p, const node_t *key, const section_t *sec)
{
    lv_buf_t list = LV_BUF_INIT;
    for (size_t i = 0; i < sec->count; i++)
        lv_buf_printf(&list, "%s%s", i ? ", " : "", sec->fields[i].key);
    lv_buf_append(&list, "", 1);
    report(p, key->pos, "unknown key '%s' %s; expected one of: %s", show(p, key), sec->where,
           lv_buf_data(&list));
    lv_buf_free(&list);
}

/* Walks mapping v against the section's table, calling each handler in file
 * order. Fills *seen when given. Returns false if v is not a mapping. */
static bool walk_section(parser_t *p, const char *name, const node_t *v, const section_t *sec,
                         void *obj, seen_t *seen)
{
    seen_t local;
    if (sec->count > MAX_FIELDS)
        abort(); /* raise MAX_FIELDS */
    if (!seen)
        seen = &local;
    memset(seen, 0, sizeof *seen);
    if (!expect_map(p, name, v))
        return false;
    for (size_t i = 0; i + 1 < v->count; i += 2) {
        const node_t *key = v->kids[i], *value = v->kids[i + 1];
        if (!usable_key(p, key))
            continue;
        lv_slice_t spelled = lv_slice(key->text, key->len);
        size_t f = 0;
        while (f < sec->count && !lv_slice_eq_cstr(spelled, sec->fields[f].key))
            f++;
        if (f == sec->count) {
            report_unknown_key(p, key, sec);
        } else if (seen->key[f]) {
            report(p, key->pos, "duplicate key '%s' (first at %d:%d)", sec->fields[f].key,
                   seen->key[f]->pos.line, seen->key[f]->pos.col);
        } else {
            seen->key[f] = key;
            seen->value[f] = value;
            sec->fields[f].parse(p, sec->fields[f].key, value, obj);
        }
    }
    return true;
}

/* For mappings whose keys are names chosen by the user (origins, headers):
 * marks every key that repeats an earlier one and reports it. Sorting keeps
 * this O(n log n) however many keys there are. Returns a flag per pair,
 * true for the ones to skip. */
typedef struct {
    const node_t *key;
    size_t pair;
} key_ref_t;

static int key_ref_order(const void *a, const void *b)
{
    const key_ref_t *x = a, *y = b;
    size_t n = x->key->len < y->key->len ? x->key->len : y->key->len;
    int c = memcmp(x->key->text, y->key->text, n);
    if (c)
        return c;
    if (x->key->len != y->key->len)
        return x->key->len < y->key->len ? -1 : 1;
    return x->pair < y->pair ? -1 : x->pair > y->pair;
}

static bool *find_repeated_keys(parser_t *p, const node_t *map)
{
    size_t pairs = map->count / 2, n = 0;
    bool *skip = lv_calloc(pairs ? pairs : 1, sizeof *skip);
    key_ref_t *refs = lv_calloc(pairs ? pairs : 1, sizeof *refs);
    for (size_t i = 0; i < pairs; i++) {
        if (usable_key(p, map->kids[2 * i]))
            refs[n++] = (key_ref_t){map->kids[2 * i], i};
        else
            skip[i] = true;
    }
    qsort(refs, n, sizeof *refs, key_ref_order);
    for (size_t i = 1, first = 0; i < n; i++) {
        const node_t *a = refs[first].key, *b = refs[i].key;
        if (a->len != b->len || memcmp(a->text, b->text, a->len) != 0) {
            first = i;
            continue;
        }
        report(p, b->pos, "duplicate key '%s' (first at %d:%d)", show(p, b), a->pos.line,
               a->pos.col);
        skip[refs[i].pair] = true;
    }
    free(refs);
    return skip;
}

/* ----- scalar getters: each reports its own problem and returns false ----- */

/* A non-null single value without NUL bytes. */
static bool get_text(parser_t *p, const char *key, const node_t *v, const char **out)
{
    if (v->kind == NODE_BROKEN)
        return false;
    if (v->kind != NODE_SCALAR) {
        report(p, v->pos, "'%s' must be a single value, not %s", key, describe(v));
        return false;
    }
    if (is_null(v)) {
        report(p, v->pos, "'%s' has no value", key);
        return false;
    }
    if (strlen(v->text) != v->len) {
        report(p, v->pos, "'%s' must not contain NUL characters", key);
        return false;
    }
    *out = v->text;
    return true;
}

/* Digits only, value at most max (which must stay far below LLONG_MAX / 10,
 * as every limit in the schema does). */
static bool parse_whole(const char *s, long long max, long long *out)
{
    long long v = 0;
    if (!*s)
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        v = v * 10 + (*s - '0');
        if (v > max)
            return false;
    }
    *out = v;
    return true;
}

static bool get_int(parser_t *p, const char *key, const node_t *v, long long min, long long max,
                    long long *out)
{
    const char *s;
    if (!get_text(p, key, v, &s))
        return false;
    if (parse_whole(s, max, out) && *out >= min)
        return true;
    report(p, v->pos, "'%s' must be a whole number from %lld to %lld, got '%s'", key, min, max,
           show(p, v));
    return false;
}

static bool get_bool(parser_t *p, const char *key, const node_t *v, bool *out)
{
    const char *s;
    if (!get_text(p, key, v, &s))
        return false;
    if (strcmp(s, "true") == 0 || strcmp(s, "false") == 0) {
        *out = s[0] == 't';
        return true;
    }
    report(p, v->pos, "'%s' must be true or false, got '%s'", key, show(p, v));
    return false;
}

/* A duration of at least min_ms milliseconds. */
static bool get_duration(parser_t *p, const char *key, const node_t *v, int64_t min_ms,
                         int64_t *out)
{
    const char *s;
    int64_t ms;
    if (!get_text(p, key, v, &s))
        return false;
    if (lv_config_parse_duration(s, &ms) != 0) {
        report(p, v->pos, "'%s': invalid duration '%s' (use e.g. 250ms, 10s, 5m, 2h, 1d)", key,
               show(p, v));
        return false;
    }
    if (ms < min_ms) {
        if (min_ms == 1)
            report(p, v->pos, "'%s' must be greater than 0", key);
        else
            report(p, v->pos, "'%s' must be at least %lldms", key, (long long)min_ms);
        return false;
    }
    *out = ms;
    return true;
}

/* A duration from min_ms to max_ms; `range` says so in the units people
 * write ("from 1h to 8760h"), for the message. */
static bool get_duration_range(parser_t *p, const char *key, const node_t *v, int64_t min_ms,
                               int64_t max_ms, const char *range, int64_t *out)
{
    int64_t ms;
    if (!get_duration(p, key, v, 0, &ms))
        return false;
    if (ms < min_ms || ms > max_ms) {
        report(p, v->pos, "'%s' must be %s, got '%s'", key, range, show(p, v));
        return false;
    }
    *out = ms;
    return true;
}

/* Any well-formed size, 0 included. */
static bool get_size_value(parser_t *p, const char *key, const node_t *v, uint64_t *out)
{
    const char *s;
    if (!get_text(p, key, v, &s))
        return false;
    if (lv_config_parse_size(s, out) == 0)
        return true;
    report(p, v->pos, "'%s': invalid size '%s' (use e.g. 512, 64KiB, 256MiB, 1GiB, 10MB)", key,
           show(p, v));
    return false;
}

/* A size from min to max bytes; `range` states them as for durations. */
static bool get_size_range(parser_t *p, const char *key, const node_t *v, uint64_t min,
                           uint64_t max, const char *range, uint64_t *out)
{
    uint64_t bytes;
    if (!get_size_value(p, key, v, &bytes))
        return false;
    if (bytes < min || bytes > max) {
        report(p, v->pos, "'%s' must be %s, got '%s'", key, range, show(p, v));
        return false;
    }
    *out = bytes;
    return true;
}

/* A size of at least one byte. */
static bool get_size(parser_t *p, const char *key, const node_t *v, uint64_t *out)
{
    uint64_t bytes;
    if (!get_size_value(p, key, v, &bytes))
        return false;
    if (bytes == 0) {
        report(p, v->pos, "'%s' must be greater than 0", key);
        return false;
    }
    *out = bytes;
    return true;
}

/* A decimal number (rates), greater than 0. */
static bool get_number(parser_t *p, const char *key, const node_t *v, double *out)
{
    const char *s;
    double d;
    if (!get_text(p, key, v, &s))
        return false;
    if (lv_config_parse_number(s, &d) != 0) {
        report(p, v->pos, "'%s': invalid number '%s' (use e.g. 2000 or 0.5)", key, show(p, v));
        return false;
    }
    if (d <= 0) {
        report(p, v->pos, "'%s' must be greater than 0", key);
        return false;
    }
    *out = d;
    return true;
}

/* A listen address; `text` and `pos` are filled too. */
static bool get_listen(parser_t *p, const char *key, const node_t *v, lv_config_listen_t *out)
{
    const char *s;
    if (!get_text(p, key, v, &s))
        return false;
    if (lv_config_parse_listen(s, out) != 0) {
        report(p, v->pos,
               "invalid listen address '%s' (use e.g. 127.0.0.1:8080, [::1]:8080, *:8080 or 8080)",
               show(p, v));
        return false;
    }
    out->text = lv_strdup(s);
    out->pos = v->pos;
    return true;
}

/* A path as stored: relative paths join the config's directory (which is
 * "." for lv_config_load_string, leaving them relative to the working
 * directory). */
static char *resolve_path(const char *dir, const char *path)
{
    if (path[0] == '/' || strcmp(dir, ".") == 0)
        return lv_strdup(path);
    while (path[0] == '.' && path[1] == '/')
        path += 2 + strspn(path + 2, "/");
    if (path[0] == '\0' || strcmp(path, ".") == 0)
        return lv_strdup(dir); /* "." and "./" name the directory itself */
    lv_buf_t b = LV_BUF_INIT;
    lv_buf_printf(&b, "%s/%s", dir, path);
    char *s = lv_memdup0(lv_buf_data(&b), lv_buf_len(&b));
    lv_buf_free(&b);
    return s;
}

/* A non-empty path, resolved; replaces *out. Existence is not checked: the
 * paths kept this way (directories, files levee creates) are checked or
 * created by the module that uses them. */
static bool get_path(parser_t *p, const char *key, const node_t *v, char **out)
{
    const char *s;
    if (!get_text(p, key, v, &s))
        return false;
    if (!*s) {
        report(p, v->pos, "'%s' must not be empty", key);
        return false;
    }
    free(*out);
    *out = resolve_path(p->dir, s);
    return true;
}

/* A duration from min_ms to max_ms; max_ms is always a whole number of
 * seconds here, which is how the message states it. */
static bool get_duration_in(parser_t *p, const char *key, const node_t *v, int64_t min_ms,
                            int64_t max_ms, int64_t *out)
{
    int64_t ms;
    if (!get_duration(p, key, v, min_ms, &ms))
        return false;
    if (ms > max_ms) {
        report(p, v->pos, "'%s' must be at most %llds", key, (long long)(max_ms / 1000));
        return false;
    }
    *out = ms;
    return true;
}

/* ----- character classes ----- */

static bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_token(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!is_tchar((unsigned char)*s))
            return false;
    return true;
}

/* Printable ASCII only: no space, control or non-ASCII byte. */
static bool is_visible_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
            return false;
    return true;
}

static bool has_control(const char *s, bool allow_tab)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c < 0x20 && !(allow_tab && c == '\t')) || c == 0x7f)
            return true;
    }
    return false;
}

/* ======================================================================
 * Top-level keys
 * ====================================================================== */

static void add_listen(lv_config_t *cfg, const lv_config_listen_t *l)
{
    cfg->listen = grow(cfg->listen, cfg->num_listen, sizeof *cfg->listen);
    cfg->listen[cfg->num_listen++] = *l;
}

static bool same_address(const lv_config_listen_t *a, const lv_config_listen_t *b)
{
    return a->addr_len == b->addr_len && memcmp(&a->addr, &b->addr, a->addr_len) == 0;
}

static void listen_one(parser_t *p, const node_t *v)
{
    lv_config_t *cfg = p->cfg;
    lv_config_listen_t l = {0};
    if (!get_listen(p, "listen", v, &l))
        return;
    for (size_t i = 0; i < cfg->num_listen; i++) {
        if (same_address(&cfg->listen[i], &l)) {
            report(p, v->pos, "duplicate listen address '%s' (same as '%s' at %d:%d)",
                   show(p, v), show_str(p, cfg->listen[i].text), cfg->listen[i].pos.line,
                   cfg->listen[i].pos.col);
            free(l.text);
            return;
        }
    }
    add_listen(cfg, &l);
}

static void top_listen(parser_t *p, const char *key, const node_t *v, void *obj)
{
    if (v->kind == NODE_MAP) {
        report(p, v->pos, "'%s' must be an address or a list of addresses, not a mapping", key);
        return;
    }
    if (v->kind != NODE_LIST) {
        listen_one(p, v);
        return;
    }
    if (v->count == 0)
        report(p, v->pos, "'%s' needs at least one address", key);
    for (size_t i = 0; i < v->count; i++)
        listen_one(p, v->kids[i]);
}

static void top_threads(parser_t *p, const char *key, const node_t *v, void *obj)
{
    lv_config_t *cfg = obj;
    const char *s;
    long long n;
    if (!get_text(p, key, v, &s))
        return;
    if (strcmp(s, "auto") == 0)
        cfg->threads = 0;
    else if (parse_whole(s, 256, &n) && n >= 1)
        cfg->threads = (int)n;
    else
        report(p, v->pos, "'%s' must be 'auto' or a whole number from 1 to 256, got '%s'", key,
               show(p, v));
}

static void admin_listen(parser_t *p, const char *key, const node_t *v, void *obj)
{
    lv_config_t *cfg = obj;
    lv_config_listen_t l = {0};
    if (v->kind == NODE_SCALAR && strcmp(v->text, "off") == 0) {
        cfg->admin_enabled = false;
        return;
    }
    if (!get_listen(p, key, v, &l))
        return;
    free(cfg->admin_listen.text);
    cfg->admin_listen = l;
}

static void top_admin(parser_t *p, const char *key, const node_t *v, void *obj)
{
    static const field_t fields[] = {{"listen", admin_listen}};
    static const section_t sec = SECTION("in admin", fields);
    walk_section(p, key, v, &sec, obj, NULL);
}

/* The listener for the AWS-compatible APIs (Lambda Invoke, ...); the same
 * shape as admin. */
static void api_listen(parser_t *p, const char *key, const node_t *v, void *obj)
{
    lv_config_t *cfg = obj;
    lv_config_listen_t l = {0};
    if (v->kind == NODE_SCALAR && strcmp(v->text, "off") == 0) {
        cfg->api_enabled = false;
        return;
    }
    if (!get_listen(p, key, v, &l))
        return;
    free(cfg->api_listen.text);
    cfg->api_listen = l;
}

static void top_api(parser_t *p, const char *key, const node_t *v, void *obj)
{
    static const field_t fields[] = {{"listen", api_listen}};
    static const section_t sec = SECTION("in api", fields);
    walk_section(p, key, v, &sec, obj, NULL);
}

static void top_data_dir(parser_t *p, const char *key, const node_t *v, void *obj)
{
    get_path(p, key, v, &((lv_config_t *)obj)->data_dir);
}

static void top_runtime_dir(parser_t *p, const char *key, const node_t *v, void *obj)
{
    get_path(p, key, v, &((lv_config_t *)obj)->runtime_dir);
}

static void cache_max_bytes(parser_t *p, const char *key, const node_t *v, void *obj)
{
    get_size(p, key, v, &((lv_config_t *)obj)->cache_max_bytes);
}

static void top_cache(parser_t *p, const char *key, const node_t *v, void *obj)
{
    static const field_t fields[] = {{"max_bytes", cache_max_bytes}};
    static const section_t sec = SECTION("in cache", fields);
    walk_section(p, key, v, &sec, obj, NULL);
}

static void top_log_level(parser_t *p, const char *key, const node_t *v, void *obj)
{
    static const char *const names[] = {
        [LV_LOG_DEBUG] = "debug", [LV_LOG_INFO] = "info", [LV_LOG_WARN] = "warn",
        [LV_LOG_ERROR] = "error"};
    lv_config_t *cfg = obj;
    const char *s;
    if (!get_text(p, key, v, &s))
        return;
    for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++) {
        if (strcmp(s, names[i]) == 0) {
            cfg->log_level = i;
            return;
        }
    }
    report(p, v->pos, "'%s' must be one of debug, info, warn, error; got '%s'", key, show(p, v));
}

static void top_shutdown_timeout(parser_t *p, const char *key, const node_t *v, void *obj)
{
    get_duration(p, key, v, 0, &((lv_config_t *)obj)->shutdown_timeout_ms);
}

/* ----- limits ----- */

static void limits_max_connections(parser_t *p, const char *key, const node_t *v, void *obj)
{
    long long n;
    if (get_int(p, key, v, 1, 10000000, &n))
        ((lv_config_limits_t *)obj)->max_connections = (uint64_t)n;
}

static void limits_max_header_bytes(parser_t *p, const char *key, const node_t *v, void *obj)
{
    uint64_t n;
    if (!get_size(p, key, v, &n))
        return;
    if (n < 1024 || n > 1024 * 1024)
        report(p, v->pos, "'%s' must be between 1KiB and 1MiB, got '%s'", key, show(p, v));
    else
        ((lv_config_limits_t *)obj)->max_header_bytes = n;
}

static void limits_max_body_bytes(parser_t *p, const char *key, const node_t *v, void *obj)
{
    get_size(p, key, v, &((lv_config_limits_t *)obj)->max_body_bytes);
}

static void limits_header_timeout(parser_t *p, const char *key, const node_t *v, void *obj)
{
    get_duration(p, key, v, 1, &((lv_config_limits_t *)obj)->header_timeout_ms);
}

static void limits_idle_timeout(parser_t *p, const char *key, const node_t *v, void *obj)
{
    get_duration(p, key, v, 1, &((lv_config_limits_t *)obj)->idle_timeout_ms);
}

static void limits_request_timeout(parser_t *p, const char *key, const node_t *v, void *obj)
{
    get_duration(p, key, v, 1, &((lv_config_limits_t *)obj)->request_timeout_ms);
}

static void limits_max_memory(parser_t *p, const char *key, const node_t *v, void *obj)
{
    uint64_t *m = &((lv_config_limits_t *)obj)->max_memory;
    if (get_size(p, key, v, m) && *m < (16ull << 20)) {
        report(p, v->pos, "'%s' must be at least 16MiB", key);
        *m = 0;
    }
}

static void top_limits(parser_t *p, const char *key, const node_t *v, void *obj)
{
    static const field_t fields[] = {
        {"max_connections", limits_max_connections},
        {"max_header_bytes", limits_max_header_bytes},
        {"max_body_bytes", limits_max_body_bytes},
        {"header_timeout", limits_header_timeout},
        {"idle_timeout", limits_idle_timeout},
        {"request_timeout", limits_request_timeout},
        {"max_memory", limits_max_memory},
    };
    static const section_t sec = SECTION("in limits", fields);
    walk_section(p, key, v, &sec, &((lv_config_t *)obj)->limits, NULL);
}

/* ======================================================================
 * Origins
 * ====================================================================== */

static bool is_host_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_';
}

/* Splits "host[:port]" or "[v6][:port]" into o->host and o->port. */
static const char *parse_authority(const char *a, size_t len, lv_config_origin_t *o)
{
    const char *host = a, *port = NULL;
    size_t host_len = len;
    if (len && a[0] == '[') {
        const char *close = memchr(a, ']', len);
        if (!close)
            return "'[' without ']'";
        host = a + 1;
        host_len = (size_t)(close - a - 1);
        if (close + 1 < a + len) {
            if (close[1] != ':')
                return "unexpected text after ']'";
            port = close + 2;
        }
        char v6[64];
        struct in6_addr ip;
        if (host_len >= sizeof v6)
            return "invalid IPv6 address";
        memcpy(v6, host, host_len);
        v6[host_len] = '\0';
        if (inet_pton(AF_INET6, v6, &ip) != 1)
            return "invalid IPv6 address";
    } else {
        const char *colon = memchr(a, ':', len);
        if (colon) {
            host_len = (size_t)(colon - a);
            port = colon + 1;
        }
        if (host_len == 0)
            return "the host is missing";
        for (size_t i = 0; i < host_len; i++)
            if (!is_host_char((unsigned char)host[i]))
                return "the host may only hold letters, digits, '-', '.' and '_'";
    }
    o->port = 80;
    if (port) {
        long long n = 0;
        char digits[8];
        size_t port_len = (size_t)(a + len - port);
        if (port_len == 0 || port_len >= sizeof digits)
            return "the port must be a number from 1 to 65535";
        memcpy(digits, port, port_len);
        digits[port_len] = '\0';
        if (!parse_whole(digits, 65535, &n) || n < 1)
            return "the port must be a number from 1 to 65535";
        o->port = (uint16_t)n;
    }
    o->host = lv_strndup(host, host_len);
    o->host_header = lv_strndup(a, len);
    return NULL;
}

/* Fills host, host_header, port and base_path from an http:// URL. Returns
 * NULL, or why the URL is not acceptable. */
static const char *parse_origin_url(const char *url, lv_config_origin_t *o)
{
    if (strncasecmp(url, "http://", 7) != 0)
        return "expected http://host[:port][/base]";
    const char *rest = url + 7;
    if (!is_visible_ascii(rest))
        return "it must not contain spaces, control or non-ASCII characters";
    if (strpbrk(rest, "?#"))
        return "it must not contain a query or fragment";
    size_t auth_len = strcspn(rest, "/");
    if (memchr(rest, '@', auth_len))
        return "user names and passwords in origin URLs are not supported";
    const char *why = parse_authority(rest, auth_len, o);
    if (why)
        return why;
    const char *base = rest + auth_len;
    size_t base_len = strlen(base);
    while (base_len && base[base_len - 1] == '/')
        base_len--;
    o->base_path = lv_strndup(base, base_len);
    return NULL;
}

/* Checks an origin URL and reports its problem at pos. */
static bool set_origin_url(parser_t *p, lv_config_origin_t *o, const char *url,
                           lv_config_pos_t pos)
{
    if (strncasecmp(url, "https://", 8) == 0) {
        report(p, pos, "https origins are not supported yet");
        return false;
    }
    const char *why = parse_origin_url(url, o);
    if (why) {
        report(p, pos, "invalid origin URL '%s': %s", show_str(p, url), why);
        return false;
    }
    o->url = lv_strdup(url);
    return true;
}

static lv_config_origin_t *add_origin(lv_config_t *cfg, const char *name, lv_config_pos_t pos)
{
    cfg->origins = grow(cfg->origins, cfg->num_origins, sizeof *cfg->origins);
    lv_config_origin_t *o = &cfg->origins[cfg->num_origins++];
    *o = (lv_config_origin_t){
        .name = lv_strdup(name),
        .port = 80,
        .max_conns = 64,
        .connect_timeout_ms = 1000,
        .timeout_ms = 30000,
        .max_pending = 1024,
        .breaker = {.window_ms = 10000, .open_for_ms = 5000},
        .pos = pos,
    };
    return o;
}

static void origin_url(parser_t *p, const char *key, const node_t *v, void *obj)
{
    const char *s;
    if (get_text(p, key, v, &s))
        set_origin_url(p, obj, s, v->pos);
}

static void origin_max_conns(parser_t *p, const char *key, const node_t *v, void *obj)
{
    long long n;
    if (get_int(p, key, v, 1, 100000, &n))
        ((lv_config_origin_t *)obj)->max_conns = (int)n;
}

static void origin_connect_timeout(parser_t *p, const char *key, const node_t *v, void *obj)
{
    get_duration(p, key, v, 1, &((lv_config_origin_t *)obj)->connect_timeout_ms);
}

static void origin_timeout(parser_t *p, const char *key, const node_t *v, void *obj)
{
    get_duration(p, key, v, 1, &((lv_config_origin_t *)obj)->timeout_ms);
}

static void origin_max_pending(parser_t *p, const char *key, const node_t *v, void *obj)
{
    long long n;
    if (get_int(p, key, v, 0, 10000000, &n))
        ((lv_config_origin_t *)obj)->max_pending = (int)n;
}

static void origin_retries(parser_t *p, const char *key, const node_t *v, void *obj)
{
    long long n;
    if (get_int(p, key, v, 0, 10, &n))
        ((lv_config_origin_t *)obj)->retries = (int)n;
}

static void breaker_failures(parser_t *p, const char *key, const node_t *v, void *obj)
{
    long long n;
    if (get_int(p, key, v, 1, 1000000, &n))
        ((lv_config_origin_t *)obj)->breaker.failures = (int)n;
}

static void breaker_window(parser_t *p, const char *key, const node_t *v, void *obj)
{
    get_duration(p, key, v, 1, &((lv_config_origin_t *)obj)->breaker.window_ms);
}

static void breaker_open_for(parser_t *p, const char *key, const node_t *v, void *obj)
{
    get_duration(p, key, v, 1, &((lv_config_origin_t *)obj)->breaker.open_for_ms);
}

static void origin_breaker(parser_t *p, const char *key, const node_t *v, void *obj)
{
    static const field_t fields[] = {
        {"failures", breaker_failures},
        {"window", breaker_window},
        {"open_for", breaker_open_for},
    };
    static const section_t sec = SECTION("in origin breaker", fields);
    lv_config_origin_t *o = obj;
    seen_t seen;
    o->breaker.enabled = true;
    if (walk_section(p, key, v, &sec, o, &seen) && !seen_key(&sec, &seen, "failures"))
        report(p, v->pos, "'breaker' is missing required key 'failures'");
}

/* Origin names share the `origin:` key with URLs, so they may not contain
 * ':' or '/'; this keeps the two apart. */
static bool is_origin_name(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!is_host_char((unsigned char)*s))
            return false;
    return true;
}

static void one_origin(parser_t *p, const node_t *key, const node_t *v)
{
    static const field_t fields[] = {
        {"url", origin_url},
        {"max_conns", origin_max_conns},
        {"connect_timeout", origin_connect_timeout},
        {"timeout", origin_timeout},
        {"max_pending", origin_max_pending},
        {"retries", origin_retries},
        {"breaker", origin_breaker},
    };
    static const section_t sec = SECTION("in origin", fields);
    if (strlen(key->text) != key->len || !is_origin_name(key->text))
        report(p, key->pos,
               "invalid origin name '%s'; use letters, digits, '-', '.' and '_'", show(p, key));
    lv_config_origin_t *o = add_origin(p->cfg, key->text, key->pos);
    seen_t seen;
    char name[sizeof p->shown[0]]; /* the name may be unprintable: quote a safe copy */
    strcpy(name, show(p, key));
    if (walk_section(p, name, v, &sec, o, &seen) && !seen_key(&sec, &seen, "url"))
        report(p, v->pos, "origin '%s' is missing required key 'url'", show(p, key));
}

static void top_origins(parser_t *p, const char *key, const node_t *v, void *obj)
{
    if (!expect_map(p, key, v))
        return;
    bool *skip = find_repeated_keys(p, v);
    for (size_t i = 0; i + 1 < v->count; i += 2)
        if (!skip[i / 2])
            one_origin(p, v->kids[i], v->kids[i + 1]);
    free(skip);
}

/* ======================================================================
 * Routes
 * ====================================================================== */

/* What a route's handlers leave behind for the checks that follow them. */
typedef struct {
    lv_config_route_t *route;
    const node_t *origin;   /* the `origin:` value, resolved later */
    const node_t *function; /* the `function:` value, resolved later */
    const node_t *capture_stream; /* the stream `capture:` names, resolved later */
    const node_t *capture_key;    /* a `path.NAME` partition key, checked against `match` */
} route_builder_t;

/* ----- match: "METHOD /path" ----- */

static bool is_ident(const char *s, size_t len)
{
    if (len == 0 || (s[0] >= '0' && s[0] <= '9'))
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return false;
    }
    return true;
}

/* Checks a literal segment; returns why it is wrong, or NULL. */
static const char *check_literal(const char *seg, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)seg[i];
        if (c == '*')
            return "'*' is only allowed as the whole last segment";
        if (c == '{' || c == '}')
            return "'{' and '}' are only allowed around a whole segment, like /{name}";
        if (c == '?' || c == '#')
            return "'?' and '#' are not part of a path";
        if (c <= 0x20 || c >= 0x7f)
            return "it contains a space, control or non-ASCII character (percent-encode it)";
    }
    return NULL;
}

static const char bad_param_name[] = "invalid parameter name";
static const char repeated_param[] = "repeated parameter";

/* Validates a path pattern. Returns NULL, or why it is invalid; for the two
 * reasons about a parameter (bad_param_name, repeated_param) *param is the
 * name, so the caller can quote it. */
static const char *check_path_pattern(const char *path, lv_slice_t *param)
{
    if (path[0] != '/')
        return "it must start with '/'";
    const char *seg = path + 1;
    for (;;) {
        const char *slash = strchr(seg, '/');
        size_t len = slash ? (size_t)(slash - seg) : strlen(seg);
        if (len == 0 && slash)
            return "it has an empty segment ('//')";
        if (len == 1 && seg[0] == '*') {
            if (slash)
                return "'*' is only allowed as the whole last segment";
        } else if (len && seg[0] == '{' && seg[len - 1] == '}') {
            *param = lv_slice(seg + 1, len - 2);
            if (!is_ident(param->ptr, param->len))
                return bad_param_name;
            /* Earlier parameters: search the text before this segment. */
            for (const char *q = path; (q = strchr(q, '{')) && q < seg; q++)
                if (strncmp(q + 1, param->ptr, param->len) == 0 && q[1 + param->len] == '}')
                    return repeated_param;
        } else {
            const char *why = check_literal(seg, len);
            if (why)
                return why;
        }
        if (!slash)
            return NULL;
        seg = slash + 1;
    }
}

static void report_bad_pattern(parser_t *p, lv_config_pos_t pos, const char *pattern,
                               const char *why, lv_slice_t param)
{
    const char *shown = show_str(p, pattern);
    if (why == bad_param_name)
        report(p, pos,
               "invalid path pattern '%s': invalid parameter name '%s' (use letters, digits "
               "and '_', not starting with a digit)",
               shown, show_bytes(p, param.ptr, param.len));
    else if (why == repeated_param)
        report(p, pos, "invalid path pattern '%s': parameter '%s' is used twice", shown,
               show_bytes(p, param.ptr, param.len));
    else
        report(p, pos, "invalid path pattern '%s': %s", shown, why);
}

static bool check_method(parser_t *p, const node_t *v, const char *method)
{
    if (!is_token(method)) {
        report(p, v->pos, "invalid method '%s' in 'match'", show_str(p, method));
        return false;
    }
    for (const char *c = method; *c; c++) {
        if (*c >= 'a' && *c <= 'z') {
            report(p, v->pos, "method '%s' must be upper-case", show_str(p, method));
            return false;
        }
    }
    return true;
}

static void route_match(parser_t *p, const char *key, const node_t *v, void *obj)
{
    lv_config_route_t *route = ((route_builder_t *)obj)->route;
    const char *s;
    if (!get_text(p, key, v, &s))
        return;
    route->pos = v->pos;
    const char *blanks = " \t";
    s += strspn(s, blanks);
    size_t method_len = strcspn(s, blanks);
    const char *path = s + method_len + strspn(s + method_len, blanks);
    size_t path_len = strcspn(path, blanks);
    if (method_len == 0 || path_len == 0 || path[path_len + strspn(path + path_len, blanks)]) {
        report(p, v->pos, "'match' must be 'METHOD /path' (e.g. 'GET /hello'), got '%s'",
               show(p, v));
        return;
    }
    char *method = lv_strndup(s, method_len), *pattern = lv_strndup(path, path_len);
    lv_slice_t param = {0};
    const char *why = check_path_pattern(pattern, &param);
    bool ok = check_method(p, v, method);
    if (why) {
        report_bad_pattern(p, v->pos, pattern, why, param);
        ok = false;
    }
    if (!ok) {
        free(method);
        free(pattern);
        return;
    }
    route->method = method;
    route->path = pattern;
}

static void route_name(parser_t *p, const char *key, const node_t *v, void *obj)
{
    lv_config_route_t *route = ((route_builder_t *)obj)->route;
    const char *s;
    if (!get_text(p, key, v, &s))
        return;
    if (!*s)
        report(p, v->pos, "'name' must not be empty");
    else if (has_control(s, false))
        report(p, v->pos, "'name' must not contain control characters");
    else
        route->name = lv_strdup(s);
}

/* ----- respond ----- */

static void respond_status(parser_t *p, const char *key, const node_t *v, void *obj)
{
    long long n;
    if (get_int(p, key, v, 100, 599, &n))
        ((lv_config_respond_t *)obj)->status = (int)n;
}

static void respond_body(parser_t *p, const char *key, const node_t *v, void *obj)
{
    lv_config_respond_t *r = obj;
    if (v->kind == NODE_BROKEN)
        return;
    if (v->kind != NODE_SCALAR) {
        report(p, v->pos, "'%s' must be a single value, not %s", key, describe(v));
        return;
    }
    /* The body is taken byte for byte; null spells the empty body. */
    free(r->body);
    r->body_len = is_null(v) ? 0 : v->len;
    r->body = lv_memdup0(v->text, r->body_len);
}

/* Headers levee computes itself: configuring them would corrupt framing. */
static bool is_managed_header(const char *name)
{
    static const char *const managed[] = {"content-length", "transfer-encoding", "connection"};
    for (size_t i = 0; i < sizeof managed / sizeof managed[0]; i++)
        if (strcasecmp(name, managed[i]) == 0)
            return true;
    return false;
}

static void one_header(parser_t *p, lv_config_respond_t *r, const node_t *key, const node_t *v)
{
    const char *value;
    if (!is_token(key->text) || strlen(key->text) != key->len) {
        report(p, key->pos, "invalid header name '%s'", show(p, key));
        return;
    }
    if (is_managed_header(key->text)) {
        report(p, key->pos, "header '%s' is set by levee and cannot be configured",
               show(p, key));
        return;
    }
    if (!get_text(p, key->text, v, &value))
        return;
    if (has_control(value, true)) {
        report(p, v->pos, "header '%s' must not contain control characters (CR, LF, ...)",
               show(p, key));
        return;
    }
    r->headers = grow(r->headers, r->num_headers, sizeof *r->headers);
    r->headers[r->num_headers++] = (lv_config_header_t){lv_strdup(key->text), lv_strdup(value)};
}

static void respond_headers(parser_t *p, const char *key, const node_t *v, void *obj)
{
    if (!expect_map(p, key, v))
        return;
    bool *skip = find_repeated_keys(p, v);
    for (size_t i = 0; i + 1 < v->count; i += 2)
        if (!skip[i / 2])
            one_header(p, obj, v->kids[i], v->kids[i + 1]);
    free(skip);
}

static bool status_forbids_body(int status)
{
    return status < 200 || status == 204 || status == 304;
}

static void route_respond(parser_t *p, const char *key, const node_t *v, void *obj)
{
    static const field_t fields[] = {
        {"status", respond_status},
        {"body", respond_body},
        {"headers", respond_headers},
    };
    static const section_t sec = SECTION("in respond", fields);
    lv_config_respond_t *r = &((route_builder_t *)obj)->route->respond;
    ((route_builder_t *)obj)->route->kind = LV_TARGET_RESPOND;
    seen_t seen;
    walk_section(p, key, v, &sec, r, &seen);
    if (r->body_len && status_forbids_body(r->status))
        report(p, seen_value(&sec, &seen, "body")->pos,
               "a response with status %d cannot have a body", r->status);
}

/* ----- redirect ----- */

static void redirect_table(parser_t *p, const char *key, const node_t *v, void *obj)
{
    lv_config_redirect_t *r = obj;
    const char *s;
    if (!get_text(p, key, v, &s))
        return;
    if (!*s) {
        report(p, v->pos, "'table' must not be empty");
        return;
    }
    char *path = resolve_path(p->dir, s);
    struct stat st;
    int err = 0;
    if (stat(path, &st) != 0 || access(path, R_OK) != 0)
        err = errno;
    else if (S_ISDIR(st.st_mode))
        err = EISDIR;
    if (err) {
        if (strcmp(path, s) == 0)
            report(p, v->pos, "cannot read redirect table '%s': %s", show_str(p, s),
                   strerror(err));
        else
            report(p, v->pos, "cannot read redirect table '%s' (%s): %s", show_str(p, s),
                   show_str(p, path), strerror(err));
    }
    r->table = path;
    r->table_pos = v->pos;
}

static void redirect_status(parser_t *p, const char *key, const node_t *v, void *obj)
{
    long long n;
    const char *s;
    if (!get_text(p, key, v, &s))
        return;
    if (parse_whole(s, 999, &n) && (n == 301 || n == 302 || n == 303 || n == 307 || n == 308))
        ((lv_config_redirect_t *)obj)->status = (int)n;
    else
        report(p, v->pos, "'%s' must be one of 301, 302, 303, 307, 308; got '%s'", key,
               show(p, v));
}

static bool is_absolute_http_url(const char *s)
{
    size_t skip = strncasecmp(s, "http://", 7) == 0    ? 7
                  : strncasecmp(s, "https://", 8) == 0 ? 8
                                                       : 0;
    return skip && s[skip] && !strchr("/?#", s[skip]);
}

static void redirect_missing(parser_t *p, const char *key, const node_t *v, void *obj)
{
    lv_config_redirect_t *r = obj;
    const char *s;
    if (!get_text(p, key, v, &s))
        return;
    if (!*s || !is_visible_ascii(s))
        report(p, v->pos,
               "'%s' must not be empty or contain spaces, control or non-ASCII characters "
               "(percent-encode them)", key);
    else if (s[0] == '/' && (s[1] == '/' || s[1] == '\\'))
        report(p, v->pos,
               "'%s' must not start with '//' or '/\\' (browsers read that as another host); "
               "write the full URL (https://host/...)",
               key);
    else if (s[0] != '/' && !is_absolute_http_url(s))
        report(p, v->pos,
               "'%s' must be an http:// or https:// URL or a path starting with '/', got '%s'",
               key, show(p, v));
    else
        r->missing = lv_strdup(s);
}

static void route_redirect(parser_t *p, const char *key, const node_t *v, void *obj)
{
    static const field_t fields[] = {
        {"table", redirect_table},
        {"status", redirect_status},
        {"missing", redirect_missing},
    };
    static const section_t sec = SECTION("in redirect", fields);
    lv_config_route_t *route = ((route_builder_t *)obj)->route;
    route->kind = LV_TARGET_REDIRECT;
    seen_t seen;
    if (walk_section(p, key, v, &sec, &route->redirect, &seen) && !seen_key(&sec, &seen, "table"))
        report(p, v->pos, "'redirect' is missing required key 'table'");
}

/* ----- origin, function and cache ----- */

static void route_origin(parser_t *p, const char *key, const node_t *v, void *obj)
{
    route_builder_t *b = obj;
    const char *s;
    b->route->kind = LV_TARGET_ORIGIN;
    if (!get_text(p, key, v, &s))
        return;
    if (!*s)
        report(p, v->pos, "'origin' must not be empty");
    else
        b->origin = v;
}

static void route_function(parser_t *p, const char *key, const node_t *v, void *obj)
{
    route_builder_t *b = obj;
    const char *s;
    b->route->kind = LV_TARGET_FUNCTION;
    if (!get_text(p, key, v, &s))
        return;
    if (!*s)
        report(p, v->pos, "'function' must not be empty");
    else
        b->function = v;
}

static void cache_ttl(parser_t *p, const char *key, const node_t *v, void *obj)
{
    /* A ttl of 0 would store responses that are never fresh; leaving ttl
     * out (follow Cache-Control) is what someone writing 0 usually wants. */
    get_duration(p, key, v, 1, &((lv_config_route_cache_t *)obj)->ttl_ms);
}

static void cache_swr(parser_t *p, const char *key, const node_t *v, void *obj)
{
    get_duration(p, key, v, 0, &((lv_config_route_cache_t *)obj)->stale_while_revalidate_ms);
}

static void cache_sie(parser_t *p, const char *key, const node_t *v, void *obj)
{
    get_duration(p, key, v, 0, &((lv_config_route_cache_t *)obj)->stale_if_error_ms);
}

static void cache_statuses(parser_t *p, const char *key, const node_t *v, void *obj)
{
    lv_config_route_cache_t *c = obj;
    if (!expect_list(p, key, v))
        return;
    if (v->kind != NODE_LIST || v->count == 0) {
        report(p, v->pos, "'%s' must not be empty (leave it out for the default)", key);
        return;
    }
    c->statuses = lv_calloc(v->count, sizeof *c->statuses);
    for (size_t i = 0; i < v->count; i++) {
        long long n;
        if (!get_int(p, "statuses", v->kids[i], 100, 599, &n))
            continue;
        bool repeated = false;
        for (size_t j = 0; j < c->num_statuses && !repeated; j++)
            repeated = c->statuses[j] == n;
        if (repeated)
            report(p, v->kids[i]->pos, "status %lld is listed twice", n);
        else
            c->statuses[c->num_statuses++] = (int)n;
    }
}

static void cache_set_cookie(parser_t *p, const char *key, const node_t *v, void *obj)
{
    get_bool(p, key, v, &((lv_config_route_cache_t *)obj)->cache_set_cookie);
}

static void route_cache(parser_t *p, const char *key, const node_t *v, void *obj)
{
    static const field_t fields[] = {
        {"ttl", cache_ttl},
        {"stale_while_revalidate", cache_swr},
        {"stale_if_error", cache_sie},
        {"statuses", cache_statuses},
        {"cache_set_cookie", cache_set_cookie},
    };
    static const section_t sec = SECTION("in route cache", fields);
    lv_config_route_cache_t *c = &((route_builder_t *)obj)->route->cache;
    c->enabled = true;
    walk_section(p, key, v, &sec, c, NULL);
}

/* ----- route admission: throttle, throttle_per_client, concurrency, queue ----- */

static void throttle_rate(parser_t *p, const char *key, const node_t *v, void *obj)
{
    get_number(p, key, v, &((lv_config_throttle_t *)obj)->rate);
}

static void throttle_burst(parser_t *p, const char *key, const node_t *v, void *obj)
{
    double *burst = &((lv_config_throttle_t *)obj)->burst;
    if (get_number(p, key, v, burst) && *burst < 1) {
        report(p, v->pos, "'%s' must be at least 1 (a bucket that holds no token admits nothing)", key);
        *burst = 0;
    }
}

static void throttle_key(parser_t *p, const char *key, const node_t *v, void *obj)
{
    const char *s;
    if (!get_text(p, key, v, &s))
        return;
    if (strcmp(s, "ip") != 0 && !(strncmp(s, "header:", 7) == 0 && is_token(s + 7))) {
        report(p, v->pos, "'%s' must be 'ip' or 'header:Name', not '%s'", key, show(p, v));
        return;
    }
    lv_config_throttle_t *t = obj;
    free(t->key);
    t->key = lv_strdup(s);
}

static void throttle_max_clients(parser_t *p, const char *key, const node_t *v, void *obj)
{
    long long n;
    if (get_int(p, key, v, 1, 100000000, &n))
        ((lv_config_throttle_t *)obj)->max_clients = (uint64_t)n;
}

static void walk_throttle(parser_t *p, const char *key, const node_t *v, lv_config_throttle_t *t,
                          const section_t *sec)
{
    seen_t seen;
    t->enabled = true;
    t->pos = v->pos;
    if (!walk_section(p, key, v, sec, t, &seen))
        return;
    if (!seen_key(sec, &seen, "rate"))
        report(p, v->pos, "'%s' is missing required key 'rate'", key);
    else if (!seen_key(sec, &seen, "burst") && t->rate > 0)
        t->burst = t->rate < 1 ? 1 : t->rate;
}

static void route_throttle(parser_t *p, const char *key, const node_t *v, void *obj)
{
    static const field_t fields[] = {{"rate", throttle_rate}, {"burst", throttle_burst}};
    static const section_t sec = SECTION("in throttle", fields);
    walk_throttle(p, key, v, &((route_builder_t *)obj)->route->throttle, &sec);
}

static void route_throttle_per_client(parser_t *p, const char *key, const node_t *v, void *obj)
{
    static const field_t fields[] = {
        {"rate", throttle_rate},
        {"burst", throttle_burst},
        {"key", throttle_key},
        {"max_clients", throttle_max_clients},
    };
    static const section_t sec = SECTION("in throttle_per_client", fields);
    lv_config_throttle_t *t = &((route_builder_t *)obj)->route->throttle_per_client;
    walk_throttle(p, key, v, t, &sec);
    if (!t->key)
        t->key = lv_strdup("ip");
}

static void route_concurrency(parser_t *p, const char *key, const node_t *v, void *obj)
{
    long long n;
    lv_config_route_t *r = ((route_builder_t *)obj)->route;
    r->concurrency_pos = v->pos;
    if (get_int(p, key, v, 1, 10000000, &n))
        r->concurrency = (uint64_t)n;
}

static void queue_max(parser_t *p, const char *key, const node_t *v, void *obj)
{
    long long n;
    if (get_int(p, key, v, 1, 10000000, &n))
        ((lv_config_queue_t *)obj)->max = (uint64_t)n;
}

static void queue_timeout(parser_t *p, const char *key, const node_t *v, void *obj)
{
    get_duration(p, key, v, 1, &((lv_config_queue_t *)obj)->timeout_ms);
}

static void route_queue(parser_t *p, const char *key, const node_t *v, void *obj)
{
    static const field_t fields[] = {{"max", queue_max}, {"timeout", queue_timeout}};
    static const section_t sec = SECTION("in queue", fields);
    lv_config_queue_t *q = &((route_builder_t *)obj)->route->queue;
    q->enabled = true;
    q->pos = v->pos;
    walk_section(p, key, v, &sec, q, NULL);
}

/* Admission settings that only make sense together, or against the limits
 * (which may come later in the file, so this runs at the end). */
static void check_admission(parser_t *p)
{
    const lv_config_t *cfg = p->cfg;
    for (size_t i = 0; i < cfg->num_routes; i++) {
        const lv_config_route_t *r = &cfg->routes[i];
        if (r->queue.enabled && r->concurrency == 0)
            report(p, r->queue.pos, "'queue' needs 'concurrency' on the same route (requests queue for a slot)");
        if (r->queue.enabled && r->queue.timeout_ms > cfg->limits.request_timeout_ms)
            report(p, r->queue.pos,
                   "queue timeout (%lldms) is longer than limits.request_timeout (%lldms)",
                   (long long)r->queue.timeout_ms, (long long)cfg->limits.request_timeout_ms);
    }
}

/* ----- capture: STREAM or { stream, partition_key, on_full } ----- */

static void capture_stream(parser_t *p, const char *key, const node_t *v, void *obj)
{
    const char *s;
    if (!get_text(p, key, v, &s))
        return;
    if (!*s)
        report(p, v->pos, "'%s' must not be empty", key);
    else
        ((route_builder_t *)obj)->capture_stream = v;
}

/* The NAME of `prefix.NAME`, or NULL (reported) when it is empty. */
static const char *key_name_after(parser_t *p, const node_t *v, const char *prefix)
{
    const char *name = v->text + strlen(prefix);
    if (*name)
        return name;
    report(p, v->pos, "capture: partition_key '%s' needs a name (%sNAME)", show(p, v), prefix);
    return NULL;
}

static void capture_partition_key(parser_t *p, const char *key, const node_t *v, void *obj)
{
    route_builder_t *b = obj;
    lv_config_capture_t *c = &b->route->capture;
    const char *s, *name = NULL;
    if (!get_text(p, key, v, &s))
        return;
    if (strcmp(s, "request_id") == 0) {
        c->key = LV_CAPTURE_KEY_REQUEST_ID;
    } else if (strcmp(s, "client_ip") == 0) {
        c->key = LV_CAPTURE_KEY_CLIENT_IP;
    } else if (strncmp(s, "path.", 5) == 0) {
        if (!(name = key_name_after(p, v, "path.")))
            return;
        c->key = LV_CAPTURE_KEY_PATH;
        b->capture_key = v; /* `match` may come later in the route */
    } else if (strncmp(s, "header.", 7) == 0) {
        if (!(name = key_name_after(p, v, "header.")))
            return;
        if (!is_token(name)) {
            report(p, v->pos, "capture: partition_key header.%s: invalid header name",
                   show_str(p, name));
            return;
        }
        c->key = LV_CAPTURE_KEY_HEADER;
    } else if (strncmp(s, "query.", 6) == 0) {
        if (!(name = key_name_after(p, v, "query.")))
            return;
        if (has_control(name, false)) {
            report(p, v->pos,
                   "capture: partition_key query.%s: the name must not contain control "
                   "characters",
                   show_str(p, name));
            return;
        }
        c->key = LV_CAPTURE_KEY_QUERY;
    } else {
        report(p, v->pos,
               "capture: partition_key must be request_id, client_ip, path.NAME, header.NAME "
               "or query.NAME; got '%s'",
               show(p, v));
        return;
    }
    free(c->key_name);
    c->key_name = NULL;
    if (c->key == LV_CAPTURE_KEY_REQUEST_ID || c->key == LV_CAPTURE_KEY_CLIENT_IP)
        return;
    c->key_name = lv_strdup(name);
    if (c->key == LV_CAPTURE_KEY_HEADER) /* header names match case-insensitively */
        for (char *ch = c->key_name; *ch; ch++)
            if (*ch >= 'A' && *ch <= 'Z')
                *ch = (char)(*ch - 'A' + 'a');
}

static void capture_on_full(parser_t *p, const char *key, const node_t *v, void *obj)
{
    lv_config_capture_t *c = &((route_builder_t *)obj)->route->capture;
    const char *s;
    if (!get_text(p, key, v, &s))
        return;
    if (strcmp(s, "shed_request") == 0)
        c->on_full = LV_CAPTURE_SHED;
    else if (strcmp(s, "drop") == 0)
        c->on_full = LV_CAPTURE_DROP;
    else
        report(p, v->pos, "'%s' must be shed_request or drop, got '%s'", key, show(p, v));
}

static void route_capture(parser_t *p, const char *key, const node_t *v, void *obj)
{
    static const field_t fields[] = {
        {"stream", capture_stream},
        {"partition_key", capture_partition_key},
        {"on_full", capture_on_full},
    };
    static const section_t sec = SECTION("in capture", fields);
    route_builder_t *b = obj;
    lv_config_capture_t *c = &b->route->capture;
    c->enabled = true;
    c->pos = v->pos;
    if (v->kind == NODE_SCALAR && !is_null(v)) { /* `capture: clicks` */
        capture_stream(p, key, v, obj);
        return;
    }
    if (v->kind == NODE_LIST) {
        report(p, v->pos, "'%s' must be a stream name or a mapping, not a list", key);
        return;
    }
    seen_t seen;
    if (walk_section(p, key, v, &sec, b, &seen) && !seen_key(&sec, &seen, "stream"))
        report(p, v->pos, "'%s' is missing required key 'stream'", key);
}

/* A `path.NAME` partition key must name one of the route's {NAME}
 * parameters, or every request would fall back to the request id. */
static void check_capture_key(parser_t *p, const route_builder_t *b)
{
    const lv_config_route_t *route = b->route;
    const char *name = route->capture.key_name;
    if (!b->capture_key || !route->path || !name)
        return;
    /* The pattern is valid, so '{' only opens a whole-segment parameter
     * and an identifier between braces can only match one exactly. */
    size_t len = strlen(name);
    if (is_ident(name, len)) {
        for (const char *q = route->path; (q = strchr(q, '{')); q++)
            if (strncmp(q + 1, name, len) == 0 && q[1 + len] == '}')
                return;
    }
    const char *shown = show_str(p, name);
    report(p, b->capture_key->pos,
           "capture: partition_key path.%s: the route has no {%s} parameter", shown, shown);
}

/* ----- one route ----- */

static const field_t route_fields[] = {
    {"match", route_match},
    {"name", route_name},
    {"respond", route_respond},
    {"redirect", route_redirect},
    {"origin", route_origin},
    {"function", route_function},
    {"cache", route_cache},
    {"throttle", route_throttle},
    {"throttle_per_client", route_throttle_per_client},
    {"concurrency", route_concurrency},
    {"queue", route_queue},
    {"capture", route_capture},
};
static const section_t route_section = SECTION("in route", route_fields);

/* The keys that say what answers a route; a route has exactly one. */
static const char *const route_targets[] = {"respond", "redirect", "origin", "function"};
#define NUM_TARGETS (sizeof route_targets / sizeof route_targets[0])

static void init_route(lv_config_route_t *route)
{
    *route = (lv_config_route_t){
        .origin = -1,
        .function = -1,
        .respond = {.status = 200},
        .redirect = {.status = 302},
        .cache = {.ttl_ms = -1, .stale_while_revalidate_ms = -1, .stale_if_error_ms = -1},
        .throttle_per_client = {.max_clients = 100000},
        .queue = {.max = 1000, .timeout_ms = 1000},
        .capture = {.stream = -1},
    };
    route->respond.body = lv_strdup("");
}

static bool key_before(const node_t *a, const node_t *b)
{
    return a->pos.line < b->pos.line || (a->pos.line == b->pos.line && a->pos.col < b->pos.col);
}

static void report_no_target(parser_t *p, lv_config_pos_t pos)
{
    lv_buf_t list = LV_BUF_INIT;
    for (size_t i = 0; i < NUM_TARGETS; i++)
        lv_buf_printf(&list, "%s%s", i ? ", " : "", route_targets[i]);
    lv_buf_append(&list, "", 1);
    report(p, pos, "route has no target; add one of: %s", lv_buf_data(&list));
    lv_buf_free(&list);
}

/* Exactly one target key; cache only with origin (function answers are
 * not cached yet). */
static void check_target(parser_t *p, const node_t *v, const seen_t *seen)
{
    const node_t *first = NULL;
    size_t count = 0;
    for (size_t i = 0; i < NUM_TARGETS; i++) {
        const node_t *k = seen_key(&route_section, seen, route_targets[i]);
        if (k && (!first || key_before(k, first)))
            first = k;
        count += k != NULL;
    }
    if (count == 0) {
        report_no_target(p, v->pos);
        return;
    }
    for (size_t i = 0; i < NUM_TARGETS; i++) {
        const node_t *k = seen_key(&route_section, seen, route_targets[i]);
        if (k && k != first)
            report(p, k->pos, "'%s' conflicts with '%s' at %d:%d; a route has exactly one target",
                   k->text, first->text, first->pos.line, first->pos.col);
    }
    const node_t *cache = seen_key(&route_section, seen, "cache");
    if (count == 1 && cache && seen_key(&route_section, seen, "function"))
        report(p, cache->pos, "'cache' is not supported on function routes yet");
    else if (count == 1 && cache && !seen_key(&route_section, seen, "origin"))
        report(p, cache->pos, "'cache' is only allowed on routes with an origin");
}

static void free_route(lv_config_route_t *r);

static void one_route(parser_t *p, const node_t *v)
{
    lv_config_t *cfg = p->cfg;
    if (v->kind != NODE_MAP) {
        if (v->kind != NODE_BROKEN)
            report(p, v->pos, "a route must be a mapping with 'match' and a target, not %s",
                   is_null(v) ? "an empty value" : describe(v));
        return;
    }
    lv_config_route_t route;
    route_builder_t b = {.route = &route};
    seen_t seen;
    init_route(&route);
    route.pos = v->pos;
    walk_section(p, "route", v, &route_section, &b, &seen);
    if (!seen_key(&route_section, &seen, "match"))
        report(p, v->pos, "route is missing required key 'match'");
    check_target(p, v, &seen);
    check_capture_key(p, &b);
    if (!route.method) {
        /* Without a valid match nothing else about the route is usable. */
        free_route(&route);
        return;
    }
    if (!route.name) {
        route.name = lv_malloc(strlen(route.method) + strlen(route.path) + 2);
        sprintf(route.name, "%s %s", route.method, route.path);
    }
    cfg->routes = grow(cfg->routes, cfg->num_routes, sizeof *cfg->routes);
    cfg->routes[cfg->num_routes] = route;
    if (b.origin)
        add_ref(&p->origin_refs, cfg->num_routes, b.origin);
    if (b.function)
        add_ref(&p->function_refs, cfg->num_routes, b.function);
    if (b.capture_stream)
        add_ref(&p->capture_refs, cfg->num_routes, b.capture_stream);
    cfg->num_routes++;
}

static void top_routes(parser_t *p, const char *key, const node_t *v, void *obj)
{
    if (!expect_list(p, key, v))
        return;
    for (size_t i = 0; i < v->count; i++)
        one_route(p, v->kids[i]);
}

/* ======================================================================
 * Functions
 * ====================================================================== */

/* Lambda's own limits, which runtimes and SDKs are written against. */
#define MAX_FUNCTION_MS (900 * 1000)
#define MAX_FUNCTION_WORKERS 4096
/* Longest wait before an async retry: Lambda drops events older than 6 h. */
#define MAX_BACKOFF_MS (6 * 3600 * 1000)

/* What a function's handlers leave behind for the checks that run once the
 * whole function is read, since its keys may come in any order. */
typedef struct {
    lv_config_function_t *fn;
    bool runtime_known;        /* `runtime:` given and valid */
    bool max_bad;              /* `concurrency.max` given but invalid: compare nothing with it */
    lv_config_pos_t *warm_pos; /* per schedule entry, where its `warm` is */
} function_builder_t;

static const char *const runtime_names[] = {
    [LV_RUNTIME_NODEJS] = "nodejs",
    [LV_RUNTIME_PYTHON] = "python",
    [LV_RUNTIME_PROVIDED] = "provided",
    [LV_RUNTIME_COMMAND] = "command",
};

static void fn_runtime(parser_t *p, const char *key, const node_t *v, void *obj)
{
    function_builder_t *b = obj;
    const char *s;
    if (!get_text(p, key, v, &s))
        return;
    for (size_t i = 0; i < sizeof runtime_names / sizeof runtime_names[0]; i++) {
        if (strcmp(s, runtime_names[i]) == 0) {
            b->fn->runtime = (lv_runtime_kind_t)i;
            b->runtime_known = true;
            return;
        }
    }
    report(p, v->pos, "'%s' must be one of nodejs, python, provided, command; got '%s'", key,
           show(p, v));
}

static void fn_handler(parser_t *p, const char *key, const node_t *v, void *obj)
{
    lv_config_function_t *fn = ((function_builder_t *)obj)->fn;
    const char *s;
    if (!get_text(p, key, v, &s))
        return;
    if (!*s)
        report(p, v->pos, "'%s' must not be empty", key);
    else if (has_control(s, false))
        report(p, v->pos, "'%s' must not contain control characters", key);
    else
        fn->handler = lv_strdup(s);
}

static void fn_code(parser_t *p, const char *key, const node_t *v, void *obj)
{
    get_path(p, key, v, &((function_builder_t *)obj)->fn->code);
}

/* An argv: kept only when every item is usable, so that a command with a
 * bad item never half-exists. */
static void fn_command(parser_t *p, const char *key, const node_t *v, void *obj)
{
    lv_config_function_t *fn = ((function_builder_t *)obj)->fn;
    if (!expect_list(p, key, v))
        return;
    if (v->kind != NODE_LIST || v->count == 0) {
        report(p, v->pos, "'%s' needs at least one item (the program to run)", key);
        return;
    }
    char **argv = lv_calloc(v->count, sizeof *argv);
    size_t n = 0;
    bool ok = true;
    for (size_t i = 0; i < v->count; i++) {
        const char *s;
        if (!get_text(p, key, v->kids[i], &s)) {
            ok = false;
        } else if (i == 0 && !*s) {
            report(p, v->kids[i]->pos, "the program (first item of '%s') must not be empty", key);
            ok = false;
        } else {
            argv[n++] = lv_strdup(s);
        }
    }
    if (ok) {
        fn->command = argv;
        fn->num_command = n;
        return;
    }
    for (size_t i = 0; i < n; i++)
        free(argv[i]);
    free(argv);
}

/* Variables levee sets for every worker (the names Lambda reserves): a
 * function that replaced them would break the runtime contract. */
static bool is_reserved_env(const char *name)
{
    static const char *const reserved[] = {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_LAMBDA_RUNTIME_API",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
    };
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
        if (strcmp(name, reserved[i]) == 0)
            return true;
    return false;
}

static void one_env(parser_t *p, lv_config_function_t *fn, const node_t *key, const node_t *v)
{
    const char *value;
    if (!is_ident(key->text, key->len)) {
        report(p, key->pos,
               "invalid environment variable name '%s' (use letters, digits and '_', not "
               "starting with a digit)",
               show(p, key));
        return;
    }
    if (is_reserved_env(key->text)) {
        report(p, key->pos, "env: %s is reserved (levee sets it for every worker)", key->text);
        return;
    }
    /* Numbers and booleans are wanted as the text written: `PORT: 8080`. */
    if (!get_text(p, key->text, v, &value))
        return;
    fn->env = grow(fn->env, fn->num_env, sizeof *fn->env);
    fn->env[fn->num_env++] = (lv_config_header_t){lv_strdup(key->text), lv_strdup(value)};
}

static void fn_env(parser_t *p, const char *key, const node_t *v, void *obj)
{
    if (!expect_map(p, key, v))
        return;
    bool *skip = find_repeated_keys(p, v);
    for (size_t i = 0; i + 1 < v->count; i += 2)
        if (!skip[i / 2])
            one_env(p, ((function_builder_t *)obj)->fn, v->kids[i], v->kids[i + 1]);
    free(skip);
}

static void fn_memory_mb(parser_t *p, const char *key, const node_t *v, void *obj)
{
    long long n;
    if (get_int(p, key, v, 16, 10240, &n))
        ((function_builder_t *)obj)->fn->memory_mb = (uint64_t)n;
}

static void fn_timeout(parser_t *p, const char *key, const node_t *v, void *obj)
{
    get_duration_in(p, key, v, 1, MAX_FUNCTION_MS, &((function_builder_t *)obj)->fn->timeout_ms);
}

static void fn_init_timeout(parser_t *p, const char *key, const node_t *v, void *obj)
{
    get_duration_in(p, key, v, 1, MAX_FUNCTION_MS,
                    &((function_builder_t *)obj)->fn->init_timeout_ms);
}

static void fn_idle_timeout(parser_t *p, const char *key, const node_t *v, void *obj)
{
    get_duration(p, key, v, 0, &((function_builder_t *)obj)->fn->idle_timeout_ms);
}

/* ----- concurrency: { max, warm } ----- */

static void concurrency_max(parser_t *p, const char *key, const node_t *v, void *obj)
{
    function_builder_t *b = obj;
    long long n;
    if (get_int(p, key, v, 1, MAX_FUNCTION_WORKERS, &n))
        b->fn->max = (uint64_t)n;
    else
        b->max_bad = true;
}

static void concurrency_warm(parser_t *p, const char *key, const node_t *v, void *obj)
{
    long long n;
    if (get_int(p, key, v, 0, MAX_FUNCTION_WORKERS, &n))
        ((function_builder_t *)obj)->fn->warm = (uint64_t)n;
}

static void fn_concurrency(parser_t *p, const char *key, const node_t *v, void *obj)
{
    static const field_t fields[] = {{"max", concurrency_max}, {"warm", concurrency_warm}};
    static const section_t sec = SECTION("in function concurrency", fields);
    function_builder_t *b = obj;
    seen_t seen;
    if (!walk_section(p, key, v, &sec, b, &seen))
        return;
    const node_t *warm = seen_value(&sec, &seen, "warm");
    if (warm && !b->max_bad && b->fn->warm > b->fn->max)
        report(p, warm->pos, "'warm' (%llu) must not be more than 'max' (%llu%s)",
               (unsigned long long)b->fn->warm, (unsigned long long)b->fn->max,
               seen_key(&sec, &seen, "max") ? "" : ", the default");
}

/* ----- queue: { max, timeout } ----- */

static void fn_queue_max(parser_t *p, const char *key, const node_t *v, void *obj)
{
    /* 0 is allowed here: refuse at once when every worker is busy. */
    long long n;
    if (get_int(p, key, v, 0, 10000000, &n))
        ((lv_config_queue_t *)obj)->max = (uint64_t)n;
}

static void fn_queue_timeout(parser_t *p, const char *key, const node_t *v, void *obj)
{
    get_duration_in(p, key, v, 1, MAX_FUNCTION_MS, &((lv_config_queue_t *)obj)->timeout_ms);
}

static void fn_queue(parser_t *p, const char *key, const node_t *v, void *obj)
{
    static const field_t fields[] = {{"max", fn_queue_max}, {"timeout", fn_queue_timeout}};
    static const section_t sec = SECTION("in function queue", fields);
    lv_config_queue_t *q = &((function_builder_t *)obj)->fn->queue;
    q->pos = v->pos;
    walk_section(p, key, v, &sec, q, NULL);
}

/* ----- schedule: [{ at, warm, until }] ----- */

typedef struct {
    lv_config_schedule_t entry;
    lv_config_pos_t warm_pos;
} schedule_builder_t;

static bool get_time(parser_t *p, const char *key, const node_t *v, int64_t *out)
{
    const char *s, *why = "";
    if (!get_text(p, key, v, &s))
        return false;
    if (lv_config_parse_time(s, out, &why) == 0)
        return true;
    report(p, v->pos, "'%s': invalid time '%s': %s (use RFC 3339, e.g. 2026-11-27T15:00:00Z)",
           key, show(p, v), why);
    return false;
}

static void schedule_at(parser_t *p, const char *key, const node_t *v, void *obj)
{
    get_time(p, key, v, &((schedule_builder_t *)obj)->entry.at_ms);
}

static void schedule_until(parser_t *p, const char *key, const node_t *v, void *obj)
{
    get_time(p, key, v, &((schedule_builder_t *)obj)->entry.until_ms);
}

static void schedule_warm(parser_t *p, const char *key, const node_t *v, void *obj)
{
    schedule_builder_t *sb = obj;
    long long n;
    sb->warm_pos = v->pos;
    if (get_int(p, key, v, 0, MAX_FUNCTION_WORKERS, &n))
        sb->entry.warm = (uint64_t)n;
}

/* Adds one entry; an entry with any problem is left out entirely. */
static void one_schedule(parser_t *p, function_builder_t *b, const node_t *v)
{
    static const field_t fields[] = {
        {"at", schedule_at},
        {"warm", schedule_warm},
        {"until", schedule_until},
    };
    static const section_t sec = SECTION("in schedule entry", fields);
    if (v->kind != NODE_MAP) {
        if (v->kind != NODE_BROKEN)
            report(p, v->pos,
                   "a schedule entry must be a mapping like { at: 2026-11-27T15:00:00Z, warm: "
                   "8 }, not %s",
                   is_null(v) ? "an empty value" : describe(v));
        return;
    }
    schedule_builder_t sb = {.entry = {.at_ms = -1, .until_ms = -1, .pos = v->pos}};
    size_t problems_before = p->num_problems;
    seen_t seen;
    walk_section(p, "schedule", v, &sec, &sb, &seen);
    if (!seen_key(&sec, &seen, "at"))
        report(p, v->pos, "schedule entry is missing required key 'at'");
    if (!seen_key(&sec, &seen, "warm"))
        report(p, v->pos, "schedule entry is missing required key 'warm'");
    const node_t *until = seen_value(&sec, &seen, "until");
    if (p->num_problems == problems_before && until && sb.entry.until_ms <= sb.entry.at_ms)
        report(p, until->pos, "'until' must be later than 'at'");
    if (p->num_problems != problems_before)
        return;
    lv_config_function_t *fn = b->fn;
    /* Both arrays have the same count, so grow() keeps them the same size. */
    b->warm_pos = grow(b->warm_pos, fn->num_schedule, sizeof *b->warm_pos);
    fn->schedule = grow(fn->schedule, fn->num_schedule, sizeof *fn->schedule);
    b->warm_pos[fn->num_schedule] = sb.warm_pos;
    fn->schedule[fn->num_schedule++] = sb.entry;
}

static void fn_schedule(parser_t *p, const char *key, const node_t *v, void *obj)
{
    if (!expect_list(p, key, v))
        return;
    for (size_t i = 0; i < v->count; i++)
        one_schedule(p, obj, v->kids[i]);
}

/* ----- async: { retries, backoff, on_failure } ----- */

static void async_retries(parser_t *p, const char *key, const node_t *v, void *obj)
{
    long long n;
    if (get_int(p, key, v, 0, 2, &n))
        ((lv_config_function_t *)obj)->async.retries = (int)n;
}

static void async_backoff(parser_t *p, const char *key, const node_t *v, void *obj)
{
    get_duration_in(p, key, v, 1, MAX_BACKOFF_MS, &((lv_config_function_t *)obj)->async.backoff_ms);
}

static void async_on_failure(parser_t *p, const char *key, const node_t *v, void *obj)
{
    get_path(p, key, v, &((lv_config_function_t *)obj)->async.on_failure);
}

static void fn_async(parser_t *p, const char *key, const node_t *v, void *obj)
{
    static const field_t fields[] = {
        {"retries", async_retries},
        {"backoff", async_backoff},
        {"on_failure", async_on_failure},
    };
    static const section_t sec = SECTION("in function async", fields);
    walk_section(p, key, v, &sec, ((function_builder_t *)obj)->fn, NULL);
}

/* ----- one function ----- */

static const field_t function_fields[] = {
    {"runtime", fn_runtime},
    {"handler", fn_handler},
    {"code", fn_code},
    {"command", fn_command},
    {"env", fn_env},
    {"memory_mb", fn_memory_mb},
    {"timeout", fn_timeout},
    {"init_timeout", fn_init_timeout},
    {"concurrency", fn_concurrency},
    {"idle_timeout", fn_idle_timeout},
    {"queue", fn_queue},
    {"schedule", fn_schedule},
    {"async", fn_async},
};
static const section_t function_section = SECTION("in function", function_fields);

/* The names Lambda accepts, which also keep a name safe in file paths
 * (the dead-letter file) and URLs (the Invoke API). */
static bool is_function_name(const char *s, size_t len)
{
    if (len == 0 || len > 64)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return false;
    }
    return true;
}

/* `module.function` as the nodejs and python bootstraps resolve it. */
static bool is_module_function(const char *s)
{
    size_t len = strlen(s);
    return strchr(s, '.') && s[0] != '.' && s[len - 1] != '.';
}

/* Checks that involve more than one key of the function. */
static void check_function(parser_t *p, const function_builder_t *b, const node_t *v,
                           const seen_t *seen, const char *name)
{
    const section_t *sec = &function_section;
    const lv_config_function_t *fn = b->fn;
    if (!seen_key(sec, seen, "runtime"))
        report(p, v->pos, "function '%s' is missing required key 'runtime'", name);
    if (!seen_key(sec, seen, "code"))
        report(p, v->pos, "function '%s' is missing required key 'code'", name);
    if (b->runtime_known) {
        const char *runtime = runtime_names[fn->runtime];
        bool bootstrap = fn->runtime == LV_RUNTIME_NODEJS || fn->runtime == LV_RUNTIME_PYTHON;
        const node_t *handler = seen_value(sec, seen, "handler");
        const node_t *command = seen_key(sec, seen, "command");
        if (bootstrap && !handler)
            report(p, v->pos,
                   "function '%s': handler is required for runtime %s (e.g. handler: "
                   "index.handler)",
                   name, runtime);
        else if (bootstrap && fn->handler && !is_module_function(fn->handler))
            report(p, handler->pos,
                   "'handler' must be module.function for runtime %s (e.g. index.handler), "
                   "got '%s'",
                   runtime, show(p, handler));
        if (fn->runtime == LV_RUNTIME_COMMAND && !command)
            report(p, v->pos,
                   "function '%s': command is required for runtime command (e.g. command: "
                   "[npx, aws-lambda-ric, index.handler])",
                   name);
        else if (fn->runtime != LV_RUNTIME_COMMAND && command)
            report(p, command->pos, "'command' is only allowed with runtime command, not %s",
                   runtime);
    }
    for (size_t i = 0; !b->max_bad && i < fn->num_schedule; i++)
        if (fn->schedule[i].warm > fn->max)
            report(p, b->warm_pos[i],
                   "schedule 'warm' (%llu) must not be more than concurrency.max (%llu)",
                   (unsigned long long)fn->schedule[i].warm, (unsigned long long)fn->max);
}

static void one_function(parser_t *p, const node_t *key, const node_t *v)
{
    lv_config_t *cfg = p->cfg;
    if (!is_function_name(key->text, key->len))
        report(p, key->pos,
               "invalid function name '%s'; use 1 to 64 letters, digits, '-' and '_'",
               show(p, key));
    /* Kept even with a bad name, so that routes naming it do not also
     * report it as unknown. */
    cfg->functions = grow(cfg->functions, cfg->num_functions, sizeof *cfg->functions);
    lv_config_function_t *fn = &cfg->functions[cfg->num_functions++];
    *fn = (lv_config_function_t){
        .name = lv_strdup(key->text),
        .memory_mb = 128,
        .timeout_ms = 3000,
        .init_timeout_ms = 10000,
        .max = 16,
        .warm = 0,
        .idle_timeout_ms = 300000,
        .queue = {.enabled = true, .max = 1000, .timeout_ms = 1000, .pos = key->pos},
        .async = {.retries = 2, .backoff_ms = 60000},
        .pos = key->pos,
    };
    function_builder_t b = {.fn = fn};
    seen_t seen;
    char name[sizeof p->shown[0]]; /* the name may be unprintable: quote a safe copy */
    strcpy(name, show(p, key));
    if (walk_section(p, name, v, &function_section, &b, &seen))
        check_function(p, &b, v, &seen, name);
    free(b.warm_pos);
}

static void top_functions(parser_t *p, const char *key, const node_t *v, void *obj)
{
    if (!expect_map(p, key, v))
        return;
    bool *skip = find_repeated_keys(p, v);
    for (size_t i = 0; i + 1 < v->count; i += 2)
        if (!skip[i / 2])
            one_function(p, v->kids[i], v->kids[i + 1]);
    free(skip);
}

/* ======================================================================
 * Streams
 * ====================================================================== */

/* Kinesis' own limits on a stream, which clients are written against. */
#define MAX_SHARDS 1024
#define HOUR_MS (3600 * 1000LL)

static void stream_shards(parser_t *p, const char *key, const node_t *v, void *obj)
{
    long long n;
    if (get_int(p, key, v, 1, MAX_SHARDS, &n))
        ((lv_config_stream_t *)obj)->shards = (unsigned)n;
}

static void stream_retention(parser_t *p, const char *key, const node_t *v, void *obj)
{
    get_duration_range(p, key, v, HOUR_MS, 8760 * HOUR_MS, "from 1h to 8760h",
                       &((lv_config_stream_t *)obj)->retention_ms);
}

static void stream_durability(parser_t *p, const char *key, const node_t *v, void *obj)
{
    lv_config_stream_t *st = obj;
    const char *s;
    if (!get_text(p, key, v, &s))
        return;
    if (strcmp(s, "fsync") == 0)
        st->durability = LV_DURABILITY_FSYNC;
    else if (strcmp(s, "batch") == 0)
        st->durability = LV_DURABILITY_BATCH;
    else
        report(p, v->pos, "'%s' must be fsync or batch, got '%s'", key, show(p, v));
}

/* Accepted with durability fsync too, where every append syncs anyway, so
 * that switching durability back and forth is a one-word change. */
static void stream_sync_interval(parser_t *p, const char *key, const node_t *v, void *obj)
{
    get_duration_range(p, key, v, 1, 10000, "from 1ms to 10s",
                       &((lv_config_stream_t *)obj)->sync_interval_ms);
}

static void stream_segment_bytes(parser_t *p, const char *key, const node_t *v, void *obj)
{
    get_size_range(p, key, v, 1ull << 20, 1ull << 30, "from 1MiB to 1GiB",
                   &((lv_config_stream_t *)obj)->segment_bytes);
}

/* Less than one maximal record (1 MiB, as in Kinesis) would leave every
 * large append waiting for an empty buffer. */
static void stream_max_pending_bytes(parser_t *p, const char *key, const node_t *v, void *obj)
{
    get_size_range(p, key, v, 1ull << 20, UINT64_MAX, "at least 1MiB",
                   &((lv_config_stream_t *)obj)->max_pending_bytes);
}

typedef enum {
    NAME_OK,
    NAME_BAD,  /* empty, too long, or a character outside [a-zA-Z0-9_.-] */
    NAME_DOTS, /* "." or "..": a directory itself */
} name_check_t;

/* The names Kinesis accepts for streams (consumers use the same rule). The
 * name is also a directory under data_dir, so the two names that mean a
 * directory itself are refused. */
static name_check_t check_stream_name(const char *s, size_t len, size_t max)
{
    if (len == 0 || len > max || strlen(s) != len)
        return NAME_BAD;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return NAME_BAD;
    }
    return strcmp(s, ".") == 0 || strcmp(s, "..") == 0 ? NAME_DOTS : NAME_OK;
}

/* Reports a stream or consumer name that check_stream_name refuses.
 * Returns whether the name is usable. */
static bool check_name(parser_t *p, const node_t *v, const char *what, size_t max)
{
    switch (check_stream_name(v->text, v->len, max)) {
    case NAME_OK:
        return true;
    case NAME_DOTS:
        report(p, v->pos,
               "invalid %s name '%s'; '.' and '..' are not allowed (it names a directory in "
               "data_dir)",
               what, show(p, v));
        return false;
    default:
        report(p, v->pos, "invalid %s name '%s'; use 1 to %zu letters, digits, '_', '.' and '-'",
               what, show(p, v), max);
        return false;
    }
}

static void one_stream(parser_t *p, const node_t *key, const node_t *v)
{
    static const field_t fields[] = {
        {"shards", stream_shards},
        {"retention", stream_retention},
        {"durability", stream_durability},
        {"sync_interval", stream_sync_interval},
        {"segment_bytes", stream_segment_bytes},
        {"max_pending_bytes", stream_max_pending_bytes},
    };
    static const section_t sec = SECTION("in stream", fields);
    lv_config_t *cfg = p->cfg;
    check_name(p, key, "stream", 128);
    /* Kept even with a bad name, so that captures and consumers naming it
     * do not also report it as unknown. */
    cfg->streams = grow(cfg->streams, cfg->num_streams, sizeof *cfg->streams);
    lv_config_stream_t *st = &cfg->streams[cfg->num_streams++];
    *st = (lv_config_stream_t){
        .name = lv_strdup(key->text),
        .shards = 1,
        .retention_ms = 24 * HOUR_MS,
        .durability = LV_DURABILITY_FSYNC,
        .sync_interval_ms = 5,
        .segment_bytes = 64ull << 20,
        .max_pending_bytes = 64ull << 20,
        .pos = key->pos,
    };
    char name[sizeof p->shown[0]]; /* the name may be unprintable: quote a safe copy */
    strcpy(name, show(p, key));
    walk_section(p, name, v, &sec, st, NULL);
}

static void top_streams(parser_t *p, const char *key, const node_t *v, void *obj)
{
    if (!expect_map(p, key, v))
        return;
    bool *skip = find_repeated_keys(p, v);
    for (size_t i = 0; i + 1 < v->count; i += 2)
        if (!skip[i / 2])
            one_stream(p, v->kids[i], v->kids[i + 1]);
    free(skip);
}

/* ======================================================================
 * Consumers
 * ====================================================================== */

/* What a consumer's handlers leave behind for the checks that need all of
 * its keys. */
typedef struct {
    lv_config_consumer_t *c;
    const node_t *name;       /* the `name:` value, when valid */
    const node_t *stream;     /* the `stream:` value, resolved later */
    const node_t *function;   /* the `function:` value, resolved later */
    bool position_bad;        /* `starting_position:` given but invalid */
} consumer_builder_t;

/* Consumer names: as stream names, but room for the default STREAM-FUNCTION. */
#define MAX_CONSUMER_NAME 256
#define MAX_BATCH_WINDOW_MS (300 * 1000)
#define MAX_RETRY_BACKOFF_MS (60 * 1000)

static void consumer_name(parser_t *p, const char *key, const node_t *v, void *obj)
{
    consumer_builder_t *b = obj;
    const char *s;
    if (!get_text(p, key, v, &s))
        return;
    if (!check_name(p, v, "consumer", MAX_CONSUMER_NAME))
        return;
    b->name = v;
    b->c->name = lv_strdup(s);
}

/* `stream:` and `function:` name entries of other sections. */
static const node_t *consumer_ref(parser_t *p, const char *key, const node_t *v)
{
    const char *s;
    if (!get_text(p, key, v, &s))
        return NULL;
    if (*s)
        return v;
    report(p, v->pos, "'%s' must not be empty", key);
    return NULL;
}

static void consumer_stream(parser_t *p, const char *key, const node_t *v, void *obj)
{
    ((consumer_builder_t *)obj)->stream = consumer_ref(p, key, v);
}

static void consumer_function(parser_t *p, const char *key, const node_t *v, void *obj)
{
    ((consumer_builder_t *)obj)->function = consumer_ref(p, key, v);
}

static void consumer_batch_size(parser_t *p, const char *key, const node_t *v, void *obj)
{
    long long n;
    if (get_int(p, key, v, 1, 10000, &n))
        ((consumer_builder_t *)obj)->c->batch_size = (unsigned)n;
}

static void consumer_batching_window(parser_t *p, const char *key, const node_t *v, void *obj)
{
    get_duration_in(p, key, v, 0, MAX_BATCH_WINDOW_MS,
                    &((consumer_builder_t *)obj)->c->batching_window_ms);
}

static const char *const start_names[] = {
    [LV_START_TRIM_HORIZON] = "TRIM_HORIZON",
    [LV_START_LATEST] = "LATEST",
    [LV_START_AT_TIMESTAMP] = "AT_TIMESTAMP",
};

static void consumer_starting_position(parser_t *p, const char *key, const node_t *v, void *obj)
{
    consumer_builder_t *b = obj;
    const char *s;
    b->position_bad = true;
    if (!get_text(p, key, v, &s))
        return;
    for (size_t i = 0; i < sizeof start_names / sizeof start_names[0]; i++) {
        if (strcmp(s, start_names[i]) == 0) {
            b->c->starting_position = (lv_start_position_t)i;
            b->position_bad = false;
            return;
        }
    }
    report(p, v->pos, "'%s' must be one of TRIM_HORIZON, LATEST, AT_TIMESTAMP; got '%s'", key,
           show(p, v));
}

static void consumer_starting_timestamp(parser_t *p, const char *key, const node_t *v, void *obj)
{
    get_time(p, key, v, &((consumer_builder_t *)obj)->c->starting_timestamp_ms);
}

static void consumer_max_retries(parser_t *p, const char *key, const node_t *v, void *obj)
{
    const char *s;
    long long n;
    if (!get_text(p, key, v, &s))
        return;
    if (strcmp(s, "-1") == 0)
        n = -1;
    else if (!parse_whole(s, 10000, &n)) {
        report(p, v->pos,
               "'%s' must be -1 (retry until the batch succeeds or expires) or a whole number "
               "from 0 to 10000, got '%s'",
               key, show(p, v));
        return;
    }
    ((consumer_builder_t *)obj)->c->max_retries = (int)n;
}

static void consumer_retry_backoff(parser_t *p, const char *key, const node_t *v, void *obj)
{
    get_duration_in(p, key, v, 1, MAX_RETRY_BACKOFF_MS,
                    &((consumer_builder_t *)obj)->c->retry_backoff_ms);
}

static void consumer_on_failure(parser_t *p, const char *key, const node_t *v, void *obj)
{
    get_path(p, key, v, &((consumer_builder_t *)obj)->c->on_failure);
}

static const field_t consumer_fields[] = {
    {"name", consumer_name},
    {"stream", consumer_stream},
    {"function", consumer_function},
    {"batch_size", consumer_batch_size},
    {"batching_window", consumer_batching_window},
    {"starting_position", consumer_starting_position},
    {"starting_timestamp", consumer_starting_timestamp},
    {"max_retries", consumer_max_retries},
    {"retry_backoff", consumer_retry_backoff},
    {"on_failure", consumer_on_failure},
};
static const section_t consumer_section = SECTION("in consumer", consumer_fields);

/* Checks that involve more than one key of the consumer. */
static void check_consumer(parser_t *p, const consumer_builder_t *b, const node_t *v,
                           const seen_t *seen)
{
    const section_t *sec = &consumer_section;
    if (!seen_key(sec, seen, "stream"))
        report(p, v->pos, "consumer is missing required key 'stream'");
    if (!seen_key(sec, seen, "function"))
        report(p, v->pos, "consumer is missing required key 'function'");
    if (b->position_bad)
        return;
    const node_t *position = seen_value(sec, seen, "starting_position");
    const node_t *timestamp = seen_key(sec, seen, "starting_timestamp");
    bool at_timestamp = b->c->starting_position == LV_START_AT_TIMESTAMP;
    if (at_timestamp && !timestamp)
        report(p, position->pos,
               "starting_position AT_TIMESTAMP needs 'starting_timestamp' (an RFC 3339 time, "
               "e.g. 2026-11-27T15:00:00Z)");
    else if (!at_timestamp && timestamp)
        report(p, timestamp->pos,
               "'starting_timestamp' is only allowed with starting_position AT_TIMESTAMP, not %s",
               start_names[b->c->starting_position]);
}

static void one_consumer(parser_t *p, const node_t *v)
{
    lv_config_t *cfg = p->cfg;
    if (v->kind != NODE_MAP) {
        if (v->kind != NODE_BROKEN)
            report(p, v->pos, "a consumer must be a mapping with 'stream' and 'function', not %s",
                   is_null(v) ? "an empty value" : describe(v));
        return;
    }
    /* Kept whatever its problems, so that it is freed with the config. Both
     * arrays have the same count, so grow() keeps them the same size. */
    p->consumer_names = grow(p->consumer_names, cfg->num_consumers, sizeof *p->consumer_names);
    cfg->consumers = grow(cfg->consumers, cfg->num_consumers, sizeof *cfg->consumers);
    size_t index = cfg->num_consumers++;
    lv_config_consumer_t *c = &cfg->consumers[index];
    *c = (lv_config_consumer_t){
        .stream = -1,
        .function = -1,
        .batch_size = 100,
        .batching_window_ms = 0,
        .starting_position = LV_START_TRIM_HORIZON,
        .starting_timestamp_ms = -1,
        .max_retries = -1,
        .retry_backoff_ms = 1000,
        .pos = v->pos,
    };
    consumer_builder_t b = {.c = c};
    seen_t seen;
    walk_section(p, "consumer", v, &consumer_section, &b, &seen);
    check_consumer(p, &b, v, &seen);
    p->consumer_names[index] = (consumer_name_t){b.name ? b.name->pos : v->pos, b.name != NULL};
    if (!seen_key(&consumer_section, &seen, "name") && b.stream && b.function) {
        lv_buf_t name = LV_BUF_INIT;
        lv_buf_printf(&name, "%s-%s", b.stream->text, b.function->text);
        c->name = lv_memdup0(lv_buf_data(&name), lv_buf_len(&name));
        lv_buf_free(&name);
    }
    if (b.stream)
        add_ref(&p->consumer_streams, index, b.stream);
    if (b.function)
        add_ref(&p->consumer_functions, index, b.function);
}

static void top_consumers(parser_t *p, const char *key, const node_t *v, void *obj)
{
    if (!expect_list(p, key, v))
        return;
    for (size_t i = 0; i < v->count; i++)
        one_consumer(p, v->kids[i]);
}

static const field_t top_fields[] = {
    {"listen", top_listen},
    {"threads", top_threads},
    {"admin", top_admin},
    {"api", top_api},
    {"cache", top_cache},
    {"log_level", top_log_level},
    {"shutdown_timeout", top_shutdown_timeout},
    {"limits", top_limits},
    {"data_dir", top_data_dir},
    {"runtime_dir", top_runtime_dir},
    {"origins", top_origins},
    {"functions", top_functions},
    {"routes", top_routes},
    {"streams", top_streams},
    {"consumers", top_consumers},
};

/* ======================================================================
 * Stage 3: cross-references
 * ====================================================================== */

static int find_origin(const lv_config_t *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->num_origins; i++)
        if (strcmp(cfg->origins[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* A route's origin is a name from origins: or a URL. A URL gets an entry of
 * its own, named by the URL and shared by every route that uses it. */
static void resolve_origins(parser_t *p)
{
    lv_config_t *cfg = p->cfg;
    for (size_t i = 0; i < p->origin_refs.count; i++) {
        const target_ref_t *ref = &p->origin_refs.items[i];
        int index = find_origin(cfg, ref->ref);
        bool is_url = strpbrk(ref->ref, ":/") != NULL;
        if (index < 0 && is_url) {
            lv_config_origin_t *o = add_origin(cfg, ref->ref, ref->pos);
            set_origin_url(p, o, ref->ref, ref->pos);
            index = (int)cfg->num_origins - 1;
        } else if (index < 0) {
            report(p, ref->pos, "unknown origin '%s' (not defined under origins:)",
                   show_str(p, ref->ref));
        }
        cfg->routes[ref->owner].origin = index;
    }
}

/* Names of one section sorted for bsearch, so that resolving n references
 * against m entries costs O((n + m) log m) however large the file is. */
typedef struct {
    const char *name;
    int index;
} name_index_t;

static int name_index_order(const void *a, const void *b)
{
    return strcmp(((const name_index_t *)a)->name, ((const name_index_t *)b)->name);
}

/* Equal names in file order, for reporting the later ones. */
static int name_then_index_order(const void *a, const void *b)
{
    const name_index_t *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->index > y->index) - (x->index < y->index);
}

static name_index_t *function_index(const lv_config_t *cfg)
{
    size_t n = cfg->num_functions;
    name_index_t *idx = lv_calloc(n ? n : 1, sizeof *idx);
    for (size_t i = 0; i < n; i++)
        idx[i] = (name_index_t){cfg->functions[i].name, (int)i};
    qsort(idx, n, sizeof *idx, name_index_order);
    return idx;
}

static name_index_t *stream_index(const lv_config_t *cfg)
{
    size_t n = cfg->num_streams;
    name_index_t *idx = lv_calloc(n ? n : 1, sizeof *idx);
    for (size_t i = 0; i < n; i++)
        idx[i] = (name_index_t){cfg->streams[i].name, (int)i};
    qsort(idx, n, sizeof *idx, name_index_order);
    return idx;
}

static int find_name(const name_index_t *idx, size_t count, const char *name)
{
    const name_index_t key = {name, -1};
    const name_index_t *found =
        count ? bsearch(&key, idx, count, sizeof *idx, name_index_order) : NULL;
    return found ? found->index : -1;
}

/* Looks up every reference in the list; each one that is unknown is
 * reported as "unknown WHAT 'x' (not defined under WHATs:)". Returns the
 * indexes in reference order (-1 for unknown); the caller frees them. */
static int *resolve_refs(parser_t *p, const ref_list_t *refs, const name_index_t *idx,
                         size_t count, const char *what)
{
    int *found = lv_calloc(refs->count ? refs->count : 1, sizeof *found);
    for (size_t i = 0; i < refs->count; i++) {
        const target_ref_t *ref = &refs->items[i];
        found[i] = find_name(idx, count, ref->ref);
        if (found[i] < 0)
            report(p, ref->pos, "unknown %s '%s' (not defined under %ss:)", what,
                   show_str(p, ref->ref), what);
    }
    return found;
}

/* Routes' functions and capture streams, and consumers' streams and
 * functions. Names within a section are unique (repeated keys were
 * dropped). */
static void resolve_names(parser_t *p)
{
    lv_config_t *cfg = p->cfg;
    name_index_t *functions = function_index(cfg), *streams = stream_index(cfg);
    int *found = resolve_refs(p, &p->function_refs, functions, cfg->num_functions, "function");
    for (size_t i = 0; i < p->function_refs.count; i++)
        cfg->routes[p->function_refs.items[i].owner].function = found[i];
    free(found);
    found = resolve_refs(p, &p->capture_refs, streams, cfg->num_streams, "stream");
    for (size_t i = 0; i < p->capture_refs.count; i++)
        cfg->routes[p->capture_refs.items[i].owner].capture.stream = found[i];
    free(found);
    found = resolve_refs(p, &p->consumer_streams, streams, cfg->num_streams, "stream");
    for (size_t i = 0; i < p->consumer_streams.count; i++)
        cfg->consumers[p->consumer_streams.items[i].owner].stream = found[i];
    free(found);
    found = resolve_refs(p, &p->consumer_functions, functions, cfg->num_functions, "function");
    for (size_t i = 0; i < p->consumer_functions.count; i++)
        cfg->consumers[p->consumer_functions.items[i].owner].function = found[i];
    free(found);
    free(functions);
    free(streams);
}

/* A consumer's name keys its checkpoint and dead-letter file, so two
 * consumers sharing one would overwrite each other's position. */
static void check_consumer_names(parser_t *p)
{
    const lv_config_t *cfg = p->cfg;
    size_t n = 0;
    name_index_t *idx = lv_calloc(cfg->num_consumers ? cfg->num_consumers : 1, sizeof *idx);
    for (size_t i = 0; i < cfg->num_consumers; i++)
        if (cfg->consumers[i].name)
            idx[n++] = (name_index_t){cfg->consumers[i].name, (int)i};
    qsort(idx, n, sizeof *idx, name_then_index_order);
    for (size_t i = 1, first = 0; i < n; i++) {
        if (strcmp(idx[first].name, idx[i].name) != 0) {
            first = i;
            continue;
        }
        size_t a = (size_t)idx[first].index, b = (size_t)idx[i].index;
        const consumer_name_t *later = &p->consumer_names[b];
        lv_config_pos_t at = p->consumer_names[a].pos;
        report(p, later->pos, "duplicate consumer name '%s' (first at %d:%d)%s",
               show_str(p, idx[i].name), at.line, at.col,
               later->given ? ""
                            : "; give consumers of the same stream and function each a "
                              "'name'");
    }
    free(idx);
}

/* data_dir, then the defaults that live in it; data_dir may come after the
 * functions in the file. */
static void fill_data_dir_defaults(parser_t *p)
{
    lv_config_t *cfg = p->cfg;
    if (!cfg->data_dir)
        cfg->data_dir = resolve_path(p->dir, "levee-data");
    for (size_t i = 0; i < cfg->num_functions; i++) {
        lv_config_function_t *fn = &cfg->functions[i];
        if (fn->async.on_failure)
            continue;
        lv_buf_t b = LV_BUF_INIT;
        lv_buf_printf(&b, "%s/functions/%s/dead-letter.jsonl", cfg->data_dir, fn->name);
        fn->async.on_failure = lv_memdup0(lv_buf_data(&b), lv_buf_len(&b));
        lv_buf_free(&b);
    }
    for (size_t i = 0; i < cfg->num_consumers; i++) {
        lv_config_consumer_t *c = &cfg->consumers[i];
        if (c->on_failure || !c->name) /* no name: a problem is already reported */
            continue;
        lv_buf_t b = LV_BUF_INIT;
        lv_buf_printf(&b, "%s/consumers/%s/dead-letter.jsonl", cfg->data_dir, c->name);
        c->on_failure = lv_memdup0(lv_buf_data(&b), lv_buf_len(&b));
        lv_buf_free(&b);
    }
}

/* A private listener (admin, api) may not share an address with the public
 * side. The message points at whichever of the two was written in the
 * file. */
static void check_private_listener(parser_t *p, const char *what, const lv_config_listen_t *own)
{
    const lv_config_t *cfg = p->cfg;
    for (size_t i = 0; i < cfg->num_listen; i++) {
        const lv_config_listen_t *l = &cfg->listen[i];
        if (!same_address(own, l))
            continue;
        if (own->pos.line > 0)
            report(p, own->pos, "%s listen address '%s' is also a public listen address", what,
                   show_str(p, own->text));
        else
            report(p, l->pos,
                   "listen address '%s' is the %s address; use another or move %s (%s: { "
                   "listen: ... })",
                   show_str(p, l->text), what, what, what);
        return;
    }
}

static void check_listeners(parser_t *p)
{
    const lv_config_t *cfg = p->cfg;
    const lv_config_listen_t *admin = &cfg->admin_listen, *api = &cfg->api_listen;
    if (cfg->admin_enabled)
        check_private_listener(p, "admin", admin);
    if (cfg->api_enabled)
        check_private_listener(p, "api", api);
    if (!cfg->admin_enabled || !cfg->api_enabled || !same_address(admin, api))
        return;
    /* The defaults differ, so at least one of them was written. */
    if (api->pos.line > 0)
        report(p, api->pos, "api listen address '%s' is also the admin listen address",
               show_str(p, api->text));
    else
        report(p, admin->pos,
               "admin listen address '%s' is the api address; use another or move api (api: { "
               "listen: ... })",
               show_str(p, admin->text));
}

typedef struct {
    const char *key;
    size_t route;
} route_key_t;

static int route_key_order(const void *a, const void *b)
{
    const route_key_t *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : (x->route < y->route ? -1 : x->route > y->route);
}

/* Reports routes with the same method and path, and routes sharing a name
 * (names label metrics, so two routes would be counted as one). */
static void check_route_clashes(parser_t *p)
{
    lv_config_t *cfg = p->cfg;
    size_t n = cfg->num_routes;
    if (n < 2)
        return;
    route_key_t *keys = lv_calloc(n, sizeof *keys);
    char **matches = lv_calloc(n, sizeof *matches);
    for (size_t i = 0; i < n; i++) {
        const lv_config_route_t *r = &cfg->routes[i];
        matches[i] = lv_malloc(strlen(r->method) + strlen(r->path) + 2);
        sprintf(matches[i], "%s %s", r->method, r->path);
    }
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < n; i++)
            keys[i] = (route_key_t){pass == 0 ? matches[i] : cfg->routes[i].name, i};
        qsort(keys, n, sizeof *keys, route_key_order);
        for (size_t i = 1, first = 0; i < n; i++) {
            if (strcmp(keys[first].key, keys[i].key) != 0) {
                first = i;
                continue;
            }
            size_t a = keys[first].route, b = keys[i].route;
            lv_config_pos_t at = cfg->routes[a].pos;
            if (pass == 0)
                report(p, cfg->routes[b].pos, "duplicate route '%s' (first at %d:%d)",
                       show_str(p, matches[b]), at.line, at.col);
            else if (strcmp(matches[a], matches[b]) != 0)
                report(p, cfg->routes[b].pos,
                       "route name '%s' is already used by the route at %d:%d",
                       show_str(p, cfg->routes[b].name), at.line, at.col);
        }
    }
    for (size_t i = 0; i < n; i++)
        free(matches[i]);
    free(matches);
    free(keys);
}

static void finish(parser_t *p, bool listen_given)
{
    lv_config_t *cfg = p->cfg;
    resolve_origins(p);
    resolve_names(p);
    check_consumer_names(p);
    fill_data_dir_defaults(p);
    check_route_clashes(p);
    check_admission(p);
    if (!listen_given && cfg->num_listen == 0) {
        lv_config_listen_t l = {.text = lv_strdup("127.0.0.1:8080")};
        lv_config_parse_listen(l.text, &l);
        add_listen(cfg, &l);
    }
    check_listeners(p);
}

/* ======================================================================
 * Public API
 * ====================================================================== */

static void init_config(lv_config_t *cfg)
{
    *cfg = (lv_config_t){
        .threads = 0,
        .admin_enabled = true,
        .admin_listen = {.text = lv_strdup("127.0.0.1:9901")},
        .api_enabled = true,
        .api_listen = {.text = lv_strdup("127.0.0.1:4566")},
        .cache_max_bytes = 256ull << 20,
        .shutdown_timeout_ms = 10000,
        .log_level = LV_LOG_INFO,
        .limits =
            {
                .max_connections = 100000,
                .max_header_bytes = 16 << 10,
                .max_body_bytes = 6 << 20,
                .header_timeout_ms = 10000,
                .idle_timeout_ms = 60000,
                .request_timeout_ms = 30000,
            },
    };
    lv_config_parse_listen(cfg->admin_listen.text, &cfg->admin_listen);
    lv_config_parse_listen(cfg->api_listen.text, &cfg->api_listen);
}

/* Parses yaml into cfg; `file` names it in messages, `dir` anchors
 * relative paths. Both are copied. */
static int load(const char *file, const char *dir, const char *yaml, size_t len,
                lv_config_t *cfg, lv_config_errors_t *errs)
{
    static const section_t sec = SECTION("at top level", top_fields);
    parser_t p = {.file = file, .dir = dir, .cfg = cfg};
    init_config(cfg);
    cfg->path = lv_strdup(file);
    cfg->dir = lv_strdup(dir);
    node_t *root = parse_yaml(&p, yaml, len);
    if (root && root->kind != NODE_MAP && !is_null(root)) {
        if (root->kind != NODE_BROKEN)
            report(&p, root->pos,
                   "the configuration must be a mapping of keys (like 'listen: 8080'), not %s",
                   describe(root));
    } else if (root) {
        seen_t seen;
        walk_section(&p, "configuration", root, &sec, cfg, &seen);
        finish(&p, seen_key(&sec, &seen, "listen") != NULL);
    }
    node_free(root);
    free_refs(&p.origin_refs);
    free_refs(&p.function_refs);
    free_refs(&p.capture_refs);
    free_refs(&p.consumer_streams);
    free_refs(&p.consumer_functions);
    free(p.consumer_names);
    int rc = p.num_problems ? -1 : 0;
    flush_problems(&p, errs);
    if (rc != 0)
        lv_config_free(cfg);
    return rc;
}

int lv_config_load_string(const char *name, const char *yaml, size_t len, lv_config_t *cfg,
                          lv_config_errors_t *errs)
{
    return load(name, ".", yaml ? yaml : "", yaml ? len : 0, cfg, errs);
}

/* Reads the whole file; on failure reports why and returns NULL. */
static char *read_file(const char *path, size_t *len, lv_config_errors_t *errs)
{
    lv_config_pos_t nowhere = {0, 0};
    FILE *f = fopen(path, "rb");
    if (!f) {
        lv_config_error(errs, path, nowhere, "cannot open: %s", strerror(errno));
        return NULL;
    }
    lv_buf_t b = LV_BUF_INIT;
    for (;;) {
        lv_buf_reserve(&b, 64 << 10);
        size_t got = fread(lv_buf_tail(&b), 1, lv_buf_room(&b), f);
        lv_buf_commit(&b, got);
        if (lv_buf_len(&b) > MAX_FILE_BYTES || got == 0)
            break;
    }
    int failed = ferror(f), err = errno;
    fclose(f);
    if (failed || lv_buf_len(&b) > MAX_FILE_BYTES) {
        if (failed)
            lv_config_error(errs, path, nowhere, "cannot read: %s", strerror(err));
        else
            lv_config_error(errs, path, nowhere, "file is larger than %u MiB",
                            MAX_FILE_BYTES >> 20);
        lv_buf_free(&b);
        return NULL;
    }
    *len = lv_buf_len(&b);
    char *data = lv_memdup0(lv_buf_data(&b), *len);
    lv_buf_free(&b);
    return data;
}

/* The directory holding path, made absolute when possible so that stored
 * table paths stay valid whatever the working directory becomes. */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash == path ? lv_strdup("/")
                : slash       ? lv_strndup(path, (size_t)(slash - path))
                              : lv_strdup(".");
    char *abs = realpath(dir, NULL);
    if (!abs)
        return dir;
    free(dir);
    return abs;
}

int lv_config_load(const char *path, lv_config_t *cfg, lv_config_errors_t *errs)
{
    size_t len = 0;
    memset(cfg, 0, sizeof *cfg);
    char *yaml = read_file(path, &len, errs);
    if (!yaml)
        return -1;
    char *dir = dir_of(path);
    int rc = load(path, dir, yaml, len, cfg, errs);
    free(dir);
    free(yaml);
    return rc;
}

static void free_route(lv_config_route_t *r)
{
    free(r->method);
    free(r->path);
    free(r->name);
    free(r->respond.body);
    for (size_t i = 0; i < r->respond.num_headers; i++) {
        free(r->respond.headers[i].name);
        free(r->respond.headers[i].value);
    }
    free(r->respond.headers);
    free(r->redirect.table);
    free(r->redirect.missing);
    free(r->cache.statuses);
    free(r->throttle.key);
    free(r->throttle_per_client.key);
    free(r->capture.key_name);
}

static void free_function(lv_config_function_t *fn)
{
    free(fn->name);
    free(fn->handler);
    free(fn->code);
    for (size_t i = 0; i < fn->num_command; i++)
        free(fn->command[i]);
    free(fn->command);
    for (size_t i = 0; i < fn->num_env; i++) {
        free(fn->env[i].name);
        free(fn->env[i].value);
    }
    free(fn->env);
    free(fn->schedule);
    free(fn->async.on_failure);
}

void lv_config_free(lv_config_t *cfg)
{
    free(cfg->path);
    free(cfg->dir);
    for (size_t i = 0; i < cfg->num_listen; i++)
        free(cfg->listen[i].text);
    free(cfg->listen);
    free(cfg->admin_listen.text);
    free(cfg->api_listen.text);
    free(cfg->data_dir);
    free(cfg->runtime_dir);
    for (size_t i = 0; i < cfg->num_origins; i++) {
        lv_config_origin_t *o = &cfg->origins[i];
        free(o->name);
        free(o->url);
        free(o->host);
        free(o->host_header);
        free(o->base_path);
    }
    free(cfg->origins);
    for (size_t i = 0; i < cfg->num_routes; i++)
        free_route(&cfg->routes[i]);
    free(cfg->routes);
    for (size_t i = 0; i < cfg->num_functions; i++)
        free_function(&cfg->functions[i]);
    free(cfg->functions);
    for (size_t i = 0; i < cfg->num_streams; i++)
        free(cfg->streams[i].name);
    free(cfg->streams);
    for (size_t i = 0; i < cfg->num_consumers; i++) {
        free(cfg->consumers[i].name);
        free(cfg->consumers[i].on_failure);
    }
    free(cfg->consumers);
    memset(cfg, 0, sizeof *cfg);
}

void lv_config_error(lv_config_errors_t *errs, const char *file, lv_config_pos_t pos,
                     const char *fmt, ...)
{
    lv_buf_t b = LV_BUF_INIT;
    /* Problems with the file as a whole (cannot open it) have no position. */
    if (pos.line > 0)
        lv_buf_printf(&b, "%s:%d:%d: ", file, pos.line, pos.col);
    else
        lv_buf_printf(&b, "%s: ", file);
    va_list ap;
    va_start(ap, fmt);
    lv_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    errs->items = grow(errs->items, errs->count, sizeof *errs->items);
    errs->items[errs->count++] = lv_memdup0(lv_buf_data(&b), lv_buf_len(&b));
    lv_buf_free(&b);
}

void lv_config_errors_free(lv_config_errors_t *errs)
{
    for (size_t i = 0; i < errs->count; i++)
        free(errs->items[i]);
    free(errs->items);
    errs->items = NULL;
    errs->count = 0;
}

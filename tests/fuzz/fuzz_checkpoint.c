/* fuzz_checkpoint.c: libFuzzer driver for the stream consumers' checkpoint
 * decoder (lv_checkpoint_decode, stream/consumer_format.h).
 *
 * The input is decoded as it is, from an exactly sized copy (so any
 * over-read trips ASan). Invariants checked (abort on violation):
 * - an accepted file has a valid stream name, a shard below the limit and
 *   next-seq >= 1, and encoding what was decoded gives back the input byte
 *   for byte: only the canonical form is accepted;
 * - a checkpoint built from the input's bytes round-trips, and changing any
 *   one byte of its encoding (position and value taken from the input) is
 *   refused.
 * The same bytes also go through the event builder as a partition key and
 * data: the event must parse as JSON (\u0000 allowed: JSON permits it,
 * jansson only by request) and stay within the size bound the
 * consumer fills batches by. */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "stream/consumer_format.h"
#include "require.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t read_u64(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n && i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void decode_as_is(const uint8_t *data, size_t size)
{
    char *in = malloc(size ? size : 1);
    REQUIRE(in);
    if (size)
        memcpy(in, data, size);
    lv_checkpoint_t cp;
    const char *why = lv_checkpoint_decode(in, size, &cp);
    if (!why) {
        size_t name_len = strlen(cp.stream);
        REQUIRE(name_len >= 1 && name_len <= LV_STREAM_MAX_NAME);
        REQUIRE(cp.shard < LV_STREAM_MAX_SHARDS);
        REQUIRE(cp.next_seq >= 1);
        lv_buf_t again = LV_BUF_INIT;
        lv_checkpoint_encode(&again, &cp);
        REQUIRE(lv_buf_len(&again) == size && memcmp(lv_buf_data(&again), in, size) == 0);
        lv_buf_free(&again);
    }
    free(in);
}

static void roundtrip_and_damage(const uint8_t *data, size_t size)
{
    if (size < 32)
        return;
    lv_checkpoint_t cp = {0};
    static const char name_chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-";
    size_t name_len = 1 + data[0] % LV_STREAM_MAX_NAME;
    for (size_t i = 0; i < name_len; i++)
        cp.stream[i] = name_chars[data[(1 + i) % size] % (sizeof name_chars - 1)];
    cp.stream_id = read_u64(data + 1, 8);
    cp.shard = (unsigned)(read_u64(data + 9, 2) % LV_STREAM_MAX_SHARDS);
    cp.next_seq = read_u64(data + 11, 8) | 1;
    cp.last_arrival_ms = read_u64(data + 19, 8);
    lv_buf_t b = LV_BUF_INIT;
    lv_checkpoint_encode(&b, &cp);
    REQUIRE(lv_buf_len(&b) <= LV_CHECKPOINT_MAX_BYTES);
    lv_checkpoint_t back;
    REQUIRE(lv_checkpoint_decode(lv_buf_data(&b), lv_buf_len(&b), &back) == NULL);
    REQUIRE(memcmp(&back, &cp, sizeof cp) == 0);
    size_t len = lv_buf_len(&b);
    char *copy = malloc(len);
    REQUIRE(copy);
    memcpy(copy, lv_buf_data(&b), len);
    size_t at = (size_t)(read_u64(data + 27, 4) % len);
    uint8_t x = data[31] ? data[31] : 0x5a;
    copy[at] = (char)(copy[at] ^ x);
    REQUIRE(lv_checkpoint_decode(copy, len, &back) != NULL);
    free(copy);
    lv_buf_free(&b);
}

static void event_bound(const uint8_t *data, size_t size)
{
    size_t key_len = size < LV_STREAM_MAX_KEY ? size : LV_STREAM_MAX_KEY;
    lv_stream_record_t r = {
        .seq = read_u64(data, size),
        .arrival_ms = read_u64(data + (size > 8 ? 8 : size), size > 8 ? size - 8 : 0),
        .partition_key = {(const char *)data, key_len},
        .data = {(const char *)data, size},
    };
    lv_consumer_source_t src = {LV_SLICE_LIT("fuzz.stream-1"), (unsigned)(size % LV_STREAM_MAX_SHARDS)};
    lv_buf_t b = LV_BUF_INIT;
    lv_consumer_event(&b, src, &r, 1);
    REQUIRE(lv_buf_len(&b) <= LV_CONSUMER_EVENT_ENVELOPE + lv_consumer_event_record_max(src, r.partition_key, size));
    json_t *v = json_loadb(lv_buf_data(&b), lv_buf_len(&b), JSON_ALLOW_NUL, NULL);
    REQUIRE(v);
    json_decref(v);
    lv_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    decode_as_is(data, size);
    roundtrip_and_damage(data, size);
    event_bound(data, size);
    return 0;
}

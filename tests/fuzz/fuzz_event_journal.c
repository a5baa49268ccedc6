/* fuzz_event_journal.c: libFuzzer driver for the async event journal's
 * decoder and replay (functions/event_journal.h).
 *
 * The first byte picks how the rest is used:
 *
 *   even: the bytes are a journal as found on disk. Replay must not crash,
 *         and the offset where it stops (where recovery cuts the file) must
 *         be a record boundary: decoding record after record from 0 lands
 *         on it exactly. Replaying only the part before the cut must give
 *         the same result, since recovery trusts exactly that part.
 *
 *   odd:  the bytes are a script of records (type, seq step, attempts,
 *         payload length), encoded with lv_ej_encode into a well-framed
 *         journal, then cut at an offset and possibly hit by one flipped
 *         byte, both taken from the script. Random bytes almost never carry
 *         a valid CRC, so this is what reaches replay's bookkeeping (seqs
 *         going backwards, records about unknown or finished events). The
 *         result is checked against a model that works from the script,
 *         not from the bytes: the cut lands on the last boundary before the
 *         damage, and the pending events are exactly the model's. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "functions/event_journal.h"
#include "require.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void same_result(const lv_ej_replay_t *a, const lv_ej_replay_t *b)
{
    REQUIRE(a->good_len == b->good_len);
    REQUIRE(a->records == b->records);
    REQUIRE(a->max_seq == b->max_seq);
    REQUIRE(a->num_pending == b->num_pending);
    for (size_t i = 0; i < a->num_pending; i++) {
        const lv_ej_pending_t *x = &a->pending[i], *y = &b->pending[i];
        REQUIRE(x->seq == y->seq && x->attempts == y->attempts && x->next_at_ms == y->next_at_ms);
        REQUIRE(x->accepted_ms == y->accepted_ms);
        REQUIRE(x->request_id.ptr == y->request_id.ptr && x->request_id.len == y->request_id.len);
        REQUIRE(x->payload.ptr == y->payload.ptr && x->payload.len == y->payload.len);
    }
}

static void check_raw(const char *j, size_t len)
{
    lv_ej_replay_t rep;
    size_t good = lv_ej_replay(j, len, &rep);
    REQUIRE(good == rep.good_len && good <= len);
    size_t pos = 0, n = 0;
    while (pos < good) {
        lv_ej_record_t r;
        ssize_t got = lv_ej_decode(j + pos, len - pos, &r);
        REQUIRE(got > 0);
        pos += (size_t)got;
        n++;
    }
    REQUIRE(pos == good);
    REQUIRE(n == rep.records);
    for (size_t i = 0; i < rep.num_pending; i++) {
        const lv_ej_pending_t *p = &rep.pending[i];
        REQUIRE(p->seq >= 1 && p->seq <= rep.max_seq);
        REQUIRE(i == 0 || rep.pending[i - 1].seq < p->seq);
        REQUIRE(p->request_id.len <= LV_EJ_MAX_ID && p->payload.len <= LV_EJ_MAX_PAYLOAD);
        REQUIRE(p->payload.ptr >= j && p->payload.ptr + p->payload.len <= j + good);
    }
    lv_ej_replay_t again;
    lv_ej_replay(j, good, &again);
    same_result(&rep, &again);
    lv_ej_replay_free(&again);
    lv_ej_replay_free(&rep);
}

typedef struct {
    uint64_t seq;
    uint32_t attempts;
    uint64_t next_at;
    size_t payload_len;
    int gone;
} model_ev_t;

#define MAX_OPS 256

static void check_scripted(const uint8_t *s, size_t n)
{
    if (n < 4)
        return;
    size_t cut_sel = (size_t)s[0] | (size_t)s[1] << 8;
    size_t flip_sel = (size_t)s[2] | (size_t)s[3] << 8;
    s += 4;
    n -= 4;

    lv_buf_t j = LV_BUF_INIT;
    size_t ends[MAX_OPS];
    size_t nrec = 0;
    /* The model: the records the replay may accept are those before the
     * first ACCEPT whose seq does not increase. */
    size_t valid_prefix = 0;
    int prefix_closed = 0;
    uint64_t seq = 0, max_seq = 0;
    static const char payload_bytes[64] = "{\"k\":\"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQR\"}";
    static lv_ej_record_t recs[MAX_OPS];
    while (n >= 4 && nrec < MAX_OPS) {
        lv_ej_record_t r = {0};
        r.type = (uint8_t)(1 + s[0] % 3);
        /* Steps around zero so seqs sometimes repeat or go backwards. */
        int step = (int)(s[1] % 8) - 2;
        if (r.type == LV_EJ_ACCEPT) {
            seq = (uint64_t)((int64_t)seq + step);
            if (seq == 0 && step <= 0)
                seq = 0;
            r.seq = seq;
            r.accepted_ms = 1700000000000ull + s[2];
            r.request_id = lv_slice("00000000-1111-4222-8333-444444444444", (size_t)(s[2] % 37));
            r.payload = lv_slice(payload_bytes, (size_t)(s[3] % 64));
        } else {
            r.seq = (uint64_t)(s[1] % 16);
            r.attempts = s[2];
            r.next_at_ms = 1700000000000ull + s[3];
            r.outcome = (uint8_t)(1 + s[3] % 2);
        }
        lv_ej_encode(&j, &r);
        recs[nrec] = r;
        ends[nrec++] = lv_buf_len(&j);
        if (!prefix_closed) {
            if (r.type == LV_EJ_ACCEPT && r.seq <= max_seq)
                prefix_closed = 1;
            else {
                if (r.type == LV_EJ_ACCEPT)
                    max_seq = r.seq;
                valid_prefix = nrec;
            }
        }
        s += 4;
        n -= 4;
    }
    size_t len = lv_buf_len(&j);
    char *bytes = malloc(len ? len : 1);
    if (len)
        memcpy(bytes, lv_buf_data(&j), len);
    lv_buf_free(&j);
    size_t cut = cut_sel % (len + 1);
    /* flip_sel's top bit says whether to damage a byte at all. */
    size_t flip_at = len;
    if (len && (flip_sel & 0x8000)) {
        flip_at = (flip_sel & 0x7fff) % len;
        bytes[flip_at] ^= (char)(1 + (flip_sel >> 8 & 0x7f));
    }

    /* Where replay must stop: the last boundary before the cut, before the
     * damaged record, and within the valid prefix. */
    size_t expect_records = 0;
    while (expect_records < valid_prefix && ends[expect_records] <= cut &&
           !(flip_at < ends[expect_records]))
        expect_records++;
    size_t expect_good = expect_records ? ends[expect_records - 1] : 0;

    lv_ej_replay_t rep;
    size_t good = lv_ej_replay(bytes, cut, &rep);
    REQUIRE(good == expect_good);
    REQUIRE(rep.records == expect_records);

    static model_ev_t evs[MAX_OPS];
    size_t nev = 0;
    for (size_t i = 0; i < expect_records; i++) {
        const lv_ej_record_t *r = &recs[i];
        if (r->type == LV_EJ_ACCEPT) {
            evs[nev++] = (model_ev_t){.seq = r->seq, .payload_len = r->payload.len};
            continue;
        }
        for (size_t k = 0; k < nev; k++) {
            if (evs[k].seq != r->seq || evs[k].gone)
                continue;
            if (r->type == LV_EJ_ATTEMPT_FAILED) {
                evs[k].attempts = r->attempts;
                evs[k].next_at = r->next_at_ms;
            } else {
                evs[k].gone = 1;
            }
        }
    }
    size_t k = 0;
    for (size_t i = 0; i < nev; i++) {
        if (evs[i].gone)
            continue;
        REQUIRE(k < rep.num_pending);
        REQUIRE(rep.pending[k].seq == evs[i].seq);
        REQUIRE(rep.pending[k].attempts == evs[i].attempts);
        REQUIRE(rep.pending[k].next_at_ms == evs[i].next_at);
        REQUIRE(rep.pending[k].payload.len == evs[i].payload_len);
        k++;
    }
    REQUIRE(k == rep.num_pending);
    lv_ej_replay_free(&rep);
    check_raw(bytes, cut);
    free(bytes);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if (data[0] & 1)
        check_scripted(data + 1, size - 1);
    else
        check_raw((const char *)data + 1, size - 1);
    return 0;
}

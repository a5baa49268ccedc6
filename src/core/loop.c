/* loop.c: epoll event loop with a hierarchical timer wheel (see loop.h).
 *
 * Timer wheel: four levels with 1 ms ticks. Level 0 has 256 one-millisecond
 * slots; levels 1..3 have 64 slots of 256 ms, 16.4 s and 17.5 min. A timer
 * goes in the lowest level whose span covers its delay; when level 0 wraps,
 * the matching slot of the level above is "cascaded" (its timers re-inserted
 * lower down). Start, stop and expiry are O(1); delays beyond the top level
 * (about 18.6 hours) are clamped and re-inserted when they come due.
 *
 * The poll timeout is the distance to the next non-empty level-0 slot, or to
 * the next cascade point when level 0 is empty, so a loop with only long
 * timers wakes at most every 256 ms. */
#include "core/loop.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/mem.h"

#define L0_BITS 8
#define LN_BITS 6
#define L0_SIZE (1u << L0_BITS)
#define LN_SIZE (1u << LN_BITS)
#define NUM_UPPER 3
#define MAX_DELAY ((uint64_t)1 << (L0_BITS + NUM_UPPER * LN_BITS))
#define MAX_EVENTS 512

typedef struct posted {
    struct posted *next;
    lv_post_cb cb;
    void *arg;
} posted_t;

struct lv_loop {
    int epfd;
    int wakefd;
    unsigned index;
    uint64_t now_ns, now_ms;
    volatile int stopping;

    /* The events of the current iteration, so lv_io_stop can drop stale ones. */
    struct epoll_event *events;
    int nevents, event_pos;

    /* Timer wheel. */
    uint64_t tick;
    size_t ntimers;
    bool advancing;             /* inside advance_timers */
    lv_timer_t *deferred;       /* timers started by callbacks during an advance */
    lv_timer_t *l0[L0_SIZE];
    uint64_t l0_bits[L0_SIZE / 64]; /* may have stale set bits; slots are checked */
    lv_timer_t *upper[NUM_UPPER][LN_SIZE];

    /* Posted callbacks. */
    pthread_mutex_t post_lock;
    posted_t *post_head, **post_tail;
    int wake_pending;
    lv_io_t wake_io;
};

static __thread lv_loop_t *current_loop;

uint64_t lv_clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void lv_loop_update_time(lv_loop_t *loop)
{
    loop->now_ns = lv_clock_ns();
    loop->now_ms = loop->now_ns / 1000000u;
}

uint64_t lv_loop_now_ms(const lv_loop_t *loop) { return loop->now_ms; }
uint64_t lv_loop_now_ns(const lv_loop_t *loop) { return loop->now_ns; }
unsigned lv_loop_index(const lv_loop_t *loop) { return loop->index; }
lv_loop_t *lv_loop_current(void) { return current_loop; }

/* ---- timer wheel ---- */

static void slot_push(lv_timer_t **slot, lv_timer_t *t)
{
    t->next = *slot;
    if (t->next)
        t->next->pprev = &t->next;
    t->pprev = slot;
    *slot = t;
}

/* Puts t in the slot its expiry belongs to. A timer already due goes to the
 * current tick's slot when it is being cascaded (that slot runs right after
 * the cascade), and to the next tick's slot otherwise. */
static void wheel_insert(lv_loop_t *loop, lv_timer_t *t, bool cascading)
{
    uint64_t expire = t->expire_ms;
    uint64_t delta = expire > loop->tick ? expire - loop->tick : 0;
    if (delta < L0_SIZE) {
        unsigned idx = (unsigned)expire & (L0_SIZE - 1);
        if (delta == 0)
            idx = (unsigned)(cascading ? loop->tick : loop->tick + 1) & (L0_SIZE - 1);
        slot_push(&loop->l0[idx], t);
        loop->l0_bits[idx / 64] |= (uint64_t)1 << (idx % 64);
        return;
    }
    if (delta >= MAX_DELAY)
        expire = loop->tick + MAX_DELAY - 1; /* clamped; re-inserted when it comes due */
    for (unsigned level = 0; level < NUM_UPPER; level++) {
        unsigned shift = L0_BITS + level * LN_BITS;
        if (delta < ((uint64_t)1 << (shift + LN_BITS)) || level == NUM_UPPER - 1) {
            slot_push(&loop->upper[level][(expire >> shift) & (LN_SIZE - 1)], t);
            return;
        }
    }
}

void lv_timer_stop(lv_timer_t *t)
{
    if (!t->pprev)
        return;
    *t->pprev = t->next;
    if (t->next)
        t->next->pprev = t->pprev;
    t->next = NULL;
    t->pprev = NULL;
    t->loop->ntimers--;
}

void lv_timer_start(lv_loop_t *loop, lv_timer_t *t, uint64_t timeout_ms)
{
    lv_timer_stop(t);
    t->expire_ms = loop->now_ms + timeout_ms;
    if (t->expire_ms < loop->now_ms)
        t->expire_ms = UINT64_MAX; /* "never" must not wrap to "now" */
    t->loop = loop;
    loop->ntimers++;
    if (loop->advancing)
        slot_push(&loop->deferred, t); /* joins the wheel after this advance */
    else
        wheel_insert(loop, t, false);
}

/* Moves every timer of one upper slot down to where it now belongs. */
static void cascade(lv_loop_t *loop, lv_timer_t **slot)
{
    lv_timer_t *t = *slot;
    *slot = NULL;
    while (t) {
        lv_timer_t *next = t->next;
        wheel_insert(loop, t, true);
        t = next;
    }
}

static void run_slot(lv_loop_t *loop, unsigned idx)
{
    lv_timer_t *pending = loop->l0[idx];
    loop->l0[idx] = NULL;
    loop->l0_bits[idx / 64] &= ~((uint64_t)1 << (idx % 64));
    if (pending)
        pending->pprev = &pending;
    lv_timer_t *t;
    while ((t = pending) != NULL) {
        pending = t->next;
        if (pending)
            pending->pprev = &pending;
        t->next = NULL;
        t->pprev = NULL;
        if (t->expire_ms <= loop->tick) {
            loop->ntimers--;
            t->cb(loop, t);
        } else {
            wheel_insert(loop, t, false);
        }
    }
}

static bool l0_empty(const lv_loop_t *loop)
{
    for (unsigned i = 0; i < L0_SIZE / 64; i++)
        if (loop->l0_bits[i])
            return false;
    return true;
}

static void advance_timers(lv_loop_t *loop)
{
    uint64_t now = loop->now_ms;
    if (loop->ntimers == 0) {
        loop->tick = now;
        memset(loop->l0_bits, 0, sizeof loop->l0_bits);
        return;
    }
    loop->advancing = true;
    while (loop->tick < now) {
        if (l0_empty(loop)) {
            /* Nothing due before the next cascade point: jump there. */
            uint64_t edge = loop->tick | (L0_SIZE - 1);
            if (edge >= now) {
                loop->tick = now;
                break;
            }
            loop->tick = edge;
        }
        uint64_t tick = ++loop->tick;
        if ((tick & (L0_SIZE - 1)) == 0) {
            for (int level = NUM_UPPER - 1; level >= 0; level--) {
                unsigned shift = L0_BITS + (unsigned)level * LN_BITS;
                if ((tick & (((uint64_t)1 << shift) - 1)) == 0)
                    cascade(loop, &loop->upper[level][(tick >> shift) & (LN_SIZE - 1)]);
            }
        }
        run_slot(loop, (unsigned)tick & (L0_SIZE - 1));
    }
    loop->advancing = false;
    /* Timers (re)started by callbacks wait for the next advance, so one
     * re-armed at "now" cannot run twice in this one. */
    while (loop->deferred) {
        lv_timer_t *t = loop->deferred;
        loop->deferred = t->next;
        if (loop->deferred)
            loop->deferred->pprev = &loop->deferred;
        wheel_insert(loop, t, false);
    }
}

/* Milliseconds until the next timer may be due, or -1 for none. Never past
 * the next cascade point (upper-level timers may come due there) and counted
 * from the current time, which may be ahead of the wheel. */
static int next_timeout(lv_loop_t *loop)
{
    if (loop->ntimers == 0)
        return -1;
    uint64_t edge = L0_SIZE - (loop->tick & (L0_SIZE - 1));
    uint64_t wait = edge;
    for (unsigned d = 1; d < edge; d++) {
        unsigned idx = (unsigned)(loop->tick + d) & (L0_SIZE - 1);
        if (!(loop->l0_bits[idx / 64] & ((uint64_t)1 << (idx % 64))))
            continue;
        if (loop->l0[idx]) {
            wait = d;
            break;
        }
        loop->l0_bits[idx / 64] &= ~((uint64_t)1 << (idx % 64)); /* stale bit */
    }
    uint64_t lag = loop->now_ms > loop->tick ? loop->now_ms - loop->tick : 0;
    return wait > lag ? (int)(wait - lag) : 0;
}

/* ---- io ---- */

int lv_io_start(lv_loop_t *loop, lv_io_t *io)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = io};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, io->fd, &ev) < 0)
        return -errno;
    return 0;
}

static void drop_pending_events(lv_loop_t *loop, lv_io_t *io)
{
    for (int i = loop->event_pos; i < loop->nevents; i++)
        if (loop->events[i].data.ptr == io)
            loop->events[i].data.ptr = NULL;
}

void lv_io_stop(lv_loop_t *loop, lv_io_t *io)
{
    if (io->fd >= 0)
        epoll_ctl(loop->epfd, EPOLL_CTL_DEL, io->fd, NULL);
    drop_pending_events(loop, io);
}

ssize_t lv_io_read(int fd, void *buf, size_t len)
{
    for (;;) {
        ssize_t n = read(fd, buf, len);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        return errno == EAGAIN || errno == EWOULDBLOCK ? LV_IO_AGAIN : 0;
    }
}

int lv_io_pause(lv_loop_t *loop, lv_io_t *io)
{
    struct epoll_event ev = {.events = 0, .data.ptr = io};
    drop_pending_events(loop, io);
    return epoll_ctl(loop->epfd, EPOLL_CTL_MOD, io->fd, &ev) < 0 ? -errno : 0;
}

int lv_io_resume(lv_loop_t *loop, lv_io_t *io)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = io};
    return epoll_ctl(loop->epfd, EPOLL_CTL_MOD, io->fd, &ev) < 0 ? -errno : 0;
}

/* ---- posted callbacks ---- */

void lv_loop_post(lv_loop_t *loop, lv_post_cb cb, void *arg)
{
    posted_t *p = lv_malloc(sizeof *p);
    p->next = NULL;
    p->cb = cb;
    p->arg = arg;
    pthread_mutex_lock(&loop->post_lock);
    *loop->post_tail = p;
    loop->post_tail = &p->next;
    int wake = !loop->wake_pending && current_loop != loop;
    if (wake)
        loop->wake_pending = 1;
    pthread_mutex_unlock(&loop->post_lock);
    if (wake) {
        uint64_t one = 1;
        ssize_t w = write(loop->wakefd, &one, sizeof one);
        (void)w;
    }
}

static bool has_posted(lv_loop_t *loop)
{
    pthread_mutex_lock(&loop->post_lock);
    bool any = loop->post_head != NULL;
    pthread_mutex_unlock(&loop->post_lock);
    return any;
}

static void run_posted(lv_loop_t *loop)
{
    pthread_mutex_lock(&loop->post_lock);
    posted_t *p = loop->post_head;
    loop->post_head = NULL;
    loop->post_tail = &loop->post_head;
    loop->wake_pending = 0;
    pthread_mutex_unlock(&loop->post_lock);
    while (p) {
        posted_t *next = p->next;
        p->cb(loop, p->arg);
        free(p);
        p = next;
    }
}

static void on_wake(lv_loop_t *loop, lv_io_t *io, unsigned events)
{
    uint64_t v;
    while (read(io->fd, &v, sizeof v) > 0) {
    }
    (void)loop;
    (void)events;
}

/* ---- lifecycle ---- */

lv_loop_t *lv_loop_new(unsigned index)
{
    lv_loop_t *loop = lv_calloc(1, sizeof *loop);
    loop->index = index;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    loop->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->epfd < 0 || loop->wakefd < 0) {
        int err = errno;
        if (loop->epfd >= 0)
            close(loop->epfd);
        if (loop->wakefd >= 0)
            close(loop->wakefd);
        free(loop);
        errno = err;
        return NULL;
    }
    loop->events = lv_calloc(MAX_EVENTS, sizeof *loop->events);
    pthread_mutex_init(&loop->post_lock, NULL);
    loop->post_tail = &loop->post_head;
    lv_loop_update_time(loop);
    loop->tick = loop->now_ms;
    loop->wake_io = (lv_io_t){.fd = loop->wakefd, .cb = on_wake, .data = loop};
    lv_io_start(loop, &loop->wake_io);
    return loop;
}

void lv_loop_free(lv_loop_t *loop)
{
    if (!loop)
        return;
    while (has_posted(loop))
        run_posted(loop); /* callbacks may post more */
    lv_io_stop(loop, &loop->wake_io);
    close(loop->wakefd);
    close(loop->epfd);
    pthread_mutex_destroy(&loop->post_lock);
    free(loop->events);
    free(loop);
}

void lv_loop_stop(lv_loop_t *loop)
{
    __atomic_store_n(&loop->stopping, 1, __ATOMIC_RELEASE);
    uint64_t one = 1;
    ssize_t w = write(loop->wakefd, &one, sizeof one);
    (void)w;
}

static void run_once(lv_loop_t *loop)
{
    int timeout = has_posted(loop) ? 0 : next_timeout(loop);
    int n = epoll_wait(loop->epfd, loop->events, MAX_EVENTS, timeout);
    if (n < 0) {
        if (errno != EINTR)
            lv_log_error("loop", "epoll_wait: %s", strerror(errno));
        n = 0;
    }
    lv_loop_update_time(loop);

    loop->nevents = n;
    for (loop->event_pos = 0; loop->event_pos < n;) {
        struct epoll_event *ev = &loop->events[loop->event_pos++];
        lv_io_t *io = ev->data.ptr;
        if (!io)
            continue;
        unsigned events = 0;
        if (ev->events & (EPOLLIN | EPOLLPRI))
            events |= LV_IO_READ;
        if (ev->events & EPOLLOUT)
            events |= LV_IO_WRITE;
        if (ev->events & (EPOLLERR | EPOLLHUP | EPOLLRDHUP))
            events |= LV_IO_HUP | LV_IO_READ;
        io->cb(loop, io, events);
    }
    loop->nevents = 0;

    /* Timers re-armed at "now" by a callback land on the next tick, so they
     * run in the next iteration rather than starving io in this one. */
    advance_timers(loop);

    run_posted(loop);
}

void lv_loop_run(lv_loop_t *loop)
{
    current_loop = loop;
    while (!__atomic_load_n(&loop->stopping, __ATOMIC_ACQUIRE))
        run_once(loop);
    current_loop = NULL;
}

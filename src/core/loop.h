/* loop.h: the event loop, one per thread.
 *
 * A loop owns an epoll set, a timer wheel and a queue of posted callbacks.
 * Each iteration runs in explicit phases:
 *
 *   1. poll     epoll_wait, with a timeout from the wheel (0 if work is posted)
 *   2. clock    the loop's cached time is refreshed once
 *   3. io       ready watchers run, in the order the kernel reported them
 *   4. timers   expired timers run; one re-armed at "now" by its own callback
 *               waits for the next iteration, so timers cannot starve io
 *   5. posted   callbacks posted from other threads or deferred from this one
 *
 * File descriptors are registered once, edge-triggered, for both directions;
 * a watcher's callback is told which directions became ready and must read
 * or write until it would block (or until a short read, which on a stream
 * socket means the buffer was drained) before it can expect another call.
 *
 * Threading: everything except lv_loop_post and lv_loop_stop must be called
 * on the loop's own thread. Timers and watchers are owned by the caller
 * (intrusive, embedded in the caller's structs): the loop never allocates or
 * frees them. A watcher or timer must be removed before its memory is
 * released. */
#ifndef LV_CORE_LOOP_H
#define LV_CORE_LOOP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct lv_loop lv_loop_t;
typedef struct lv_io lv_io_t;
typedef struct lv_timer lv_timer_t;

enum { LV_IO_READ = 1, LV_IO_WRITE = 2, LV_IO_HUP = 4 };

typedef void (*lv_io_cb)(lv_loop_t *loop, lv_io_t *io, unsigned events);
typedef void (*lv_timer_cb)(lv_loop_t *loop, lv_timer_t *timer);
typedef void (*lv_post_cb)(lv_loop_t *loop, void *arg);

/* A file descriptor watcher. `data` is the caller's. */
struct lv_io {
    int fd;
    lv_io_cb cb;
    void *data;
};

/* A one-shot timer, embedded in the caller's struct. */
struct lv_timer {
    lv_timer_t *next, **pprev; /* private: wheel slot list; pprev NULL when not armed */
    uint64_t expire_ms;        /* private */
    lv_loop_t *loop;           /* private: set while armed */
    lv_timer_cb cb;
    void *data;
};

/* Creates a loop. index is the loop's number (0..n-1), used by metrics and
 * logs. Returns NULL with errno set if the kernel refuses epoll/eventfd. */
lv_loop_t *lv_loop_new(unsigned index);

/* Frees the loop. Every watcher and timer must have been removed. */
void lv_loop_free(lv_loop_t *loop);

/* Runs iterations until lv_loop_stop is called. */
void lv_loop_run(lv_loop_t *loop);

/* Asks the loop to return from lv_loop_run after the current iteration.
 * Safe from any thread. */
void lv_loop_stop(lv_loop_t *loop);

/* The loop's index and the loop running on the calling thread (or NULL). */
unsigned lv_loop_index(const lv_loop_t *loop);
lv_loop_t *lv_loop_current(void);

/* Monotonic milliseconds and nanoseconds, cached once per iteration. */
uint64_t lv_loop_now_ms(const lv_loop_t *loop);
uint64_t lv_loop_now_ns(const lv_loop_t *loop);

/* Refreshes the cached time (for long callbacks that need a fresh value). */
void lv_loop_update_time(lv_loop_t *loop);

/* Reads the monotonic clock directly, in ns. */
uint64_t lv_clock_ns(void);

/* Starts watching io->fd for both directions (edge-triggered). Returns 0 or
 * -errno. */
int lv_io_start(lv_loop_t *loop, lv_io_t *io);

/* Stops watching. Safe to call from the watcher's own callback; events
 * already collected for this fd in the current iteration are dropped. */
void lv_io_stop(lv_loop_t *loop, lv_io_t *io);

/* Pauses or resumes reporting for an fd without forgetting it. A paused fd
 * (e.g. a listener at max_connections) reports nothing; resuming re-arms it
 * so pending readiness is reported again. */
int lv_io_pause(lv_loop_t *loop, lv_io_t *io);
int lv_io_resume(lv_loop_t *loop, lv_io_t *io);

/* Reads up to len bytes from a non-blocking fd, retrying EINTR. Returns the
 * count (> 0), LV_IO_AGAIN when nothing is there right now, or 0 when the
 * peer closed or the connection failed (errno tells which, if anyone asks). */
enum { LV_IO_AGAIN = -1 };
ssize_t lv_io_read(int fd, void *buf, size_t len);

/* Arms (or re-arms) a timer to fire after timeout_ms (UINT64_MAX: never, in
 * effect). Timers due at the same millisecond run in no promised order. */
void lv_timer_start(lv_loop_t *loop, lv_timer_t *t, uint64_t timeout_ms);

/* Disarms a timer; harmless if it is not armed. */
void lv_timer_stop(lv_timer_t *t);

static inline bool lv_timer_armed(const lv_timer_t *t) { return t->pprev != 0; }

/* Runs cb(loop, arg) on the loop's thread during its next "posted" phase.
 * Safe from any thread, including the loop's own (then it is a deferral to
 * the end of the iteration). Callbacks run in the order posted. */
void lv_loop_post(lv_loop_t *loop, lv_post_cb cb, void *arg);

#endif

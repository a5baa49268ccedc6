/* log.h: levee's log, one line per event on stderr.
 *
 * Lines look like `2026-11-22T10:00:00.123Z warn  [http] message`. Writing is
 * one write(2) per line so lines from different threads never interleave.
 * Safe to call from any thread. */
#ifndef LV_CORE_LOG_H
#define LV_CORE_LOG_H

/* LV_LOG_OFF is only a threshold (silences everything, for tests). */
typedef enum { LV_LOG_DEBUG, LV_LOG_INFO, LV_LOG_WARN, LV_LOG_ERROR, LV_LOG_OFF } lv_log_level_t;

/* Messages below this level are dropped (default LV_LOG_INFO). */
void lv_log_set_level(lv_log_level_t level);

/* Logs one line tagged with the module name (e.g. "http", "cache"). */
void lv_log(lv_log_level_t level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define lv_log_debug(mod, ...) lv_log(LV_LOG_DEBUG, mod, __VA_ARGS__)
#define lv_log_info(mod, ...) lv_log(LV_LOG_INFO, mod, __VA_ARGS__)
#define lv_log_warn(mod, ...) lv_log(LV_LOG_WARN, mod, __VA_ARGS__)
#define lv_log_error(mod, ...) lv_log(LV_LOG_ERROR, mod, __VA_ARGS__)

#endif

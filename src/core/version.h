/* version.h: levee's version string, reported by `levee version`, the
 * Server header's peers in logs, and /status. */
#ifndef LV_CORE_VERSION_H
#define LV_CORE_VERSION_H

#define LV_VERSION "0.1.0"

#endif

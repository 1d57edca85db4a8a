#ifndef PAYSTORM_CSQLITETUNING_H
#define PAYSTORM_CSQLITETUNING_H

/// Process-wide SQLite settings that must be made before SQLite initialises
/// (sqlite3_config is variadic, so Swift cannot call it directly).

/// Turns off SQLite's memory-usage statistics: with them on, every SQLite
/// allocation and free takes a global mutex and updates counters.
/// Returns the SQLite result code: SQLITE_MISUSE (21) if SQLite was
/// already initialised in this process, which leaves the default in place.
int paystorm_sqlite_disable_memory_statistics(void);

/// Wraps SQLite's own page cache so that a commit no longer scans the whole
/// cache for nothing.
///
/// At every commit the pager truncates its cache to the database's size. The
/// default cache (pcache1) skips that only while no page number it has seen
/// lies beyond the end, and B-tree balancing parks a page for a moment under
/// the lock-byte page's number (1 GiB / page size + 1) while it reorders
/// pages. Until the database outgrows 1 GiB, every commit after such a
/// balance walked every hash bucket and page of the cache: at a 256 MiB cache
/// that was a third of a world run's time. The wrapper keeps its own bound on
/// the page numbers held, not counting pages only parked, and passes a
/// truncation on only when a page may lie at or beyond the limit. Everything
/// else goes to the default cache unchanged.
///
/// Returns the SQLite result code: SQLITE_MISUSE (21) if SQLite was already
/// initialised, which leaves the default cache in place.
int paystorm_sqlite_install_page_cache(void);

/// Since the process started: truncations the wrapper passed on to the
/// default cache, those it skipped (no page could be at or beyond the
/// limit), and pages parked at the lock-byte page's number by B-tree
/// balancing. All stay 0 if the wrapper is not installed.
void paystorm_sqlite_page_cache_counts(long long *passed, long long *skipped, long long *parked);

/// Both settings above are also made when this library is loaded, before
/// any code of the process runs.

#endif

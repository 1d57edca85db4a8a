#ifndef PAYSTORM_CSQLITETUNING_H
#define PAYSTORM_CSQLITETUNING_H

/// Process-wide SQLite settings that must be made before SQLite initialises
/// (sqlite3_config is variadic, so Swift cannot call it directly).
/// Turns off SQLite's memory-usage statistics: with them on, every SQLite
/// allocation and free takes a global mutex and updates counters.
/// Returns the SQLite result code: SQLITE_MISUSE (21) if SQLite was
/// already initialised in this process, which leaves the default in place.
int paystorm_sqlite_disable_memory_statistics(void);

#endif

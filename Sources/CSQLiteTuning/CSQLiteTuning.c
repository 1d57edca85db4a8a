#include "CSQLiteTuning.h"
#include <sqlite3.h>
#include <stdatomic.h>

int paystorm_sqlite_disable_memory_statistics(void) {
    return sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

/// One cache: the default cache's, and what the wrapper knows of its page numbers.
typedef struct {
    sqlite3_pcache *inner;
    /// No page held has a larger number, except pages parked at `parkingKey`.
    unsigned int maxKey;
    /// The lock-byte page's number, never a real page's: B-tree balancing rekeys
    /// a page to it and away again while it swaps two pages' numbers.
    unsigned int parkingKey;
    /// Pages now parked at `parkingKey`.
    int parked;
} TrackedCache;

static sqlite3_pcache_methods2 defaultCache;
static atomic_llong truncationsPassed;
static atomic_llong truncationsSkipped;
static atomic_llong pagesParked;

static int trackedInit(void *arg) { return defaultCache.xInit ? defaultCache.xInit(arg) : SQLITE_OK; }
static void trackedShutdown(void *arg) { if (defaultCache.xShutdown) defaultCache.xShutdown(arg); }

static sqlite3_pcache *trackedCreate(int pageSize, int extraSize, int purgeable) {
    TrackedCache *cache = sqlite3_malloc(sizeof *cache);
    if (!cache) return 0;
    cache->inner = defaultCache.xCreate(pageSize, extraSize, purgeable);
    if (!cache->inner) {
        sqlite3_free(cache);
        return 0;
    }
    cache->maxKey = 0;
    cache->parkingKey = (unsigned int)(0x40000000u / (unsigned int)pageSize) + 1;
    cache->parked = 0;
    return (sqlite3_pcache *)cache;
}

static void trackedCachesize(sqlite3_pcache *p, int pages) {
    defaultCache.xCachesize(((TrackedCache *)p)->inner, pages);
}

static int trackedPagecount(sqlite3_pcache *p) { return defaultCache.xPagecount(((TrackedCache *)p)->inner); }

static sqlite3_pcache_page *trackedFetch(sqlite3_pcache *p, unsigned int key, int createFlag) {
    TrackedCache *cache = (TrackedCache *)p;
    sqlite3_pcache_page *page = defaultCache.xFetch(cache->inner, key, createFlag);
    // A page fetched (not parked) under any number raises the bound, the parking number too.
    if (page && key > cache->maxKey) cache->maxKey = key;
    return page;
}

static void trackedUnpin(sqlite3_pcache *p, sqlite3_pcache_page *page, int discard) {
    defaultCache.xUnpin(((TrackedCache *)p)->inner, page, discard);
}

static void trackedRekey(sqlite3_pcache *p, sqlite3_pcache_page *page, unsigned int oldKey, unsigned int newKey) {
    TrackedCache *cache = (TrackedCache *)p;
    defaultCache.xRekey(cache->inner, page, oldKey, newKey);
    if (oldKey == cache->parkingKey && cache->parked > 0) cache->parked -= 1;
    if (newKey == cache->parkingKey) {
        cache->parked += 1;
        atomic_fetch_add_explicit(&pagesParked, 1, memory_order_relaxed);
    } else if (newKey > cache->maxKey) {
        cache->maxKey = newKey;
    }
}

static void trackedTruncate(sqlite3_pcache *p, unsigned int limit) {
    TrackedCache *cache = (TrackedCache *)p;
    if (cache->parked == 0 && limit > cache->maxKey) {
        atomic_fetch_add_explicit(&truncationsSkipped, 1, memory_order_relaxed);
        return;
    }
    atomic_fetch_add_explicit(&truncationsPassed, 1, memory_order_relaxed);
    defaultCache.xTruncate(cache->inner, limit);
    if (limit == 0) {
        cache->maxKey = 0;
    } else if (cache->maxKey >= limit) {
        cache->maxKey = limit - 1;
    }
    if (cache->parkingKey >= limit) cache->parked = 0;
}

static void trackedDestroy(sqlite3_pcache *p) {
    TrackedCache *cache = (TrackedCache *)p;
    defaultCache.xDestroy(cache->inner);
    sqlite3_free(cache);
}

static void trackedShrink(sqlite3_pcache *p) { defaultCache.xShrink(((TrackedCache *)p)->inner); }

int paystorm_sqlite_install_page_cache(void) {
    sqlite3_pcache_methods2 current;
    int rc = sqlite3_config(SQLITE_CONFIG_GETPCACHE2, &current);
    if (rc != SQLITE_OK) return rc;
    if (current.xCreate == trackedCreate) return SQLITE_OK;
    defaultCache = current;
    sqlite3_pcache_methods2 tracked = {
        .iVersion = 1,
        .pArg = current.pArg,
        .xInit = trackedInit,
        .xShutdown = trackedShutdown,
        .xCreate = trackedCreate,
        .xCachesize = trackedCachesize,
        .xPagecount = trackedPagecount,
        .xFetch = trackedFetch,
        .xUnpin = trackedUnpin,
        .xRekey = trackedRekey,
        .xTruncate = trackedTruncate,
        .xDestroy = trackedDestroy,
        .xShrink = trackedShrink,
    };
    return sqlite3_config(SQLITE_CONFIG_PCACHE2, &tracked);
}

void paystorm_sqlite_page_cache_counts(long long *passed, long long *skipped, long long *parked) {
    *passed = atomic_load_explicit(&truncationsPassed, memory_order_relaxed);
    *skipped = atomic_load_explicit(&truncationsSkipped, memory_order_relaxed);
    *parked = atomic_load_explicit(&pagesParked, memory_order_relaxed);
}

/// Both settings as the library loads, before anything in the process can
/// initialise SQLite (a test process opens databases in many places and in
/// no fixed order, and `sqlite3_config` is not safe once another thread may
/// be opening a connection).
__attribute__((constructor)) static void configureAtLoad(void) {
    paystorm_sqlite_disable_memory_statistics();
    paystorm_sqlite_install_page_cache();
}

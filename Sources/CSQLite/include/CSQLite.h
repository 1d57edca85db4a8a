#ifndef PAYSTORM_CSQLITE_H
#define PAYSTORM_CSQLITE_H

/// SQLite 3.54.1, built into Paystorm from the amalgamation (`sqlite3.c`,
/// public domain, from https://sqlite.org/2026/sqlite-amalgamation-3540100.zip,
/// as vendored by vapor/sqlite-nio 1.13.2 with its symbol prefix taken off).
///
/// The executable defines every `sqlite3_*` function itself, so GRDB and the
/// store call this build, not the system's libsqlite3, whose header they are
/// compiled against (the C API only grows between versions). Debian's build
/// is made without lookaside memory (every small SQLite allocation goes to
/// malloc) and with secure delete; this one has lookaside and no secure
/// delete. The compile-time options are in Package.swift.
///
/// Nothing is declared here: Swift reaches SQLite through GRDB's module.

#endif

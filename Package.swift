// swift-tools-version:6.1
import PackageDescription

// Module layering (each imports only what sits below it):
//
//   paystorm (CLI)
//     ├─ PaystormServer ── Hummingbird, AsyncHTTPClient (server mode: the same engine over HTTP)
//     ├─ PaystormScenario ── Yams (scenario files, thresholds, reports)
//     └─ PaystormBenchmarks
//          ├─ PaystormWorld ── PaystormEngine (the real engine, hosted in virtual time)
//          │    └─ PaystormKernel ── DequeModule
//          │         └─ PaystormStatistics ── CGSL (system GSL)
//          └─ PaystormStore (GRDB → CSQLite: SQLite 3.54.1 built in)
//          └─ PaystormEngine ── PaystormStore, swift-crypto   (sans-I/O: no kernel, no clock)
//
// Only PaystormStatistics imports CGSL.
// Dynamic exclusivity checks on the kernel's class state cost about a third of
// the event loop (measured with `paystorm bench kernel`); debug builds and the
// test suite keep them on, release builds rely on them having passed there.
let releaseSpeed: [SwiftSetting] = [
    .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
]

let package = Package(
    name: "Paystorm",
    products: [
        .executable(name: "paystorm", targets: ["paystorm"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
    ],
    targets: [
        .systemLibrary(
            name: "CGSL",
            pkgConfig: "gsl",
            providers: [.apt(["libgsl-dev"])]
        ),
        .target(
            name: "PaystormStatistics",
            dependencies: ["CGSL"],
            swiftSettings: releaseSpeed
        ),
        .target(
            name: "PaystormKernel",
            dependencies: [
                "PaystormStatistics",
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: releaseSpeed
        ),
        // SQLite itself, built for Paystorm (see Sources/CSQLite/include/CSQLite.h): lookaside
        // memory on, secure delete off, no memory statistics. Optimised in debug builds too, so
        // the test suite does not run an unoptimised database. Any `sqlite3_*` function this
        // build lacked would be taken from the system's libsqlite3 instead, so scripts/test.sh
        // checks that the binaries import none.
        .target(
            name: "CSQLite",
            cSettings: [
                .define("SQLITE_THREADSAFE", to: "1"),
                .define("SQLITE_DEFAULT_MEMSTATUS", to: "0"),
                .define("SQLITE_LIKE_DOESNT_MATCH_BLOBS"),
                .define("SQLITE_MAX_VARIABLE_NUMBER", to: "250000"),
                .define("SQLITE_ENABLE_MATH_FUNCTIONS"),
                .define("SQLITE_OMIT_LOAD_EXTENSION"),
                .define("SQLITE_TEMP_STORE", to: "1"),
                .define("SQLITE_USE_URI", to: "1"),
                // What Debian's configure finds on this platform; without HAVE_FDATASYNC
                // a durable commit would fsync (file metadata too) instead.
                .define("HAVE_FDATASYNC", to: "1"),
                .define("HAVE_GMTIME_R", to: "1"),
                .define("HAVE_LOCALTIME_R", to: "1"),
                .define("HAVE_MALLOC_H", to: "1"),
                .define("HAVE_MALLOC_USABLE_SIZE", to: "1"),
                .define("HAVE_POSIX_FALLOCATE", to: "1"),
                .define("HAVE_STRCHRNUL", to: "1"),
                .define("HAVE_ISNAN", to: "1"),
                .unsafeFlags(["-O2", "-w"]),
            ],
            linkerSettings: [.linkedLibrary("m"), .linkedLibrary("pthread")]
        ),
        // sqlite3_config is variadic: one C function makes the store's process-wide SQLite settings.
        .target(
            name: "CSQLiteTuning",
            dependencies: ["CSQLite"]
        ),
        .target(
            name: "PaystormStore",
            dependencies: [
                "CSQLiteTuning",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
            ],
            swiftSettings: releaseSpeed
        ),
        .target(
            name: "PaystormEngine",
            dependencies: [
                "PaystormStore",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: releaseSpeed
        ),
        .target(
            name: "PaystormWorld",
            dependencies: [
                "PaystormKernel", "PaystormStatistics", "PaystormEngine", "PaystormStore",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: releaseSpeed
        ),
        .target(
            name: "PaystormScenario",
            dependencies: [
                "PaystormWorld", "PaystormStatistics",
                .product(name: "Yams", package: "Yams"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: releaseSpeed
        ),
        .target(
            name: "PaystormBenchmarks",
            dependencies: [
                "PaystormKernel", "PaystormStatistics", "PaystormStore", "PaystormWorld", "PaystormEngine",
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            swiftSettings: releaseSpeed
        ),
        .target(
            name: "PaystormServer",
            dependencies: [
                "PaystormEngine", "PaystormStore", "PaystormStatistics", "PaystormWorld",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "HeapModule", package: "swift-collections"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: releaseSpeed
        ),
        .executableTarget(
            name: "paystorm",
            dependencies: [
                "PaystormBenchmarks",
                "PaystormScenario",
                "PaystormServer",
                "PaystormStore",
                "PaystormWorld",
                "PaystormStatistics",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            swiftSettings: releaseSpeed
        ),
        .testTarget(name: "PaystormStatisticsTests", dependencies: ["PaystormStatistics"]),
        .testTarget(name: "PaystormKernelTests", dependencies: ["PaystormKernel", "PaystormStatistics"]),
        .testTarget(name: "PaystormStoreTests", dependencies: ["PaystormStore", .product(name: "GRDB", package: "GRDB.swift")]),
        .testTarget(name: "PaystormEngineTests", dependencies: ["PaystormEngine", "PaystormStore", .product(name: "GRDB", package: "GRDB.swift")]),
        .testTarget(name: "PaystormBenchmarksTests", dependencies: ["PaystormBenchmarks"]),
        .testTarget(name: "PaystormScenarioTests", dependencies: ["PaystormScenario", "PaystormWorld", "PaystormStatistics"]),
        .testTarget(name: "PaystormServerTests", dependencies: [
            "PaystormServer", "PaystormEngine", "PaystormStore", "PaystormScenario", "PaystormWorld",
            .product(name: "GRDB", package: "GRDB.swift"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdTesting", package: "hummingbird"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        .testTarget(name: "PaystormWorldTests", dependencies: ["PaystormWorld", "PaystormKernel", "PaystormEngine", "PaystormStore", .product(name: "GRDB", package: "GRDB.swift")]),
    ],
    swiftLanguageModes: [.v6]
)

// swift-tools-version: 6.2
import PackageDescription

// Release builds drop Swift's overflow/bounds traps in the numeric targets; the C kernels are always optimised so
// that debug test runs stay fast.
let fastSwift: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release))]

let package = Package(
    name: "moe-serve",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "moe-serve", targets: ["moe-serve"]),
        .executable(name: "moe-bench", targets: ["moe-bench"]),
        .executable(name: "moectl", targets: ["moectl"]),
        .library(name: "MoEModel", targets: ["MoEModel"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        // HTTP server; its default traits pull in swift-configuration, which we do not use.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.0", traits: []),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.0.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.0.0"),
    ],
    targets: [
        // Thin shims over the system C libraries: nothing else lives in them.
        .systemLibrary(name: "CMPI", pkgConfig: "ompi-c",
                       providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        // Vectorised kernels with run-time CPU dispatch (AVX-512 / AVX2+FMA / portable).
        .target(name: "CKernels",
                cSettings: [.unsafeFlags(["-O3", "-fno-math-errno"])]),

        // Tensors, kernels and threads: no model knowledge.
        .target(name: "MoECore", dependencies: ["CKernels", "COpenBLAS"], swiftSettings: fastSwift),
        // Checkpoints, configs, model families, forward pass, sampling. Knows nothing of MPI.
        .target(name: "MoEModel", dependencies: ["MoECore", "CKernels"],
                resources: [.copy("Resources/tokenizer-512"), .copy("Resources/tokenizer-2048")], swiftSettings: fastSwift),
        // tokenizer.json exactly as Hugging Face tokenizers encodes and decodes it. No dependencies.
        .target(name: "MoETokenizer", swiftSettings: fastSwift),
        // Continuous batching and paged KV block bookkeeping: pure, no model, no MPI.
        .target(name: "MoEScheduler", swiftSettings: fastSwift),
        // Load-balance metrics and expert rebalancing (EPLB-style): pure math.
        .target(name: "MoEBalance", swiftSettings: fastSwift),
        // Generation: speculative decoding (rejection sampling, drafts, adaptive k) over the model.
        .target(name: "MoEEngine", dependencies: ["MoEModel", "MoECore", "MoEScheduler", "MoEBalance"], swiftSettings: fastSwift),
        // Config/cluster.yaml: parsing and validation, before any weight loads. No MPI, no model.
        .target(name: "MoEConfig", dependencies: ["MoECore", .product(name: "Yams", package: "Yams")], swiftSettings: fastSwift),
        // OpenAI-compatible HTTP API and durable jobs (SQLite) over the engine. No MPI.
        .target(name: "MoEServer", dependencies: [
            "MoEEngine", "MoEModel", "MoETokenizer", "MoECore",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "GRDB", package: "GRDB.swift"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ], swiftSettings: fastSwift),
        // MPI runtime, roles and (later) expert parallelism applied from outside the model.
        .target(name: "MoECluster", dependencies: ["CMPI", "CKernels", "MoEModel", "MoECore", "MoEConfig", "MoEEngine", "MoEBalance"], swiftSettings: fastSwift),

        .executableTarget(name: "moe-serve", dependencies: [
            "MoEModel", "MoECluster", "MoECore", "MoETokenizer", "MoEConfig", "MoEEngine", "MoEServer",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: fastSwift),
        .executableTarget(name: "moe-bench", dependencies: [
            "MoEModel", "MoECore", "MoETokenizer", "MoECluster", "MoEConfig", "MoEEngine", "MoEBalance", "MoECtlKit",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: fastSwift),

        .target(name: "MoETestSupport", path: "Tests/MoETestSupport"),
        // The client CLI: all logic in the kit (tested), the executable only wires flags to it.
        .target(name: "MoECtlKit"),
        .executableTarget(name: "moectl", dependencies: [
            "MoECtlKit", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .testTarget(name: "MoECtlTests", dependencies: ["MoECtlKit"], exclude: ["Support/fake_server.py"]),
        .testTarget(name: "MoEModelTests", dependencies: ["MoEModel", "MoECore", "CKernels", "MoEEngine", "MoETestSupport"]),
        .testTarget(name: "MoETokenizerTests", dependencies: ["MoETokenizer"]),
        .testTarget(name: "MoESchedulerTests", dependencies: ["MoEScheduler"]),
        .testTarget(name: "MoEBalanceTests", dependencies: ["MoEBalance"]),
        .testTarget(name: "MoEServerTests", dependencies: ["MoEServer", "MoEEngine", "MoEModel", "MoETokenizer", "MoECore", "MoETestSupport"]),
        .testTarget(name: "MoEEngineTests", dependencies: ["MoEEngine", "MoEModel", "MoECore", "MoETestSupport"]),
        .testTarget(name: "MoEClusterTests", dependencies: ["MoECluster", "MoEConfig", "MoEModel", "MoEEngine", "MoETestSupport"]),
        .testTarget(name: "MoEServeTests", dependencies: ["MoEModel", "MoETestSupport"]),
    ]
)

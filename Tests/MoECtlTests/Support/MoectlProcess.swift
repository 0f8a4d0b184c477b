import Foundation

/// What one run of the `moectl` binary did.
struct MoectlRun: Sendable {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs the built `moectl` executable the way a user would.
enum Moectl {
    /// `MOECTL_BIN` overrides the lookup (e.g. to test an installed binary).
    static func executableURL() throws -> URL {
        let environment = ProcessInfo.processInfo.environment
        if let override = environment["MOECTL_BIN"], !override.isEmpty { return URL(fileURLWithPath: override) }
        // The binary is built into the same products directory as the test bundle.
        var directories: [URL] = []
        if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            directories.append(URL(fileURLWithPath: exe).deletingLastPathComponent())
        }
        for bundle in Bundle.allBundles where bundle.bundlePath.hasSuffix(".xctest") {
            directories.append(bundle.bundleURL.deletingLastPathComponent())
        }
        directories.append(URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent())
        for directory in directories {
            let candidate = directory.appendingPathComponent("moectl")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        }
        throw MoectlNotFound(searched: directories.map(\.path))
    }

    /// Runs moectl with `arguments`. MOE_SERVER / MOE_API_TOKEN from the test's own environment are
    /// removed so that only `environment` decides them. A watchdog kills a run that hangs.
    static func run(_ arguments: [String], environment: [String: String] = [:], stdin: String? = nil,
                    timeout: TimeInterval = 30) async throws -> MoectlRun {
        let process = Process()
        process.executableURL = try executableURL()
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        env["MOE_SERVER"] = nil
        env["MOE_API_TOKEN"] = nil
        env.merge(environment) { _, new in new }
        process.environment = env

        // Files rather than pipes: no risk of a full pipe blocking the child while nobody reads.
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("moectl-run-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let outURL = directory.appendingPathComponent("stdout")
        let errURL = directory.appendingPathComponent("stderr")
        try Data().write(to: outURL)
        try Data().write(to: errURL)
        let outHandle = try FileHandle(forWritingTo: outURL)
        let errHandle = try FileHandle(forWritingTo: errURL)
        process.standardOutput = outHandle
        process.standardError = errHandle
        // Standard input from a file too: writing into a pipe of a child that already exited would
        // raise SIGPIPE in the test process.
        if let stdin {
            let inURL = directory.appendingPathComponent("stdin")
            try Data(stdin.utf8).write(to: inURL)
            process.standardInput = try FileHandle(forReadingFrom: inURL)
        } else {
            process.standardInput = FileHandle.nullDevice
        }

        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            process.terminationHandler = { _ in continuation.resume() }
            do {
                try process.run()
            } catch {
                process.terminationHandler = nil
                continuation.resume(throwing: error)
                return
            }
            DispatchQueue.global().asyncAfter(deadline: .now() + timeout) {
                if process.isRunning { process.terminate() }
            }
        }
        try outHandle.close()
        try errHandle.close()
        return MoectlRun(status: process.terminationStatus,
                         stdout: String(decoding: try Data(contentsOf: outURL), as: UTF8.self),
                         stderr: String(decoding: try Data(contentsOf: errURL), as: UTF8.self))
    }

    /// Runs moectl against `server` (passing `--server` after the subcommand's own arguments).
    static func run(_ arguments: [String], against server: FakeServer, environment: [String: String] = [:],
                    stdin: String? = nil) async throws -> MoectlRun {
        try await run(arguments + ["--server", server.url], environment: environment, stdin: stdin)
    }
}

struct MoectlNotFound: Error, CustomStringConvertible {
    var searched: [String]
    var description: String { "moectl binary not found in \(searched); set MOECTL_BIN" }
}

/// A temporary file with `contents`, removed after `body`.
@discardableResult
func withTemporaryFile<T>(_ contents: String, _ body: (String) async throws -> T) async throws -> T {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("moectl-\(UUID().uuidString).jsonl")
    try Data(contents.utf8).write(to: url)
    defer { try? FileManager.default.removeItem(at: url) }
    return try await body(url.path)
}

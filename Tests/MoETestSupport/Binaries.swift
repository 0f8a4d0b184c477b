import Foundation

/// Runs the package's executables as a user would, and captures what they print.
public enum Binaries {
    /// The build products directory holding the test runner (and the executables built with it).
    public static var productsDir: URL {
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var dir = exe.deletingLastPathComponent()
        // The XCTest bundle on Linux is a file in the products dir; on other layouts walk up to find the binary.
        for _ in 0..<4 {
            if FileManager.default.fileExists(atPath: dir.appendingPathComponent("moe-serve").path) { return dir }
            dir = dir.deletingLastPathComponent()
        }
        return Fixtures.packageRoot.appendingPathComponent(".build/debug")
    }

    public static func path(_ name: String) -> URL { productsDir.appendingPathComponent(name) }

    public struct Result {
        public let status: Int32
        public let stdout: String
        public let stderr: String
    }

    /// Runs an executable with arguments and waits (killing it after `timeout` seconds).
    public static func run(_ executable: URL, _ args: [String], environment: [String: String] = [:],
                           timeout: Double = 300) throws -> Result {
        let p = Process()
        p.executableURL = executable
        p.arguments = args
        var env = ProcessInfo.processInfo.environment
        env["SWIFT_BACKTRACE"] = "enable=no"
        for (k, v) in environment { env[k] = v }
        p.environment = env
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        // Read both pipes concurrently so a chatty child never blocks on a full pipe.
        nonisolated(unsafe) var outData = Data(), errData = Data()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async { outData = out.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        group.enter()
        DispatchQueue.global().async { errData = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(20_000) }
        if p.isRunning { p.terminate(); usleep(500_000); if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        group.wait()
        p.waitUntilExit()
        return Result(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                      stderr: String(decoding: errData, as: UTF8.self))
    }

    public static func moeServe(_ args: [String], timeout: Double = 300) throws -> Result {
        try run(path("moe-serve"), args, timeout: timeout)
    }
}

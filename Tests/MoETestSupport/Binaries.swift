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

extension Binaries {
    /// `mpirun` flags for tests: root allowed, more ranks than cores, yielding when idle (the box is oversubscribed),
    /// no crash dumps from many ranks.
    public static let mpirunFlags = ["--allow-run-as-root", "--oversubscribe", "--mca", "mpi_yield_when_idle", "1",
                                     "-x", "SWIFT_BACKTRACE=enable=no", "-x", "MOE_THREADS=1"]

    /// Runs `moe-serve ARGS` on `np` ranks.
    public static func mpirun(np: Int, _ args: [String], timeout: Double = 300) throws -> Result {
        try run(URL(fileURLWithPath: "/usr/bin/mpirun"), mpirunFlags + ["-np", "\(np)", path("moe-serve").path] + args, timeout: timeout)
    }

    /// Runs an MPMD job: each (ranks, args) part starts `ranks` copies of moe-serve with its own arguments.
    public static func mpirunMPMD(_ parts: [(Int, [String])], timeout: Double = 300) throws -> Result {
        var argv = mpirunFlags
        for (i, (n, args)) in parts.enumerated() {
            if i > 0 { argv.append(":") }
            argv += ["-np", "\(n)", path("moe-serve").path] + args
        }
        return try run(URL(fileURLWithPath: "/usr/bin/mpirun"), argv, timeout: timeout)
    }
}

extension Binaries {
    /// Starts a process without waiting; output is collected into the returned `Running`.
    public final class Running: @unchecked Sendable {
        public let process = Process()
        private let lock = NSLock()
        private var out = Data(), err = Data()
        public var stdout: String { lock.lock(); defer { lock.unlock() }; return String(decoding: out, as: UTF8.self) }
        public var stderr: String { lock.lock(); defer { lock.unlock() }; return String(decoding: err, as: UTF8.self) }

        public init(_ exe: URL, _ args: [String]) throws {
            process.executableURL = exe
            process.arguments = args
            var env = ProcessInfo.processInfo.environment
            env["SWIFT_BACKTRACE"] = "enable=no"
            process.environment = env
            let o = Pipe(), e = Pipe()
            process.standardOutput = o
            process.standardError = e
            o.fileHandleForReading.readabilityHandler = { [weak self] h in let d = h.availableData; self?.append(d, err: false) }
            e.fileHandleForReading.readabilityHandler = { [weak self] h in let d = h.availableData; self?.append(d, err: true) }
            try process.run()
        }

        private func append(_ d: Data, err isErr: Bool) {
            lock.lock(); defer { lock.unlock() }
            if isErr { err.append(d) } else { out.append(d) }
        }

        /// Waits up to `timeout` seconds; true if the process ended.
        public func wait(timeout: Double) -> Bool {
            let deadline = Date().addingTimeInterval(timeout)
            while process.isRunning && Date() < deadline { usleep(20_000) }
            if process.isRunning { return false }
            usleep(100_000)   // let the pipes drain
            return true
        }

        public func kill() { if process.isRunning { Foundation.kill(process.processIdentifier, SIGKILL) } }

        /// The MPI rank-0 child of this process, when it is mpirun.
        public var rankZero: Int32? {
            let me = process.processIdentifier
            for p in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
                guard let pid = Int32(p), let st = try? String(contentsOfFile: "/proc/\(p)/stat", encoding: .utf8) else { continue }
                let fields = st.split(separator: ")").last?.split(separator: " ") ?? []
                guard fields.count > 2, Int32(fields[1]) == me,
                      let env = FileManager.default.contents(atPath: "/proc/\(p)/environ") else { continue }
                if env.split(separator: 0).contains(where: { String(decoding: $0, as: UTF8.self) == "OMPI_COMM_WORLD_RANK=0" }) { return pid }
            }
            return nil
        }

        /// SIGTERM, then SIGKILL if it has not ended within `timeout` seconds; waits either way, reading its output
        /// meanwhile (a child blocked on a full pipe would never end). Returns true if it ended on SIGTERM.
        /// Under mpirun the SIGTERM goes to rank 0, as an operator stops a cluster: processes started by Foundation's
        /// Process inherit a signal mask that blocks SIGTERM, so mpirun itself would never see it.
        @discardableResult
        public func stop(timeout: Double = 30) -> Bool {
            guard process.isRunning else { return true }
            Foundation.kill(rankZero ?? process.processIdentifier, SIGTERM)
            if wait(timeout: timeout) { return true }
            kill()
            _ = wait(timeout: 10)
            return false
        }
    }

    public static func startMPI(np: Int, _ args: [String]) throws -> Running {
        try Running(URL(fileURLWithPath: "/usr/bin/mpirun"), mpirunFlags + ["-np", "\(np)", path("moe-serve").path] + args)
    }

    /// The PID of the moe-serve process with MPI world rank `rank` whose command line contains `marker`.
    public static func rankPID(rank: Int, marker: String) -> Int32? {
        let procs = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        for p in procs {
            guard let pid = Int32(p),
                  let comm = try? String(contentsOfFile: "/proc/\(p)/comm", encoding: .utf8), comm.hasPrefix("moe-serve"),
                  let cmd = FileManager.default.contents(atPath: "/proc/\(p)/cmdline"),
                  String(decoding: cmd, as: UTF8.self).contains(marker),
                  let env = FileManager.default.contents(atPath: "/proc/\(p)/environ") else { continue }
            let vars = env.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            if vars.contains("OMPI_COMM_WORLD_RANK=\(rank)") { return pid }
        }
        return nil
    }
}

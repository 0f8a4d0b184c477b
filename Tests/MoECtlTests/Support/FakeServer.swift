import Foundation
import MoECtlKit
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Runs `fake_server.py`, a protocol stand-in that speaks the moe-serve HTTP contract with canned
/// data. It checks moectl's side of the protocol only; the real server is tested in its own package.
final class FakeServer: @unchecked Sendable {
    let port: Int
    /// A port that is bound but not listening: connecting to it is refused.
    let refusedPort: Int
    private let process: Process
    private let stdinPipe: Pipe

    var url: String { "http://127.0.0.1:\(port)" }

    static let scriptURL = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("fake_server.py")

    init(arguments: [String] = []) throws {
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", Self.scriptURL.path] + arguments
        stdinPipe = Pipe()
        let stdoutPipe = Pipe()
        // The server exits when this pipe closes, so it cannot outlive a crashed test run.
        process.standardInput = stdinPipe
        process.standardOutput = stdoutPipe
        try process.run()

        var line = Data()
        let reader = stdoutPipe.fileHandleForReading
        while !line.contains(UInt8(ascii: "\n")) {
            let chunk = reader.availableData
            if chunk.isEmpty { break }  // EOF: the script died before announcing its port
            line.append(chunk)
        }
        struct Announcement: Decodable {
            var port: Int
            var refused_port: Int
        }
        guard let announcement = try? JSONDecoder().decode(Announcement.self, from: line) else {
            process.terminate()
            throw FakeServerError.didNotStart(String(decoding: line, as: UTF8.self))
        }
        port = announcement.port
        refusedPort = announcement.refused_port
    }

    func stop() {
        try? stdinPipe.fileHandleForWriting.close()
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
    }

    deinit { stop() }

    /// Starts a server for the duration of `body`.
    static func with<T>(_ arguments: [String] = [], _ body: (FakeServer) async throws -> T) async throws -> T {
        let server = try FakeServer(arguments: arguments)
        defer { server.stop() }
        return try await body(server)
    }

    /// Requests the server saw (its debug endpoint), oldest first.
    func recordedRequests() async throws -> [RecordedRequest] {
        let (data, _) = try await URLSession.shared.data(from: URL(string: url + "/_debug/requests")!)
        return try JSONDecoder().decode([RecordedRequest].self, from: data)
    }
}

struct RecordedRequest: Decodable {
    var method: String
    var path: String
    var authorization: String?
    var body: JSONValue?
}

enum FakeServerError: Error {
    case didNotStart(String)
}


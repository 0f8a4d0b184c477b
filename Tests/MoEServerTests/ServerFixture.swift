import Foundation
import MoEEngine
import MoEModel
import MoETestSupport
import MoETokenizer
@testable import MoEServer

/// A real server in this process on a free port: the real engine over a fixture model, a temporary job database.
final class LiveServer: @unchecked Sendable {
    let server: APIServer
    let base: String
    let task: Task<Void, Error>
    let dir: URL

    /// `chatTemplate` is written into a copy of the fixture's tokenizer_config.json; with `draft` (a fixture) the
    /// engine speculates k tokens a step with it.
    init(model: String = "tiny-mixtral", token: String? = nil, maxQueued: Int = 64, maxBody: Int = 1 << 20,
         kvBlocks: Int = 128, chatTemplate: String? = nil, draft: String? = nil, k: Int = 3,
         structuredOutputsInReasoning: Bool = false) async throws {
        dir = try Fixtures.copy(model)
        if let t = chatTemplate {
            let url = dir.appendingPathComponent("tokenizer_config.json")
            var obj = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
            obj["chat_template"] = t
            try JSONSerialization.data(withJSONObject: obj).write(to: url)
        }
        let m = try LoadedModel(directory: dir)
        var e = EngineConfig()
        e.kvBlocks = kvBlocks
        var source: DraftSource?
        if let draft {
            e.speculation = .fixed(k)
            source = LocalDraft(model: try DraftModel.load(Fixtures.model(draft).path, target: dir, quantize: .f32).0, capacityTokens: 4096)
        }
        let engine = Engine(transformer: m.transformer, config: e, draft: source)
        let service = GenerationService(engine: engine, tokenizer: try Tokenizer(directory: dir), modelName: model,
                                        eos: m.eosTokenIds, maxOutstanding: maxQueued)
        service.structuredOutputsInReasoning = structuredOutputsInReasoning
        var c = ServerConfig()
        c.port = 0                      // the kernel picks a free port: parallel tests never collide
        c.token = token
        c.maxBodyBytes = maxBody
        c.jobsDB = dir.appendingPathComponent("jobs.sqlite").path
        server = try APIServer(service: service, config: c, info: ClusterInfo(workers: 0, draft: false))
        let srv = server
        let (ports, portSink) = AsyncStream<Int>.makeStream()
        // A server that fails before it listens ends the stream, so the test fails with its error instead of waiting.
        task = Task {
            defer { portSink.finish() }
            try await srv.run { portSink.yield($0) }
        }
        var it = ports.makeAsyncIterator()
        guard let port = await it.next() else {
            _ = try await task.value
            throw CancellationError()
        }
        base = "http://127.0.0.1:\(port)"
    }

    func stop() async {
        task.cancel()
        _ = try? await task.value
        try? FileManager.default.removeItem(at: dir)
    }
}

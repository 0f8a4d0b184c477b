import ArgumentParser
import Foundation
import MoECluster
import MoEConfig
import MoECore
import MoEModel
import MoEServer
import MoETokenizer

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the OpenAI-compatible HTTP API and durable jobs from the coordinator (rank 0) until SIGTERM/SIGINT.")

    @Option(help: "Checkpoint directory (default: the config's, else the bundled demo model).") var model: String?
    @Option(help: "Address to bind (default 127.0.0.1).") var host: String?
    @Option(help: "Port (default 8080; 0 picks a free one).") var port: Int?
    @Option(name: .customLong("jobs-db"), help: "SQLite file of the job store and the stored /v1/responses.") var jobsDB: String?
    @Option(help: "Bearer token required on every route but /health (also MOE_API_TOKEN).") var token: String?
    @Option(name: .customLong("served-model-name"), parsing: .upToNextOption,
            help: "The model's name in the API (vLLM's flag): requests may use any of these, responses carry the first (default: the checkpoint directory's name).")
    var servedModelName: [String] = []
    @Option(name: .customLong("chat-template"), help: "A Jinja chat template file to render chats with instead of the model's (one of the families moe-serve renders).")
    var chatTemplate: String?
    @Flag(name: .customLong("structured-outputs-in-reasoning"), help: "Constrain a thinking model's reply (json_schema, guided_*, required tool calls) inside its <think> block too, not only after it (vLLM's structured_outputs_config.enable_in_reasoning).")
    var structuredOutputsInReasoning = false
    @OptionGroup var cluster: ClusterOptions
    @OptionGroup var speculation: SpeculationOptions

    func run() throws {
        try withCluster(cluster, model: model, speculation: speculation) { session, loaded in
            try reportingErrors { try serve(session, loaded) }
        }
    }

    func serve(_ session: ClusterSession, _ loaded: LoadedModel) throws {
        // Every answer is text: a model without its tokenizer could only be served to fail each request.
        let dir = loaded.directory
        let tokenizerFile = dir.appendingPathComponent("tokenizer.json")
        guard FileManager.default.fileExists(atPath: tokenizerFile.path) else {
            throw CLIError("\(tokenizerFile.path) is missing: serve needs the model's tokenizer.json to turn prompts into tokens and tokens into text")
        }
        let tok = try Tokenizer(directory: dir)
        let template = try chatTemplate.map { path in
            do { return try String(contentsOfFile: path, encoding: .utf8) } catch {
                throw CLIError("cannot read the chat template \(path): \(error.localizedDescription)")
            }
        }
        let c = session.config
        var s = ServerConfig()
        s.host = host ?? c.apiHost
        s.port = port ?? c.apiPort
        s.token = token ?? ProcessInfo.processInfo.environment["MOE_API_TOKEN"] ?? c.apiToken
        s.maxBodyBytes = c.apiMaxBodyBytes
        s.jobConcurrency = c.apiJobConcurrency
        s.shutdownTimeoutSeconds = c.apiShutdownTimeout
        s.jobsDB = jobsDB ?? c.jobsDB
        s.responseRetentionDays = c.responseRetentionDays
        // Stop tokens: generation_config.json / config.json, else the tokenizer's.
        let eos = loaded.eosTokenIds.isEmpty ? tok.eosTokenIds : loaded.eosTokenIds
        let engine = session.makeEngine()
        let names = !servedModelName.isEmpty ? servedModelName : !c.servedModelNames.isEmpty ? c.servedModelNames : [dir.lastPathComponent]
        if let empty = names.firstIndex(where: \.isEmpty) { throw CLIError("--served-model-name: name \(empty + 1) is empty") }
        let name = names[0]
        let service = GenerationService(engine: engine, tokenizer: tok, modelName: name, aliases: Array(names.dropFirst()), eos: eos,
                                        maxOutstanding: c.apiMaxQueued, chatTemplate: template)
        service.structuredOutputsInReasoning = structuredOutputsInReasoning || c.apiStructuredOutputsInReasoning
        let server = try APIServer(service: service, config: s, info: ClusterInfo(workers: session.workers, draft: session.config.draftModel != nil))
        let done = DispatchSemaphore(value: 0)
        final class Outcome: @unchecked Sendable { var error: Error? }
        let outcome = Outcome()
        let layout = session.workers == 0 ? "single process" : "\(session.workers) expert workers" + (session.hasDraftNode ? " + draft node" : "")
        let banner: @Sendable (Int) -> String = { [s] port in
            "moe-serve: serving \(name) on http://\(s.host):\(port)\(s.token != nil ? " (bearer token required)" : "") — \(layout); jobs in \(s.jobsDB)"
        }
        Task {
            do {
                try await server.run { port in logLine(banner(port)) }
            } catch { outcome.error = error }
            done.signal()
        }
        done.wait()
        if let e = outcome.error { throw CLIError("server stopped: \(e)") }
        logLine("moe-serve: stopped")
    }
}

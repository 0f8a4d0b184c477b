import ArgumentParser
import Foundation
import MoECluster
import MoECore
import MoEEngine
import MoEModel
import MoETokenizer

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Generate from a prompt, streaming the text (or ids), then print timings.")

    @Option(help: "Checkpoint directory (Hugging Face format; default: the config's, else the bundled demo model).") var model: String?
    @Option(help: "Prompt text (encoded with the model's tokenizer.json).") var prompt: String?
    @Option(name: .customLong("prompt-ids"), help: "Prompt token ids, comma-separated.") var promptIds: String?
    @Option(name: .customLong("batch-file"), help: "JSON lines of {\"prompt\": text or \"prompt_ids\": [ids], \"max_tokens\": n}: all run together; one JSON line of results per input line.")
    var batchFile: String?
    @Option(name: .customLong("max-tokens"), help: "Maximum new tokens.") var maxTokens: Int = 64
    @Flag(name: .customLong("ignore-eos"), help: "Keep generating past end-of-sequence tokens.") var ignoreEOS = false
    @Flag(help: "Print one JSON object instead of text.") var json = false
    @OptionGroup var sampling: SamplingOptions
    @OptionGroup var cluster: ClusterOptions
    @OptionGroup var speculation: SpeculationOptions

    func validate() throws {
        guard maxTokens >= 1 else { throw ValidationError("--max-tokens must be at least 1") }
        guard [prompt != nil, promptIds != nil, batchFile != nil].filter({ $0 }).count == 1 else {
            throw ValidationError("give exactly one of --prompt, --prompt-ids or --batch-file")
        }
        if let p = promptIds { _ = try parseIds(p, option: "--prompt-ids") }
    }

    func run() throws {
        try withCluster(cluster, model: model, speculation: speculation) { session, loaded in
            try reportingErrors {
                try generate(loaded, session: session)
            }
        }
    }

    func generate(_ loaded: LoadedModel, session: ClusterSession) throws {
        let workers = session.workers
        let url = loaded.directory
        let hasTokenizer = FileManager.default.fileExists(atPath: url.appendingPathComponent("tokenizer.json").path)
        let tok: Tokenizer? = hasTokenizer ? try Tokenizer(directory: url) : nil
        // Stop tokens: generation_config.json / config.json, else the tokenizer's.
        let eos = loaded.eosTokenIds.isEmpty ? (tok?.eosTokenIds ?? []) : loaded.eosTokenIds
        if let file = batchFile { return try runBatch(file, loaded, tok, eos, session) }
        let ids: [Int32]
        if let text = prompt {
            guard let tok else { throw CLIError("\(url.path) has no tokenizer.json; use --prompt-ids") }
            ids = tok.encode(text).map(Int32.init)
            guard !ids.isEmpty else { throw CLIError("the prompt encodes to no tokens") }
        } else {
            ids = try parseIds(promptIds!, option: "--prompt-ids")
        }
        try checkIds(ids, vocab: loaded.spec.vocabSize)
        logLine("model: \(url.path) (\(loaded.spec.modelType), \(loaded.spec.numLayers) layers, \(loaded.spec.numExperts) experts, \(workers == 0 ? "single process" : "\(workers) expert workers")\(session.hasDraftNode ? " + draft node" : "")); threads: \(ComputeThreads.count) (\(ComputeThreads.isa))")
        // Text streams as tokens arrive when the prompt was text; ids are printed whole at the end otherwise.
        var stream = (prompt != nil && !json) ? tok?.streamDecoder(skipSpecialTokens: true) : nil
        let out = FileHandle.standardOutput
        if stream != nil { out.write(Data(prompt!.utf8)) }
        let draft = session.draft
        // A one-shot run stops at the model's context rather than refusing.
        let room = loaded.spec.maxPositions - ids.count
        guard room >= 1 else { throw CLIError("the prompt has \(ids.count) tokens; the model's context is \(loaded.spec.maxPositions)") }
        let maxNew = min(maxTokens, room)
        if maxNew < maxTokens { logLine("note: --max-tokens lowered to \(maxNew) to fit the model's context of \(loaded.spec.maxPositions) tokens") }
        let engine = session.makeEngine(oneShotTokens: ids.count + maxNew + 16)
        let results = try engine.generate(prompts: [ids], maxNewTokens: maxNew, params: [sampling.params],
                                          eos: Set(eos.map(Int32.init)), ignoreEOS: ignoreEOS) { _, t in
            if let piece = stream?.push(Int(t)), !piece.isEmpty { out.write(Data(piece.utf8)) }
        }
        let r = results[0]
        var timing = String(format: "prompt: %d tokens, %.1f tok/s | decode: %d tokens, %.1f tok/s | stop: %@",
                            r.promptTokens, r.prefillTokensPerSecond, r.tokens.count, r.decodeTokensPerSecond, r.stop.rawValue)
        let s = engine.stats.spec
        if draft != nil {
            timing += String(format: "\nspeculative: drafts %d, draft tokens %d, accepted %d, acceptance rate %.3f, mean acceptance length %.2f, accepted per position %@, k %@",
                             s.drafts, s.draftTokens, s.acceptedTokens, s.acceptanceRate, s.meanAcceptanceLength,
                             s.acceptedPerPosition.map(String.init).joined(separator: ","), session.config.speculativeK == "auto" ? "auto (last \(s.k))" : "\(s.k)")
        }
        if json {
            var obj: [String: Any] = [
                "ids": r.tokens.map(Int.init), "prompt_tokens": r.promptTokens,
                "prefill_tok_s": r.prefillTokensPerSecond, "decode_tok_s": r.decodeTokensPerSecond,
                "stop": r.stop.rawValue, "workers": workers,
            ]
            if let tok { obj["text"] = tok.decode(r.tokens.map(Int.init), skipSpecialTokens: true) }
            if draft != nil { obj["spec"] = s.json }
            let data = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else if stream != nil {
            out.write(Data((stream!.finish() + "\n").utf8))
            print(timing)
        } else {
            print(r.tokens.map(String.init).joined(separator: " "))
            print(timing)
        }
    }
}

extension Run {
    /// Every line of the file as one request, all submitted together (continuous batching); results in input order.
    func runBatch(_ file: String, _ loaded: LoadedModel, _ tok: Tokenizer?, _ eos: [Int], _ session: ClusterSession) throws {
        guard let data = FileManager.default.contents(atPath: file) else { throw CLIError("cannot read \(file)") }
        var requests: [EngineRequest] = []
        for (n, line) in String(decoding: data, as: UTF8.self).split(separator: "\n").enumerated() where !line.trimmingCharacters(in: .whitespaces).isEmpty {
            guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                throw CLIError("\(file):\(n + 1): not a JSON object")
            }
            let ids: [Int32]
            if let ps = obj["prompt_ids"] as? [Int] {
                ids = ps.map(Int32.init)
            } else if let text = obj["prompt"] as? String, let tok {
                ids = tok.encode(text).map(Int32.init)
            } else {
                throw CLIError("\(file):\(n + 1): needs \"prompt_ids\" (or \"prompt\" with a tokenizer)")
            }
            try checkIds(ids, vocab: loaded.spec.vocabSize)
            requests.append(EngineRequest(prompt: ids, params: sampling.params, maxTokens: obj["max_tokens"] as? Int ?? maxTokens,
                                          eos: Set(eos.map(Int32.init)), ignoreEOS: ignoreEOS))
        }
        let total = requests.reduce(0) { $0 + $1.prompt.count + $1.maxTokens }
        let engine = session.makeEngine(oneShotTokens: total + 16 * requests.count)
        let t0 = monotonicSeconds()
        let results = try engine.generate(requests)
        let seconds = monotonicSeconds() - t0
        for (i, r) in results.enumerated() {
            var o: [String: Any] = ["index": i, "ids": r.tokens.map(Int.init), "stop": r.stop.rawValue, "prompt_tokens": r.promptTokens]
            if let tok { o["text"] = tok.decode(r.tokens.map(Int.init), skipSpecialTokens: true) }
            print(String(decoding: try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys]), as: UTF8.self))
        }
        let s = engine.stats
        logLine(String(format: "batch: %d requests, %d tokens generated in %.2f s (%.1f tok/s); prompt tokens %d (%d from the prefix cache); preemptions %d",
                       results.count, s.generatedTokens, seconds, Double(s.generatedTokens) / seconds, s.promptTokens,
                       s.cachedPromptTokens, s.preemptions))
    }
}

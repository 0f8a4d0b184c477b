import Foundation
import MoECore
import Yams

/// What `Config/cluster.yaml` holds. Every field has the default documented in that file; command-line flags
/// override the file. `validate` runs before any weight loads.
public struct ClusterConfig: Sendable, Equatable {
    public enum WireDType: String, Sendable { case f32, bf16 }
    public enum PlacementStrategy: String, Sendable { case contiguous, roundRobin = "round_robin", explicit }

    /// Checkpoint directory of the target model (nil: the bundled demo model).
    public var model: String?
    /// vLLM's hf_overrides: a JSON object whose keys replace the target's config.json keys (e.g. YaRN's rope_scaling).
    public var hfOverrides: String?
    /// vLLM's max_model_len: a context (prompt + completion, tokens) below the model's own (nil: the model's).
    public var maxModelLen: Int?
    /// How experts are spread over the expert workers.
    public var placementStrategy: PlacementStrategy = .contiguous
    /// `explicit` only: MoE layer → the worker rank (1…W) of each expert; the key `default` covers unlisted layers.
    public var placementMap: [String: [Int]] = [:]
    /// Extra expert slots per MoE layer for replicas of hot experts when rebalancing (nil: one per worker).
    public var redundantExperts: Int?
    /// Rebalance automatically every this many steps (0: only on request).
    public var rebalanceEverySteps = 0
    /// Expert capacity factor (nil: dropless and exact).
    public var capacityFactor: Double?
    /// Steps the statistics' sliding window covers.
    public var statsWindowSteps = 1000
    /// Scalar type of token rows on the wire: f32 is exact; bf16 halves the bytes.
    public var wireDType: WireDType = .f32
    /// A peer that stays silent this long in the middle of a step is treated as failed and the job aborts.
    public var mpiTimeoutSeconds: Double = 60
    /// How long an idle worker sleeps between polls for the next step (latency of the first layer vs idle CPU).
    public var mpiIdlePollMicroseconds: Int = 200
    /// Micro-batches a step is cut into so that one's attention overlaps another's expert exchange (1: off).
    public var microBatches: Int = 2
    /// Steps with fewer tokens than this are not cut (small steps are bandwidth-bound; cutting reads experts twice).
    public var microBatchMinTokens: Int = 256
    /// Compute threads per rank (0: every core, or MOE_THREADS).
    public var threads: Int = 0
    /// Draft model for speculative decoding: a checkpoint directory, "self" (the target, quantised), "ngram" (no model:
    /// prompt lookup in the sequence's own text), or nil (off).
    public var draftModel: String?
    /// n-gram lengths prompt lookup tries, longest first (`draft.ngram_max`, `draft.ngram_min`).
    public var ngramMax: Int = 4
    public var ngramMin: Int = 2
    /// Drafts come from prompt lookup, not a model: they run on the coordinator, never on a draft node.
    public var draftIsNGram: Bool { draftModel == "ngram" }
    /// A draft model is loaded (on the last rank under mpirun with 3 or more ranks, else on the coordinator).
    public var hasDraftModel: Bool { draftModel != nil && !draftIsNGram }
    /// Storage of the draft's weights (`draft.dtype`; `draft.quantize` is the older spelling); nil is `auto`: a draft
    /// checkpoint as it stores them, "self" (the target) as int4.
    public var draftDType: WeightFormat?
    /// Storage of the routed experts' weights on whichever rank holds them (`experts.dtype`); nil is `auto`: as the
    /// checkpoint stores them, a quantised one at about its size (resolved at load).
    public var expertsDType: WeightFormat?
    /// Storage of every other matrix product: attention, dense MLPs, shared experts, lm_head (`attention.dtype`); nil
    /// is `auto`: each matrix as the checkpoint stores it (bf16 as bf16, a quantised one at about its size).
    public var attentionDType: WeightFormat?

    /// A weight format from its name in the config or on the command line (`key` names it in the error).
    public static func weightFormat(_ name: String, key: String) throws -> WeightFormat {
        try format(name, key: key, auto: false)!
    }
    /// `experts.dtype` or `attention.dtype` (`key`): a weight format, or `auto` (nil).
    public static func roleFormat(_ name: String, key: String) throws -> WeightFormat? {
        try format(name, key: key, auto: true)
    }
    private static func format(_ name: String, key: String, auto: Bool) throws -> WeightFormat? {
        if auto && name.lowercased() == "auto" { return nil }
        guard let f = WeightFormat(name: name) else {
            throw Invalid("\(key) must be \(auto ? "auto or " : "")one of \(WeightFormat.allCases.map(\.rawValue).joined(separator: ", ")) (got '\(name)')")
        }
        return f
    }
    /// KV capacity of the draft, in tokens over all live sequences.
    public var draftMaxTokens: Int = 16384
    /// Tokens drafted per step: a number from 1 to 16, or "auto".
    public var speculativeK: String = "auto"
    /// Upper bound of k under auto.
    public var speculativeMaxK: Int = 6
    /// KV cache on the coordinator: entry type (f32, f16, int8), pool size (blocks, or GiB when blocks is nil),
    /// tokens per block.
    public var kvDType: String = "f32"
    public var kvBlocks: Int?
    public var kvMemoryGB: Double = 1
    public var kvBlockSize: Int = 16
    /// HTTP API (`serve`): address, optional bearer token, limits, the jobs database.
    public var apiHost = "127.0.0.1"
    public var apiPort = 8080
    public var apiToken: String?
    public var apiMaxBodyBytes = 4 << 20
    public var apiMaxQueued = 256
    public var apiJobConcurrency = 16
    public var apiShutdownTimeout = 30.0
    /// A thinking model's constrained reply (json_schema, guided_*, a required tool call) is constrained inside its
    /// <think> block too, not only after it (vLLM's structured_outputs_config.enable_in_reasoning).
    public var apiStructuredOutputsInReasoning = false
    public var jobsDB = "moe-jobs.sqlite"
    /// The names requests may use for the model, the first the one responses carry (vLLM's --served-model-name);
    /// empty: the checkpoint directory's name.
    public var servedModelNames: [String] = []
    /// Days a stored /v1/responses response is kept (OpenAI's 30; 0: for ever).
    public var responseRetentionDays = 30
    /// Scheduler limits per step.
    public var maxBatchedTokens: Int = 2048
    public var maxSeqs: Int = 64

    public init() {}

    public struct Invalid: Error, CustomStringConvertible, Equatable {
        public let description: String
        public init(_ d: String) { description = d }
    }

    /// Parses YAML text. Unknown keys are errors, so a typo never silently falls back to a default.
    public static func parse(yaml text: String, source: String = "config") throws -> ClusterConfig {
        let loaded: Any?
        do { loaded = try Yams.load(yaml: text) } catch {
            throw Invalid("\(source): not valid YAML (\(error))")
        }
        var c = ClusterConfig()
        guard let root = loaded else { return c }
        guard let top = root as? [String: Any] else { throw Invalid("\(source): the top level must be a mapping of keys") }
        let r = Reader(source: source)
        try r.keys(top, allowed: ["model", "hf_overrides", "max_model_len", "placement", "wire_dtype", "mpi", "threads", "draft", "speculative", "kv_cache", "scheduler", "api", "router", "stats", "experts", "attention"], at: "")
        for role in ["experts", "attention"] {
            guard let v = top[role] else { continue }
            let m = try r.map(v, role)
            try r.keys(m, allowed: ["dtype"], at: role + ".")
            if let d = m["dtype"] {
                let name = try r.string(d, role + ".dtype")
                let f = try roleFormat(name, key: role + ".dtype")
                if role == "experts" { c.expertsDType = f } else { c.attentionDType = f }
            }
        }
        if let rt = top["router"] {
            let rm = try r.map(rt, "router")
            try r.keys(rm, allowed: ["capacity_factor"], at: "router.")
            if let v = rm["capacity_factor"], !(v is NSNull) { c.capacityFactor = try r.number(v, "router.capacity_factor") }
        }
        if let st = top["stats"] {
            let sm = try r.map(st, "stats")
            try r.keys(sm, allowed: ["window_steps"], at: "stats.")
            if let v = sm["window_steps"] { c.statsWindowSteps = Int(try r.number(v, "stats.window_steps")) }
        }
        if let v = top["model"] { c.model = try r.optionalString(v, "model") }
        if let v = top["hf_overrides"], !(v is NSNull) {
            // A mapping in YAML, or the JSON text the command-line flag takes.
            if let text = v as? String { c.hfOverrides = text } else {
                let m = try r.map(v, "hf_overrides")
                guard JSONSerialization.isValidJSONObject(m),
                      let d = try? JSONSerialization.data(withJSONObject: m, options: [.sortedKeys]) else {
                    throw Invalid("\(source): hf_overrides must hold plain values (mappings, lists, strings, numbers, booleans)")
                }
                c.hfOverrides = String(decoding: d, as: UTF8.self)
            }
        }
        if let v = top["max_model_len"], !(v is NSNull) { c.maxModelLen = Int(try r.number(v, "max_model_len")) }
        if let p = top["placement"] {
            let pm = try r.map(p, "placement")
            try r.keys(pm, allowed: ["strategy", "map", "redundant_experts", "rebalance_every_steps"], at: "placement.")
            if let v = pm["redundant_experts"], !(v is NSNull) { c.redundantExperts = Int(try r.number(v, "placement.redundant_experts")) }
            if let v = pm["rebalance_every_steps"] { c.rebalanceEverySteps = Int(try r.number(v, "placement.rebalance_every_steps")) }
            if let s = pm["strategy"] {
                let name = try r.string(s, "placement.strategy")
                guard let st = PlacementStrategy(rawValue: name) else {
                    throw Invalid("\(source): placement.strategy must be one of contiguous, round_robin, explicit (got '\(name)')")
                }
                c.placementStrategy = st
            }
            if let m = pm["map"], !(m is NSNull) {
                for (k, v) in try r.map(m, "placement.map") {
                    guard let list = v as? [Any], let ints = list.map({ $0 as? Int }) as? [Int] else {
                        throw Invalid("\(source): placement.map.\(k) must be a list of worker ranks, one per expert")
                    }
                    c.placementMap[k] = ints
                }
            }
        }
        if let w = top["wire_dtype"] {
            let name = try r.string(w, "wire_dtype")
            guard let d = WireDType(rawValue: name) else { throw Invalid("\(source): wire_dtype must be f32 or bf16 (got '\(name)')") }
            c.wireDType = d
        }
        if let m = top["mpi"] {
            let mm = try r.map(m, "mpi")
            try r.keys(mm, allowed: ["timeout_seconds", "idle_poll_us", "micro_batches", "micro_batch_min_tokens"], at: "mpi.")
            if let v = mm["timeout_seconds"] { c.mpiTimeoutSeconds = try r.number(v, "mpi.timeout_seconds") }
            if let v = mm["idle_poll_us"] { c.mpiIdlePollMicroseconds = Int(try r.number(v, "mpi.idle_poll_us")) }
            if let v = mm["micro_batches"] { c.microBatches = Int(try r.number(v, "mpi.micro_batches")) }
            if let v = mm["micro_batch_min_tokens"] { c.microBatchMinTokens = Int(try r.number(v, "mpi.micro_batch_min_tokens")) }
        }
        if let t = top["threads"] { c.threads = Int(try r.number(t, "threads")) }
        if let d = top["draft"] {
            let dm = try r.map(d, "draft")
            try r.keys(dm, allowed: ["model", "dtype", "quantize", "max_tokens", "ngram_max", "ngram_min"], at: "draft.")
            if let v = dm["ngram_max"] { c.ngramMax = Int(try r.number(v, "draft.ngram_max")) }
            if let v = dm["ngram_min"] { c.ngramMin = Int(try r.number(v, "draft.ngram_min")) }
            if let v = dm["model"] { c.draftModel = try r.optionalString(v, "draft.model") }
            for key in ["quantize", "dtype"] {
                if let v = dm[key] { c.draftDType = try roleFormat(try r.string(v, "draft." + key), key: "draft." + key) }
            }
            if let v = dm["max_tokens"] { c.draftMaxTokens = Int(try r.number(v, "draft.max_tokens")) }
        }
        if let kv = top["kv_cache"] {
            let km = try r.map(kv, "kv_cache")
            try r.keys(km, allowed: ["dtype", "blocks", "memory_gb", "block_size"], at: "kv_cache.")
            if let v = km["dtype"] { c.kvDType = try r.string(v, "kv_cache.dtype") }
            if let v = km["blocks"], !(v is NSNull) { c.kvBlocks = Int(try r.number(v, "kv_cache.blocks")) }
            if let v = km["memory_gb"] { c.kvMemoryGB = try r.number(v, "kv_cache.memory_gb") }
            if let v = km["block_size"] { c.kvBlockSize = Int(try r.number(v, "kv_cache.block_size")) }
        }
        if let api = top["api"] {
            let am = try r.map(api, "api")
            try r.keys(am, allowed: ["host", "port", "token", "max_body_bytes", "max_queued_requests", "job_concurrency",
                                     "shutdown_timeout_s", "jobs_db", "structured_outputs_in_reasoning", "served_model_name",
                                     "response_retention_days"], at: "api.")
            if let v = am["host"] { c.apiHost = try r.string(v, "api.host") }
            if let v = am["port"] { c.apiPort = Int(try r.number(v, "api.port")) }
            if let v = am["token"] { c.apiToken = try r.optionalString(v, "api.token") }
            if let v = am["max_body_bytes"] { c.apiMaxBodyBytes = Int(try r.number(v, "api.max_body_bytes")) }
            if let v = am["max_queued_requests"] { c.apiMaxQueued = Int(try r.number(v, "api.max_queued_requests")) }
            if let v = am["job_concurrency"] { c.apiJobConcurrency = Int(try r.number(v, "api.job_concurrency")) }
            if let v = am["shutdown_timeout_s"] { c.apiShutdownTimeout = try r.number(v, "api.shutdown_timeout_s") }
            if let v = am["structured_outputs_in_reasoning"] {
                guard let b = v as? Bool else { throw Invalid("\(source): api.structured_outputs_in_reasoning must be true or false") }
                c.apiStructuredOutputsInReasoning = b
            }
            if let v = am["jobs_db"] { c.jobsDB = try r.string(v, "api.jobs_db") }
            if let v = am["response_retention_days"] {
                let days = try r.number(v, "api.response_retention_days")
                guard days >= 0, days == days.rounded() else { throw Invalid("\(source): api.response_retention_days must be a whole number of days, 0 or more") }
                c.responseRetentionDays = Int(days)
            }
            if let v = am["served_model_name"] {
                let names = try (v as? [Any] ?? [v]).map { try r.string($0, "api.served_model_name") }
                guard !names.isEmpty, names.allSatisfy({ !$0.isEmpty }) else {
                    throw Invalid("\(source): api.served_model_name must be a name or a list of names, none empty")
                }
                c.servedModelNames = names
            }
        }
        if let sc = top["scheduler"] {
            let sm = try r.map(sc, "scheduler")
            try r.keys(sm, allowed: ["max_num_batched_tokens", "max_num_seqs"], at: "scheduler.")
            if let v = sm["max_num_batched_tokens"] { c.maxBatchedTokens = Int(try r.number(v, "scheduler.max_num_batched_tokens")) }
            if let v = sm["max_num_seqs"] { c.maxSeqs = Int(try r.number(v, "scheduler.max_num_seqs")) }
        }
        if let sp = top["speculative"] {
            let sm = try r.map(sp, "speculative")
            try r.keys(sm, allowed: ["k", "max_k"], at: "speculative.")
            if let v = sm["k"] { c.speculativeK = v is Int ? String(v as! Int) : try r.string(v, "speculative.k") }
            if let v = sm["max_k"] { c.speculativeMaxK = Int(try r.number(v, "speculative.max_k")) }
        }
        try c.validate()
        return c
    }

    public static func load(path: String) throws -> ClusterConfig {
        guard let d = FileManager.default.contents(atPath: path) else { throw Invalid("cannot read config file \(path)") }
        guard let text = String(data: d, encoding: .utf8) else { throw Invalid("\(path) is not UTF-8 text") }
        return try parse(yaml: text, source: path)
    }

    /// Checks that need no model or MPI: ranges and the shape of an explicit map.
    public func validate() throws {
        guard mpiTimeoutSeconds > 0 else { throw Invalid("mpi.timeout_seconds must be positive") }
        guard mpiIdlePollMicroseconds >= 0 && mpiIdlePollMicroseconds <= 1_000_000 else {
            throw Invalid("mpi.idle_poll_us must be between 0 and 1000000")
        }
        guard (1...8).contains(microBatches) else { throw Invalid("mpi.micro_batches must be from 1 to 8 (got \(microBatches))") }
        guard microBatchMinTokens >= 1 else { throw Invalid("mpi.micro_batch_min_tokens must be positive") }
        guard threads >= 0 else { throw Invalid("threads must be >= 0") }
        guard draftMaxTokens >= 64 else { throw Invalid("draft.max_tokens must be at least 64") }
        guard ngramMin >= 1 && ngramMax >= ngramMin && ngramMax <= 64 else {
            throw Invalid("draft.ngram_min and draft.ngram_max must satisfy 1 <= ngram_min <= ngram_max <= 64 (got \(ngramMin), \(ngramMax))")
        }
        guard speculativeK == "auto" || (Int(speculativeK).map { $0 >= 1 && $0 <= 16 } ?? false) else {
            throw Invalid("speculative.k must be a number from 1 to 16, or auto (got '\(speculativeK)')")
        }
        guard speculativeMaxK >= 1 && speculativeMaxK <= 16 else { throw Invalid("speculative.max_k must be from 1 to 16") }
        guard ["f32", "f16", "int8"].contains(kvDType) else { throw Invalid("kv_cache.dtype must be f32, f16 or int8 (got '\(kvDType)')") }
        guard kvBlocks.map({ $0 >= 4 }) ?? true else { throw Invalid("kv_cache.blocks must be at least 4") }
        guard kvMemoryGB > 0 else { throw Invalid("kv_cache.memory_gb must be positive") }
        guard [8, 16, 32, 64, 128].contains(kvBlockSize) else { throw Invalid("kv_cache.block_size must be 8, 16, 32, 64 or 128") }
        guard maxBatchedTokens >= 1 else { throw Invalid("scheduler.max_num_batched_tokens must be positive") }
        guard maxModelLen.map({ $0 >= 1 }) ?? true else { throw Invalid("max_model_len must be positive") }
        if let o = hfOverrides {
            guard (try? JSONSerialization.jsonObject(with: Data(o.utf8))) is [String: Any] else {
                throw Invalid("hf_overrides must be a JSON object of config.json keys (got \(o))")
            }
        }
        guard maxSeqs >= 1 else { throw Invalid("scheduler.max_num_seqs must be positive") }
        guard redundantExperts.map({ $0 >= 0 }) ?? true else { throw Invalid("placement.redundant_experts must be >= 0") }
        guard rebalanceEverySteps >= 0 else { throw Invalid("placement.rebalance_every_steps must be >= 0") }
        guard capacityFactor.map({ $0 > 0 }) ?? true else { throw Invalid("router.capacity_factor must be positive (or null for dropless)") }
        guard statsWindowSteps >= 1 else { throw Invalid("stats.window_steps must be positive") }
        guard (0...65535).contains(apiPort) else { throw Invalid("api.port must be between 0 and 65535") }
        guard apiMaxBodyBytes >= 1024 else { throw Invalid("api.max_body_bytes must be at least 1024") }
        guard apiMaxQueued >= 1 else { throw Invalid("api.max_queued_requests must be positive") }
        guard apiJobConcurrency >= 1 else { throw Invalid("api.job_concurrency must be positive") }
        guard apiShutdownTimeout >= 0 else { throw Invalid("api.shutdown_timeout_s must be >= 0") }
        if placementStrategy == .explicit && placementMap.isEmpty {
            throw Invalid("placement.strategy is explicit but placement.map is empty")
        }
        for k in placementMap.keys where k != "default" && Int(k) == nil {
            throw Invalid("placement.map keys must be layer numbers or 'default' (got '\(k)')")
        }
    }
}

/// Typed access to a YAML tree with errors that name the key.
private struct Reader {
    let source: String

    func keys(_ m: [String: Any], allowed: Set<String>, at prefix: String) throws {
        for k in m.keys.sorted() where !allowed.contains(k) {
            throw ClusterConfig.Invalid("\(source): unknown key '\(prefix)\(k)' (known: \(allowed.sorted().map { prefix + $0 }.joined(separator: ", ")))")
        }
    }

    func map(_ v: Any, _ key: String) throws -> [String: Any] {
        if let m = v as? [String: Any] { return m }
        if let m = v as? [Int: Any] { return Dictionary(uniqueKeysWithValues: m.map { (String($0.key), $0.value) }) }
        if let m = v as? [AnyHashable: Any] { return Dictionary(uniqueKeysWithValues: m.map { ("\($0.key)", $0.value) }) }
        throw ClusterConfig.Invalid("\(source): \(key) must be a mapping")
    }

    func string(_ v: Any, _ key: String) throws -> String {
        guard let s = v as? String else { throw ClusterConfig.Invalid("\(source): \(key) must be a string") }
        return s
    }

    func optionalString(_ v: Any, _ key: String) throws -> String? {
        if v is NSNull { return nil }
        return try string(v, key)
    }

    func number(_ v: Any, _ key: String) throws -> Double {
        if let i = v as? Int { return Double(i) }
        if let d = v as? Double { return d }
        throw ClusterConfig.Invalid("\(source): \(key) must be a number")
    }
}

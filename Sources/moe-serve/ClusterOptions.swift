import ArgumentParser
import Foundation
import MoECluster
import MoEConfig
import MoECore
import MoEModel

/// Options every model-running subcommand shares: the cluster config file and the flags that override it.
struct ClusterOptions: ParsableArguments {
    @Option(help: "Cluster config (YAML; see Config/cluster.yaml). Flags override it.") var config: String?
    @Option(name: .customLong("wire-dtype"), help: "Token rows on the wire: f32 (exact) or bf16.") var wireDType: String?
    @Option(help: "Expert placement: contiguous, round_robin or explicit (map in the config).") var placement: String?
    @Option(name: .customLong("kv-dtype"), help: "KV-cache entries: f32, f16 or int8.") var kvDType: String?
    @Option(help: "Every role's weights at once (experts and attention; vLLM's --dtype): auto (the default), f32, f16, bf16, int8, int4, int4z or mxfp4. --experts-dtype and --attention-dtype override it.")
    var dtype: String?
    @Option(name: .customLong("experts-dtype"), help: "Routed experts' weights: auto (the default: as the checkpoint stores them, a quantised one at about its size), f32, f16, bf16, int8, int4 (groups of 32), int4z (int4 with zero points: AWQ's) or mxfp4 (gpt-oss's).")
    var expertsDType: String?
    @Option(name: .customLong("attention-dtype"), help: "Attention, dense MLP, shared-expert and lm_head weights: auto (the default: each as the checkpoint stores it), f32, f16, bf16, int8, int4, int4z or mxfp4.")
    var attentionDType: String?
    @Option(name: .customLong("micro-batches"), help: "Cut each step into this many micro-batches so one's attention runs while another's rows are at the expert workers (mpi.micro_batches; 1 = off).")
    var microBatches: Int?
    @Option(name: .customLong("micro-batch-min-tokens"), help: "Steps with fewer tokens stay whole (mpi.micro_batch_min_tokens).")
    var microBatchMinTokens: Int?
    @Option(name: .customLong("hf-overrides"), help: "A JSON object of config.json keys to replace, as vLLM's (e.g. '{\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0, \"original_max_position_embeddings\": 32768}}').")
    var hfOverrides: String?
    @Option(name: .customLong("max-model-len"), help: "Context in tokens (prompt + completion), at most the model's own.")
    var maxModelLen: Int?

    /// The config file (or defaults) with flags applied, validated before anything loads.
    func resolve(model: String?, speculation: SpeculationOptions? = nil) throws -> ClusterConfig {
        var c = try config.map { try ClusterConfig.load(path: $0) } ?? ClusterConfig()
        if let m = model { c.model = m }
        if let w = wireDType {
            guard let d = ClusterConfig.WireDType(rawValue: w) else { throw ClusterConfig.Invalid("--wire-dtype must be f32 or bf16 (got '\(w)')") }
            c.wireDType = d
        }
        if let p = placement {
            guard let s = ClusterConfig.PlacementStrategy(rawValue: p) else {
                throw ClusterConfig.Invalid("--placement must be contiguous, round_robin or explicit (got '\(p)')")
            }
            c.placementStrategy = s
        }
        if let d = kvDType { c.kvDType = d }
        if let n = microBatches { c.microBatches = n }
        if let n = microBatchMinTokens { c.microBatchMinTokens = n }
        if let o = hfOverrides { c.hfOverrides = o }
        if let n = maxModelLen { c.maxModelLen = n }
        if let d = dtype {
            let f = try ClusterConfig.roleFormat(d, key: "--dtype")
            c.expertsDType = f
            c.attentionDType = f
        }
        if let d = expertsDType { c.expertsDType = try ClusterConfig.roleFormat(d, key: "experts.dtype") }
        if let d = attentionDType { c.attentionDType = try ClusterConfig.roleFormat(d, key: "attention.dtype") }
        try speculation?.apply(to: &c)
        try c.validate()
        return c
    }
}

/// Starts MPI and the cluster for `model`, runs `body` on the coordinator, and serves experts on the workers.
/// Any failure before the run ends the job on every rank with exit code 1, the reason printed once.
func withCluster(_ options: ClusterOptions, model: String?, speculation: SpeculationOptions? = nil,
                 _ body: (ClusterSession, LoadedModel) throws -> Void) throws {
    let mpi = try MPIRuntime.start()
    defer { mpi.finalize() }
    let rank = mpi.rank
    do {
        let config = try options.resolve(model: model, speculation: speculation)
        if config.threads > 0 { ComputeThreads.configure(count: config.threads) }
        let dir = try resolveModel(config.model, announce: rank == 0)
        let session = try ClusterSession(mpi: mpi, config: config)
        try session.load(directory: URL(fileURLWithPath: dir))
        if session.isCoordinator {
            defer { session.shutdown() }
            try body(session, session.model!)
        } else {
            try session.serve()
        }
    } catch let stop as ClusterSession.Stop {
        if !stop.quiet && !stop.message.isEmpty { logLine("error: \(stop.message)") }
        throw ExitCode(1)
    } catch let e as ClusterConfig.Invalid {
        if rank == 0 { logLine("error: \(e)") }   // every rank read the same config: say it once
        throw ExitCode(1)
    }
}

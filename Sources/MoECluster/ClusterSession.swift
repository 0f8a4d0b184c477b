import Foundation
import MoEBalance
import MoEConfig
import MoECore
import MoEEngine
import MoEModel

/// Starts a job's roles for one model: every rank opens the checkpoint, they agree that all see the same model and
/// that all loaded, the coordinator gets a ready `LoadedModel` (remote experts installed) and the workers serve
/// experts until the coordinator shuts them down. Without mpirun the single process holds everything.
public final class ClusterSession {
    public let mpi: MPIRuntime
    public let world: Communicator
    public let role: Role
    public let config: ClusterConfig
    /// Coordinator + workers (nil on a draft rank).
    public let verifier: Communicator?
    public private(set) var model: LoadedModel?
    public private(set) var remote: MPIExperts?
    public private(set) var placement: ExpertPlacement?

    /// The draft in this process (single process, or too few ranks for a draft node) or the draft node's proxy.
    public private(set) var draft: DraftSource?
    private var draftNode: DraftNode?

    public init(mpi: MPIRuntime, config: ClusterConfig) throws {
        let hasDraft = config.hasDraftModel
        self.mpi = mpi
        self.config = config
        world = Communicator.world
        world.timeout = config.mpiTimeoutSeconds
        role = Role.of(rank: world.rank, size: world.size, hasDraft: hasDraft)
        if world.size > 1 {
            let v = try world.split(color: role == .draft ? 1 : 0, key: world.rank)
            v.timeout = config.mpiTimeoutSeconds
            verifier = role == .draft ? nil : v
        } else {
            verifier = nil
        }
    }

    public var isCoordinator: Bool { role == .coordinator }
    public var workers: Int { Role.workerCount(size: world.size, hasDraft: config.hasDraftModel) }
    public var hasDraftNode: Bool { Role.draftNode(size: world.size, hasDraft: config.hasDraftModel) }

    /// How speculation runs, from the config: off without a draft model.
    public var speculation: Speculation {
        guard config.draftModel != nil else { return .off }
        return Int(config.speculativeK).map { .fixed($0) } ?? .auto(maxK: config.speculativeMaxK)
    }

    var draftFormat: WeightFormat? { config.draftDType }
    var configOverrides: Data? { config.hfOverrides.map { Data($0.utf8) } }
    /// How this rank stores the target's weights: the config's formats, fitted to the model once it is read.
    var formats = WeightFormats()

    func loadDraft(target: URL) throws -> LocalDraft {
        let (model, bytes) = try DraftModel.load(config.draftModel!, target: target, quantize: draftFormat,
                                                 targetOverrides: configOverrides)
        let experts = (model.experts as? LocalExperts).map { ", experts \($0.store.format.rawValue)" } ?? ""
        let held = draftFormat?.rawValue ?? model.weights.formatSummary + experts + " (auto)"
        logLine("\(tag): draft \(config.draftModel!) (\(model.spec.modelType), \(held)) holds \(formatGB(bytes)) of weights; RSS \(formatGB(residentBytes()))")
        return LocalDraft(model: model, capacityTokens: config.draftMaxTokens)
    }

    /// Prefix for this rank's log lines.
    public var tag: String { "rank \(world.rank) (\(role))" }

    /// One status exchange: each rank's outcome of `body`, then either all go on or all stop (`Stop`), the reason
    /// printed by the ranks that know it.
    func agree<T>(_ phase: String, _ body: () throws -> T) throws -> T {
        var value: T?
        var message = ""
        do { value = try body() } catch { message = "\(error)" }
        if world.size == 1 {
            if let v = value { return v }
            throw Stop(message: message)
        }
        let ok = try world.allgather(Int32(value == nil ? 0 : 1), what: "agreeing that every rank \(phase)")
        if ok.allSatisfy({ $0 == 1 }) { return value! }
        if value == nil { logLine("\(tag): error: \(message)") }
        let failed = ok.indices.filter { ok[$0] == 0 }
        throw Stop(message: value == nil ? message : "", quiet: true, ranks: failed)
    }

    /// A reason the job cannot start; `quiet` when another rank already printed it.
    public struct Stop: Error, CustomStringConvertible {
        public var message: String
        public var quiet = false
        public var ranks: [Int] = []
        public var description: String { message }
    }

    /// Opens and loads `directory` in the layout of this job. Returns on every rank; workers then call `serve()`.
    public func load(directory: URL) throws {
        let (ckpt, spec) = try agree("opened the checkpoint") { () -> (Checkpoint, ModelSpec) in
            let c = try Checkpoint(directory: directory, configOverrides: configOverrides)
            var spec = try ModelFamilies.spec(configData: c.configData)
            if let n = config.maxModelLen {
                guard n <= spec.maxPositions else {
                    throw Stop(message: "max_model_len \(n) is more than the model's context of \(spec.maxPositions) tokens (max_position_embeddings, stretched by any rope scaling)")
                }
                spec.maxPositions = n
            }
            return (c, spec)
        }
        if world.size > 1 {
            let prints = try world.allgather(ckpt.fingerprint, what: "comparing model fingerprints")
            if Set(prints).count > 1 {
                let others = prints.indices.filter { prints[$0] != prints[0] }
                if world.rank == 0 {
                    logLine("\(tag): error: ranks see different models: rank 0 has \(directory.path) (fingerprint \(String(prints[0], radix: 16))), rank(s) \(others.map(String.init).joined(separator: ", ")) a different config.json, tensor index or tensor data")
                }
                throw Stop(message: "", quiet: true, ranks: others)
            }
        }
        // int8/int4 need rows in groups of 32: a role whose matrices are narrower otherwise is held as f16 (every rank
        // computes the same from the same config.json).
        // experts.dtype auto: the experts as the checkpoint stores them, a quantised checkpoint's at about its size.
        // auto reads (and for int4 converts) one expert: only where it is used, on the coordinator also for the note
        // below on a quantised checkpoint.
        let needsAuto = config.expertsDType == nil || (role == .coordinator && ckpt.quantization != nil)
        let auto = needsAuto ? ExpertStore.autoFormat(ckpt, spec) : .f32, experts = config.expertsDType ?? auto
        if role == .coordinator, config.expertsDType == nil, let q = ckpt.quantization, auto.isGrouped {
            let again = auto != q.heldAs ? " (\(q.heldAs.rawValue) would round them again: not every run of 32 inputs lies in one of their groups with an f16 scale)" : ""
            logLine("\(tag): experts.dtype auto: \(experts.rawValue) for the checkpoint's \(q.integerBits.map { "\($0)-bit " } ?? "")\(q.displayName) weights\(again); --experts-dtype chooses another")
        }
        let fitted = WeightFormats(experts: experts, dense: config.attentionDType).fitting(spec)
        formats = fitted.formats
        if role == .coordinator { for note in fitted.notes { logLine("\(tag): note: \(note)") } }
        // A quantised checkpoint's experts asked for as f32 or f16: what auto would have held them as, and at what cost.
        if role == .coordinator, let q = ckpt.quantization, auto.isGrouped, auto != .int8, [.f32, .f16].contains(formats.experts) {
            let times = Int((Double(formats.experts.rowBytes(32)) / Double(auto.rowBytes(32))).rounded())
            let what = q.method == "mxfp4" ? "MXFP4" : "\(q.integerBits ?? 0)-bit integers (\(q.displayName))"
            logLine("\(tag): note: the checkpoint's experts are \(what): experts.dtype \(auto.rawValue) (auto, the default; --experts-dtype \(auto.rawValue)) holds them at about their size, exactly where each run of 32 inputs lies in one of their groups (int8 too, at twice it); \(formats.experts.rawValue) takes \(times)× \(auto.rawValue)'s memory")
        }
        let W = workers
        let placement = try agree("computed the expert placement") {
            W > 0 ? try ExpertPlacement.make(config, spec: spec, workers: W) : nil
        }
        self.placement = placement
        switch role {
        case .coordinator:
            let m = try agree("loaded its weights") { () -> LoadedModel in
                let m = try LoadedModel(checkpoint: ckpt, spec: spec, localExperts: W == 0, formats: formats)
                if config.draftIsNGram {
                    draft = NGramDraft(vocabSize: spec.vocabSize, maxN: config.ngramMax, minN: config.ngramMin)
                    logLine("\(tag): drafts by prompt lookup (n-grams of \(config.ngramMax) down to \(config.ngramMin) tokens)")
                } else if config.draftModel != nil && !hasDraftNode {
                    draft = try loadDraft(target: directory)
                }
                return m
            }
            if hasDraftNode {
                let initialK = Int(config.speculativeK) ?? 1
                draft = RemoteDraft(channel: Channel(comm: world, peer: world.size - 1), initialK: initialK, timeout: config.mpiTimeoutSeconds)
            }
            if let placement, let verifier {
                let r = MPIExperts(comm: verifier, placement: placement, spec: spec, bf16Wire: config.wireDType == .bf16)
                m.transformer.experts = r
                remote = r
            }
            m.transformer.capacityFactor = config.capacityFactor
            if remote != nil {   // in one process the experts run inline: nothing to overlap with
                m.transformer.microBatches = config.microBatches
                m.transformer.microBatchMinTokens = config.microBatchMinTokens
            }
            model = m
            let dense = m.transformer.weights.formatSummary + (formats.dense == nil ? " (auto)" : "")
            logLine("\(tag): holds \(formatGB(m.bytesHeld)) of weights (dense layers as \(dense)\(W == 0 ? ", all experts as \(formats.experts) — single process" : ", no experts")); RSS \(formatGB(residentBytes()))")
        case .worker(let i):
            let store = try agree("loaded its experts") {
                try ExpertStore(ckpt, spec, format: formats.experts) { l, e in placement!.holds(i, layer: l, expert: e) }
            }
            returnFreeMemory()     // loading is done: its f32 temporaries of conversion
            workerStore = store
            workerCheckpoint = ckpt
            logLine("\(tag): holds \(store.count) experts as \(formats.experts), \(formatGB(store.byteCount)) of weights; RSS \(formatGB(residentBytes()))")
        case .draft:
            let local = try agree("loaded the draft") { try loadDraft(target: directory) }
            draftNode = DraftNode(channel: Channel(comm: world, peer: 0), draft: local, idlePollMicroseconds: config.mpiIdlePollMicroseconds)
        }
        if hasDraftNode {
            // The coordinator's auto k prices a draft step from the draft's bytes and values until it has measured one.
            let mine = SIMD2<Int64>(Int64(draftNode?.draft.bytesPerStep ?? 0), Int64(draftNode?.draft.paramsPerStep ?? 0))
            let all = try world.allgather(mine, what: "sharing the draft's size")
            (draft as? RemoteDraft)?.bytesPerStep = all.map { Double($0[0]) }.max()
            (draft as? RemoteDraft)?.paramsPerStep = all.map { Double($0[1]) }.max()
        }
    }

    private var workerStore: ExpertStore?
    private var workerCheckpoint: Checkpoint?

    /// Worker ranks serve experts, the draft rank drafts, until the coordinator says stop. They ignore SIGTERM and
    /// SIGINT (which mpirun forwards to every rank): the coordinator decides when the job ends, so a graceful stop
    /// lets every rank exit 0; if the coordinator dies, mpirun ends the job anyway.
    public func serve() throws {
        signal(SIGTERM, SIG_IGN)
        signal(SIGINT, SIG_IGN)
        if let node = draftNode {
            do { try node.loop() } catch {
                logLine("\(tag): error: \(error)")
                MPIRuntime.abortJob(code: 1)
            }
            return
        }
        guard case .worker(let i) = role, let store = workerStore, let verifier else { return }
        let w = ExpertWorker(comm: verifier, store: store, index: i, bf16Wire: config.wireDType == .bf16,
                             idlePollMicroseconds: config.mpiIdlePollMicroseconds, checkpoint: workerCheckpoint)
        do { try w.loop() } catch {
            logLine("\(tag): error: \(error)")
            MPIRuntime.abortJob(code: 1)
        }
    }

    /// Coordinator: the serving engine over this session's model, KV cache and scheduler settings from the config,
    /// and the draft (in-process or the draft node). Prints the KV-cache estimate. One-shot runs pass the tokens
    /// they need (`oneShotTokens`) and get a pool of that size unless the config fixes a number of blocks.
    public func makeEngine(oneShotTokens: Int? = nil) -> Engine {
        var e = EngineConfig()
        e.kvDType = KVDType(rawValue: config.kvDType) ?? .f32
        e.blockSize = config.kvBlockSize
        e.kvBlocks = config.kvBlocks
        e.kvMemoryBytes = Int(config.kvMemoryGB * Double(1 << 30))
        if config.kvBlocks == nil, let n = oneShotTokens {
            e.kvBlocks = n / e.blockSize + 2
        }
        e.maxBatchedTokens = config.maxBatchedTokens
        e.maxSeqs = config.maxSeqs
        e.speculation = speculation
        e.expertFormat = formats.experts
        e.statsWindow = config.statsWindowSteps
        let engine = Engine(transformer: model!.transformer, config: e, draft: draft)
        if let remote {
            let redundant = config.redundantExperts ?? remote.placement.workers
            engine.rebalancer = { [remote] load, dryRun in try Self.rebalance(remote, load: load, redundant: redundant, dryRun: dryRun) }
            engine.rebalanceEverySteps = config.rebalanceEverySteps
        }
        logLine("\(tag): \(engine.cacheSummary)")
        return engine
    }

    /// Plans a placement for `load` with `redundant` extra slots and, unless a dry run, moves the experts to it.
    static func rebalance(_ remote: MPIExperts, load: [[Double]], redundant: Int, dryRun: Bool) throws -> [String: Any] {
        let W = remote.placement.workers
        let plan = MoEBalance.rebalance(load: load, redundant: redundant, workers: W)
        let before = remote.placement.replicated.workerLoad(load, workers: W), after = plan.workerLoad(load, workers: W)
        func figures(_ x: [Double]) -> [String: Any] {
            ["worker_tokens": x, "balancedness": BalanceMetrics.balancedness(x), "imbalance_ratio": BalanceMetrics.imbalanceRatio(x),
             "jain_fairness": BalanceMetrics.jainFairness(x)]
        }
        var report: [String: Any] = ["before": figures(before), "after": figures(after), "applied": false,
                                     "redundant_experts": redundant, "replica_count": plan.replicaCount]
        if !dryRun {
            let held = try remote.replace(with: ExpertPlacement(workers: W, plan))
            report["applied"] = true
            report["worker_expert_bytes"] = held
        }
        return report
    }

    /// Coordinator: release the workers and the draft node.
    public func shutdown() {
        remote?.shutdown()
        (draft as? RemoteDraft)?.shutdown()
    }
}

/// Resident set size of this process, from /proc/self/statm.
public func residentBytes() -> Int {
    guard let s = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let f = s.split(separator: " ")
    return f.count > 1 ? (Int(f[1]) ?? 0) * Int(sysconf(Int32(_SC_PAGESIZE))) : 0
}

func formatGB(_ b: Int) -> String {
    b >= 1 << 30 ? String(format: "%.2f GiB", Double(b) / Double(1 << 30)) : String(format: "%.1f MiB", Double(b) / Double(1 << 20))
}

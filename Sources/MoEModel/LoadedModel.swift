import Foundation
import MoECore

/// A checkpoint loaded for one process: the dense weights and, unless told otherwise, every expert locally.
public final class LoadedModel: @unchecked Sendable {
    public let directory: URL
    public let checkpoint: Checkpoint
    public let spec: ModelSpec
    public let transformer: Transformer
    public let eosTokenIds: [Int]

    /// `localExperts` false leaves the expert backend unset (expert parallelism installs its own).
    public convenience init(directory: URL, localExperts: Bool = true) throws {
        let c = try Checkpoint(directory: directory)
        try self.init(checkpoint: c, spec: try ModelFamilies.spec(configData: c.configData), localExperts: localExperts)
    }

    public init(checkpoint: Checkpoint, spec: ModelSpec, localExperts: Bool = true) throws {
        ComputeThreads.ensureConfigured()
        directory = checkpoint.directory
        self.checkpoint = checkpoint
        self.spec = spec
        let dense = try DenseWeights.load(checkpoint, spec)
        var backend: ExpertBackend?
        if localExperts && spec.isMoE {
            backend = LocalExperts(store: try ExpertStore(checkpoint, spec))
        }
        transformer = Transformer(spec: spec, weights: dense, experts: backend)
        eosTokenIds = GenerationConfig.eosTokenIds(directory: directory, spec: spec)
    }

    /// Bytes of weights this process holds (mapped or converted).
    public var bytesHeld: Int { checkpoint.bytesHeld }
}

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
    public convenience init(directory: URL, localExperts: Bool = true, formats: WeightFormats = .f32) throws {
        let c = try Checkpoint(directory: directory)
        try self.init(checkpoint: c, spec: try ModelFamilies.spec(configData: c.configData), localExperts: localExperts,
                      formats: formats)
    }

    /// `formats` chooses how each role's matrices are held (converted at load).
    public init(checkpoint: Checkpoint, spec: ModelSpec, localExperts: Bool = true, formats: WeightFormats = .f32) throws {
        ComputeThreads.ensureConfigured()
        directory = checkpoint.directory
        self.checkpoint = checkpoint
        self.spec = spec
        let dense = try DenseWeights.load(checkpoint, spec).converting(to: formats.dense)
        var backend: ExpertBackend?
        var store: ExpertStore?
        if localExperts && spec.isMoE {
            store = try ExpertStore(checkpoint, spec, format: formats.experts)
            backend = LocalExperts(store: store!)
        }
        bytesHeld = dense.byteCount + (store?.byteCount ?? 0)
        returnFreeMemory()     // loading is done: its f32 temporaries of conversion
        transformer = Transformer(spec: spec, weights: dense, experts: backend)
        eosTokenIds = GenerationConfig.eosTokenIds(directory: directory, spec: spec)
    }

    /// Bytes of weights this process holds in their compute formats (experts included when held here).
    public let bytesHeld: Int
}

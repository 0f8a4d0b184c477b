import ArgumentParser
import Foundation
import MoECore
import MoEConfig
import MoEModel

/// Flags that turn on speculative decoding; they override the config's draft/speculative sections.
struct SpeculationOptions: ParsableArguments {
    @Option(name: .customLong("draft-model"), help: "Draft checkpoint directory, 'self' (the target, quantised) or 'ngram' (no model: prompt lookup in the sequence's own text). Default with --speculative-k: the bundled demo draft.")
    var draftModel: String?
    @Option(name: [.customLong("draft-dtype"), .customLong("draft-quantize")], help: "The draft's weights: auto (the default: as its checkpoint stores them; 'self' as int4), f32, f16, bf16, int8, int4 (groups of 32), int4z (with zero points) or mxfp4.")
    var draftQuantize: String?
    @Option(name: .customLong("speculative-k"), help: "Tokens to draft per step (1…16), or 'auto'.")
    var speculativeK: String?

    func apply(to c: inout ClusterConfig) throws {
        if let d = draftModel { c.draftModel = d }
        if let q = draftQuantize { c.draftDType = try ClusterConfig.roleFormat(q, key: "draft.dtype") }
        if let k = speculativeK {
            c.speculativeK = k
            if c.draftModel == nil {
                guard let d = BundledModels.path("demo-draft") else {
                    throw ClusterConfig.Invalid("--speculative-k needs --draft-model (the bundled Models/demo-draft was not found)")
                }
                c.draftModel = d
            }
        }
    }
}

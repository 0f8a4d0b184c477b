import Foundation
import MoECore
import MoEModel

/// Loading the draft model: a checkpoint directory, or "self" (the target itself, quantised), optionally stored as
/// int8/int4 (groups of 32) so the draft reads fewer bytes per token.
public enum DraftModel {
    public struct Failure: Error, CustomStringConvertible, Equatable {
        public let description: String
        public init(_ d: String) { description = d }
    }

    /// The draft's transformer (its experts, if any, in this process) and the bytes of weights it holds.
    /// `targetOverrides` (--hf-overrides) apply to the target's config, so also to "self". `quantize` nil is auto: a
    /// draft checkpoint as it stores its weights (as the target's auto), "self" as int4 (f16 where its rows are not
    /// in groups of 32): a copy of the target as stored would cost what the target does.
    public static func load(_ path: String, target: URL, quantize: WeightFormat?,
                            targetOverrides: Data? = nil) throws -> (Transformer, Int) {
        let dir = path == "self" ? target : URL(fileURLWithPath: path)
        let ckpt = try Checkpoint(directory: dir, configOverrides: path == "self" ? targetOverrides : nil)
        let spec = try ModelFamilies.spec(configData: ckpt.configData)
        if path != "self" {
            let targetSpec = try ModelFamilies.spec(configData: try Checkpoint(directory: target).configData)
            try checkSameVocabulary(target: target, targetVocab: targetSpec.vocabSize, draft: dir, draftVocab: spec.vocabSize)
        }
        var formats = WeightFormats(experts: quantize ?? ExpertStore.autoFormat(ckpt, spec), dense: quantize)
        if quantize == nil && path == "self" { formats = WeightFormats(experts: .int4, dense: .int4).fitting(spec).formats }
        let dense: DenseWeights, experts: ExpertStore?
        do {
            dense = try DenseWeights.load(ckpt, spec).converting(to: formats.dense)
            experts = spec.isMoE ? try ExpertStore(ckpt, spec, format: formats.experts) : nil
        } catch let e as ModelError {
            if case .cannotConvert = e { throw Failure("cannot store the draft as \(quantize?.rawValue ?? (path == "self" ? "int4" : "auto")): \(e)") }
            throw e
        }
        returnFreeMemory()     // loading is done: its f32 temporaries of conversion
        let t = Transformer(spec: spec, weights: dense, experts: experts.map { LocalExperts(store: $0) })
        return (t, dense.byteCount + (experts?.byteCount ?? 0))
    }

    /// Draft and target must share the vocabulary: the same size and, where both ship tokenizer.json, the same token
    /// for every id (otherwise the verifier would judge tokens it reads differently).
    public static func checkSameVocabulary(target: URL, targetVocab: Int, draft: URL, draftVocab: Int) throws {
        guard targetVocab == draftVocab else {
            throw Failure("draft and target vocabularies differ: the target has \(targetVocab) tokens, the draft \(draftVocab)")
        }
        func tokens(_ dir: URL) -> [String: Int]? {
            guard let d = FileManager.default.contents(atPath: dir.appendingPathComponent("tokenizer.json").path),
                  let j = try? JSONSerialization.jsonObject(with: d) as? [String: Any] else { return nil }
            var v = ((j["model"] as? [String: Any])?["vocab"] as? [String: Int]) ?? [:]
            for a in (j["added_tokens"] as? [[String: Any]]) ?? [] {
                if let c = a["content"] as? String, let id = a["id"] as? Int { v[c] = id }
            }
            return v
        }
        guard let a = tokens(target), let b = tokens(draft) else { return }
        if a != b {
            let byId = { (m: [String: Int]) in Dictionary(m.map { ($0.value, $0.key) }, uniquingKeysWith: { x, _ in x }) }
            let ia = byId(a), ib = byId(b)
            let bad = Set(ia.keys).union(ib.keys).sorted().first { ia[$0] != ib[$0] }!
            throw Failure("draft and target vocabularies differ: token \(bad) is \(ia[bad].map { "'\($0)'" } ?? "missing") in the target but \(ib[bad].map { "'\($0)'" } ?? "missing") in the draft")
        }
    }
}

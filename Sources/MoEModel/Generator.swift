import Foundation
import MoECore

/// Why a generation ended.
public enum StopReason: String, Sendable, Codable { case eos, length }

public struct GenerationResult: Sendable {
    public var tokens: [Int32]
    public var promptTokens: Int
    public var prefillSeconds: Double
    public var decodeSeconds: Double
    public var stop: StopReason

    public var prefillTokensPerSecond: Double { prefillSeconds > 0 ? Double(promptTokens) / prefillSeconds : 0 }
    /// Decode rate over the tokens after the first (the first comes out of the prefill pass).
    public var decodeTokensPerSecond: Double {
        tokens.count > 1 && decodeSeconds > 0 ? Double(tokens.count - 1) / decodeSeconds : 0
    }
}

/// One-shot generation for a batch of prompts: prefill all of them in one pass, then decode them together, each with
/// its own sampler and stopping rule. The serving engine replaces this for continuous batching.
public final class Generator {
    public let transformer: Transformer
    public let cache: KVCache
    private var allocator: BlockAllocator

    public init(transformer: Transformer, maxTokens: Int, blockSize: Int = 16) {
        self.transformer = transformer
        let blocks = (maxTokens + blockSize - 1) / blockSize + 1
        cache = KVCache(spec: transformer.spec, blockSize: blockSize, numBlocks: blocks)
        allocator = BlockAllocator(numBlocks: blocks)
    }

    /// Generates for each prompt until EOS (unless `ignoreEOS`) or `maxNewTokens`. `onToken(sequence, token)` sees
    /// each token as it is chosen.
    public func generate(prompts: [[Int32]], maxNewTokens: Int, params: [SamplingParams], eos: Set<Int32>,
                         ignoreEOS: Bool = false, onToken: (Int, Int32) -> Void = { _, _ in }) -> [GenerationResult] {
        precondition(prompts.count == params.count)
        var samplers = params.map { Sampler($0) }
        var tables = Array(repeating: [Int32](), count: prompts.count)
        var results = prompts.map { GenerationResult(tokens: [], promptTokens: $0.count, prefillSeconds: 0, decodeSeconds: 0, stop: .length) }
        var active = Array(prompts.indices).filter { !prompts[$0].isEmpty && maxNewTokens > 0 }
        var lengths = prompts.map(\.count)
        var inputs: [SequenceInput] = []
        for i in active {
            guard allocator.ensure(&tables[i], tokens: lengths[i] + 1, blockSize: cache.blockSize) else {
                fatalError("KV cache too small for the prompts")
            }
            inputs.append(SequenceInput(tokens: prompts[i], start: 0, blockTable: tables[i]))
        }
        var t0 = monotonicSeconds()
        var first = true
        while !active.isEmpty {
            let out = transformer.forward(inputs, cache: cache)
            let now = monotonicSeconds()
            for i in active {
                if first { results[i].prefillSeconds = now - t0 } else { results[i].decodeSeconds += now - t0 }
            }
            t0 = now
            first = false
            var next: [Int] = [], nextInputs: [SequenceInput] = []
            for (j, i) in active.enumerated() {
                let tok = Int32(samplers[i].next(out.row(out.rows[j].lowerBound)))
                results[i].tokens.append(tok)
                onToken(i, tok)
                if !ignoreEOS && eos.contains(tok) { results[i].stop = .eos; continue }
                if results[i].tokens.count >= maxNewTokens { results[i].stop = .length; continue }
                guard allocator.ensure(&tables[i], tokens: lengths[i] + 1, blockSize: cache.blockSize) else {
                    results[i].stop = .length; continue
                }
                next.append(i)
                nextInputs.append(SequenceInput(tokens: [tok], start: lengths[i], blockTable: tables[i]))
                lengths[i] += 1
            }
            active = next
            inputs = nextInputs
        }
        for i in prompts.indices { allocator.release(&tables[i]) }
        return results
    }
}

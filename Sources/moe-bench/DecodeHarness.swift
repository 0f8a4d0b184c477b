import Foundation
import MoECore
import MoEModel

/// B sequences with short random prompts, prefilled together, then decoded greedily one step at a time.
struct DecodeHarness {
    let transformer: Transformer
    let cache: KVCache
    var inputs: [SequenceInput]
    var output: ForwardOutput
    let prompt: Int
    var step = 0

    init(_ t: Transformer, batch B: Int, promptTokens: Int = 16, steps: Int) {
        transformer = t
        prompt = promptTokens
        let bs = 16, perSeq = (promptTokens + steps + 2 + bs - 1) / bs
        cache = KVCache(spec: t.spec, blockSize: bs, numBlocks: perSeq * B)
        inputs = (0..<B).map { b in
            SequenceInput(tokens: randomTokens(promptTokens, vocab: t.spec.vocabSize, seed: UInt64(10 + b)), start: 0,
                          blockTable: (0..<Int32(perSeq)).map { Int32(b * perSeq) + $0 })
        }
        output = t.forward(inputs, cache: cache)
    }

    /// One decode step for every sequence; returns its wall time in seconds.
    mutating func next() -> Double {
        for b in inputs.indices {
            let tok = Int32(argmax(output.row(output.rows[b].lowerBound)))
            inputs[b] = SequenceInput(tokens: [tok], start: prompt + step, blockTable: inputs[b].blockTable)
        }
        step += 1
        let t0 = monotonicSeconds()
        output = transformer.forward(inputs, cache: cache)
        return monotonicSeconds() - t0
    }
}

func randomTokens(_ n: Int, vocab: Int, seed: UInt64) -> [Int32] {
    var rng = SeededRNG(seed: seed)
    return (0..<n).map { _ in Int32(3 + Int(rng.next() % UInt64(max(vocab - 3, 1)))) }
}

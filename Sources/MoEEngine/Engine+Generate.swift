import Foundation
import MoECore
import MoEModel

/// The outcome of one prompt of a one-shot `generate`.
public struct GenerationResult: Sendable {
    public var tokens: [Int32] = []
    public var promptTokens: Int
    /// Seconds from submission to the first token (prefill), and from there to the last.
    public var prefillSeconds = 0.0
    public var decodeSeconds = 0.0
    public var stop: StopReason = .length

    public var prefillTokensPerSecond: Double { prefillSeconds > 0 ? Double(promptTokens) / prefillSeconds : 0 }
    /// Decode rate over the tokens after the first (the first comes out of the prefill pass).
    public var decodeTokensPerSecond: Double {
        tokens.count > 1 && decodeSeconds > 0 ? Double(tokens.count - 1) / decodeSeconds : 0
    }
}

extension Engine {
    /// Submits every prompt, steps until all have finished and returns their tokens and timings.
    /// `onToken(prompt index, token)` sees each token as it is accepted.
    public func generate(prompts: [[Int32]], maxNewTokens: Int, params: [SamplingParams], eos: Set<Int32>,
                         ignoreEOS: Bool = false, onToken: @escaping (Int, Int32) -> Void = { _, _ in }) throws -> [GenerationResult] {
        precondition(prompts.count == params.count)
        return try generate(prompts.indices.map {
            EngineRequest(prompt: prompts[$0], params: params[$0], maxTokens: maxNewTokens, eos: eos, ignoreEOS: ignoreEOS)
        }, onToken: onToken)
    }

    /// The same for requests with their own limits.
    public func generate(_ requests: [EngineRequest], onToken: @escaping (Int, Int32) -> Void = { _, _ in }) throws -> [GenerationResult] {
        let prompts = requests.map(\.prompt)
        final class Box: @unchecked Sendable { var results: [GenerationResult] = []; var first: [Double] = [] }
        let box = Box()
        box.results = prompts.map { GenerationResult(promptTokens: $0.count) }
        box.first = Array(repeating: 0, count: prompts.count)
        let t0 = monotonicSeconds()
        nonisolated(unsafe) let tokenSink = onToken
        for (i, r) in requests.enumerated() {
            try submit(r) { e in
                let now = monotonicSeconds()
                switch e {
                case .token(let t, _):
                    if box.results[i].tokens.isEmpty { box.results[i].prefillSeconds = now - t0; box.first[i] = now }
                    box.results[i].tokens.append(t)
                    tokenSink(i, t)
                case .promptLogprobs, .prefilled: break
                case .finished(let why):
                    box.results[i].stop = why
                    box.results[i].decodeSeconds = box.first[i] > 0 ? now - box.first[i] : 0
                }
            }
        }
        runUntilIdle()
        return box.results
    }
}

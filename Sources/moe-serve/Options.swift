import ArgumentParser
import Foundation
import MoEModel

struct SamplingOptions: ParsableArguments {
    @Option(help: "Sampling temperature; 0 is greedy.") var temperature: Float = 0
    @Option(name: .customLong("top-k"), help: "Keep the k most likely tokens (0: off).") var topK: Int = 0
    @Option(name: .customLong("top-p"), help: "Keep the smallest set of tokens whose probability reaches p (1: off).") var topP: Float = 1
    @Option(name: .customLong("min-p"), help: "Drop tokens less likely than p × the most likely one (0: off).") var minP: Float = 0
    @Option(help: "Random seed (same seed, same output).") var seed: UInt64?
    @Option(name: .customLong("repetition-penalty"), help: "Divide positive (multiply negative) logits of tokens in the prompt or output by this (1: off).")
    var repetitionPenalty: Float = 1
    @Option(name: .customLong("presence-penalty"), help: "Subtract this from the logit of every token already generated, in [-2, 2].")
    var presencePenalty: Float = 0
    @Option(name: .customLong("frequency-penalty"), help: "Subtract this times its count from each generated token's logit, in [-2, 2].")
    var frequencyPenalty: Float = 0

    func validate() throws {
        guard temperature >= 0 else { throw ValidationError("--temperature must be >= 0") }
        guard topK >= 0 else { throw ValidationError("--top-k must be >= 0") }
        guard topP > 0 && topP <= 1 else { throw ValidationError("--top-p must be in (0, 1]") }
        guard minP >= 0 && minP <= 1 else { throw ValidationError("--min-p must be in [0, 1]") }
        guard repetitionPenalty > 0 && repetitionPenalty.isFinite else { throw ValidationError("--repetition-penalty must be > 0") }
        guard abs(presencePenalty) <= 2 else { throw ValidationError("--presence-penalty must be in [-2, 2]") }
        guard abs(frequencyPenalty) <= 2 else { throw ValidationError("--frequency-penalty must be in [-2, 2]") }
    }

    var params: SamplingParams {
        SamplingParams(temperature: temperature, topK: topK, topP: topP, seed: seed, repetitionPenalty: repetitionPenalty,
                       frequencyPenalty: frequencyPenalty, presencePenalty: presencePenalty, minP: minP)
    }
}

/// Parses "1,15,27" into token ids.
func parseIds(_ s: String, option: String) throws -> [Int32] {
    let parts = s.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
    let ids = parts.compactMap { Int32($0) }
    guard !parts.isEmpty, ids.count == parts.count, ids.allSatisfy({ $0 >= 0 }) else {
        throw ValidationError("\(option) expects comma-separated non-negative token ids, got '\(s)'")
    }
    return ids
}

/// Runs `body`, turning a model or I/O error into one line on stderr and exit code 1.
func reportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let e as ExitCode {
        throw e
    } catch let e as ValidationError {
        throw e
    } catch {
        // Every error type here (ModelError, TokenizerError, CLIError, …) describes itself in one line.
        FileHandle.standardError.write(Data("error: \(error)\n".utf8))
        throw ExitCode(1)
    }
}

func checkIds(_ ids: [Int32], vocab: Int) throws {
    if let bad = ids.first(where: { Int($0) >= vocab }) {
        throw ValidationError("token id \(bad) is outside the model's vocabulary (0..<\(vocab))")
    }
}

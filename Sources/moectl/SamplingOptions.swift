import ArgumentParser
import MoECtlKit

/// Sampling flags shared by `generate` and `submit`; `--max-tokens` is declared by each command
/// because their defaults differ.
struct SamplingOptions: ParsableArguments {
    @Option(help: "Sampling temperature; 0 is greedy (default: the server's).")
    var temperature: Double?

    @Option(name: .customLong("top-p"), help: "Nucleus sampling probability mass, in (0, 1].")
    var topP: Double?

    @Option(name: .customLong("top-k"), help: "Sample from the K most likely tokens; 0 disables.")
    var topK: Int?

    @Option(help: "Random seed, for reproducible sampling.")
    var seed: Int?

    @Option(name: .customLong("stop"), help: ArgumentHelp("Stop when this text is generated (repeatable).", valueName: "STR"))
    var stop: [String] = []

    func parameters(maxTokens: Int?) -> SamplingParameters {
        SamplingParameters(maxTokens: maxTokens, temperature: temperature, topP: topP, topK: topK, seed: seed,
                           stop: stop.isEmpty ? nil : stop)
    }

    /// Same checks as for prompt-file fields, phrased with flag names.
    static func check(_ parameters: SamplingParameters) throws {
        if let problem = parameters.problem() {
            throw ValidationError(problem.replacingFieldNamesWithFlags())
        }
    }
}

private extension String {
    func replacingFieldNamesWithFlags() -> String {
        var text = self
        for (field, flag) in [("max_tokens", "--max-tokens"), ("temperature", "--temperature"),
                              ("top_p", "--top-p"), ("top_k", "--top-k")] where text.hasPrefix(field) {
            text = flag + text.dropFirst(field.count)
        }
        return text
    }
}

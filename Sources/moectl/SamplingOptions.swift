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

    @Option(name: .customLong("min-p"), help: "Drop tokens less likely than this times the most likely one, in [0, 1].")
    var minP: Double?

    @Option(help: "Random seed, for reproducible sampling.")
    var seed: Int?

    @Option(name: .customLong("stop"), help: ArgumentHelp("Stop when this text is generated (repeatable).", valueName: "STR"))
    var stop: [String] = []

    @Option(name: .customLong("presence-penalty"), help: "Subtract this from the logit of every token already generated, in [-2, 2].")
    var presencePenalty: Double?

    @Option(name: .customLong("frequency-penalty"), help: "Subtract this times its count from each generated token's logit, in [-2, 2].")
    var frequencyPenalty: Double?

    @Option(name: .customLong("repetition-penalty"),
            help: "Divide positive (multiply negative) logits of tokens in the prompt or output by this; 1 is off.")
    var repetitionPenalty: Double?

    @Option(name: .customLong("min-tokens"), help: "Generate at least this many tokens before EOS or a stop token id.")
    var minTokens: Int?

    @Option(name: .customLong("stop-token-id"), help: ArgumentHelp("Stop after generating this token id (repeatable).", valueName: "ID"))
    var stopTokenIds: [Int] = []

    @Flag(name: .customLong("json-object"), help: "The text is one JSON object.")
    var jsonObject = false

    @Option(name: .customLong("json-schema"), help: ArgumentHelp("The text is one value of the JSON schema in this file.", valueName: "FILE"))
    var jsonSchema: String?

    @Option(help: ArgumentHelp("The text matches this regular expression, whole.", valueName: "PATTERN"))
    var regex: String?

    @Option(name: .customLong("choice"), help: ArgumentHelp("The text is exactly one of these (repeatable).", valueName: "STR"))
    var choices: [String] = []

    @Option(help: ArgumentHelp("The text is a whole `root` of the GBNF grammar in this file (llama.cpp's notation).", valueName: "FILE"))
    var grammar: String?

    /// The output constraint the flags ask for (at most one).
    func constraint() throws -> OutputConstraint? {
        let asked = [jsonObject, jsonSchema != nil, regex != nil, !choices.isEmpty, grammar != nil].filter { $0 }.count
        guard asked <= 1 else { throw ValidationError("use at most one of --json-object, --json-schema, --regex, --choice and --grammar") }
        if let grammar {
            do { return try OutputConstraint.grammar(fromFile: grammar) } catch { throw ValidationError("--grammar: \(error)") }
        }
        if jsonObject { return .jsonObject }
        if let jsonSchema {
            do { return try OutputConstraint.schema(fromFile: jsonSchema) } catch { throw ValidationError("--json-schema: \(error)") }
        }
        if let regex { return .regex(regex) }
        return choices.isEmpty ? nil : .choice(choices)
    }

    func parameters(maxTokens: Int?) throws -> SamplingParameters {
        SamplingParameters(maxTokens: maxTokens, temperature: temperature, topP: topP, topK: topK, seed: seed,
                           stop: stop.isEmpty ? nil : stop, presencePenalty: presencePenalty, frequencyPenalty: frequencyPenalty,
                           repetitionPenalty: repetitionPenalty, minTokens: minTokens,
                           stopTokenIds: stopTokenIds.isEmpty ? nil : stopTokenIds, minP: minP, constraint: try constraint())
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
                              ("top_p", "--top-p"), ("top_k", "--top-k"), ("min_p", "--min-p"), ("presence_penalty", "--presence-penalty"),
                              ("frequency_penalty", "--frequency-penalty"), ("repetition_penalty", "--repetition-penalty"),
                              ("min_tokens", "--min-tokens"), ("stop_token_ids", "--stop-token-id")] where text.hasPrefix(field) {
            text = flag + text.dropFirst(field.count)
        }
        return text
    }
}

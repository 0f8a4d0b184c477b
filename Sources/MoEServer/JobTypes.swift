import Foundation

/// One job prompt: text, or token ids.
enum JobPrompt: Codable, Sendable {
    case text(String)
    case ids([Int])

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let s = try? c.decode(String.self) { self = .text(s); return }
        if let a = try? c.decode([Int].self) { self = .ids(a); return }
        throw DecodingError.typeMismatch(JobPrompt.self, .init(codingPath: decoder.codingPath,
            debugDescription: "a prompt must be text or a list of token ids"))
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .text(let s): try c.encode(s)
        case .ids(let a): try c.encode(a)
        }
    }
}

/// One item of a job as it is stored and run: its prompt and its sampling fields (the job's, with the prompt's own
/// over them), as one flat JSON object: {"prompt": …, "max_tokens": …, …}.
struct JobItemRequest: Codable, Sendable {
    var prompt: JobPrompt
    var sampling: SamplingFields

    enum CodingKeys: String, CodingKey { case prompt }

    init(prompt: JobPrompt, sampling: SamplingFields) {
        self.prompt = prompt
        self.sampling = sampling
    }

    init(from decoder: any Decoder) throws {
        prompt = try decoder.container(keyedBy: CodingKeys.self).decode(JobPrompt.self, forKey: .prompt)
        sampling = try SamplingFields(from: decoder)
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(prompt, forKey: .prompt)
        try sampling.encode(to: encoder)
    }
}

/// POST /v1/jobs: prompts (each text, or an object with `prompt` and its own sampling fields) and the sampling fields
/// every prompt gets unless it sets its own.
struct JobRequest: Decodable, Sendable {
    /// A prompt as sent; `prompt` is nil when the object has none that is text or token ids (a 400 naming the item).
    struct Entry: Decodable, Sendable {
        var prompt: JobPrompt?
        var sampling: SamplingFields
        var unsupported: (field: String, accepted: String)?

        init(from decoder: any Decoder) throws {
            if let s = try? decoder.singleValueContainer().decode(String.self) {
                prompt = .text(s)
                sampling = SamplingFields()
                return
            }
            guard let c = try? decoder.container(keyedBy: JobItemRequest.CodingKeys.self) else {
                throw DecodingError.typeMismatch(Entry.self, .init(codingPath: decoder.codingPath,
                    debugDescription: "each prompt must be a string or an object with 'prompt'"))
            }
            prompt = try? c.decodeIfPresent(JobPrompt.self, forKey: .prompt)
            sampling = try SamplingFields(from: decoder)
            unsupported = JobRequest.firstUnsupported(try decoder.container(keyedBy: GenerationOptions.AnyKey.self))
        }
    }

    var model: String?
    var prompts: [Entry]
    var sampling: SamplingFields
    /// The first option of the job, or of one of its prompts, that jobs do not carry out (their results are text,
    /// one choice a prompt), with the value they accept.
    var unsupported: (field: String, accepted: String)?

    enum CodingKeys: String, CodingKey { case model, prompts }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        model = try c.decodeIfPresent(String.self, forKey: .model)
        prompts = try c.decode([Entry].self, forKey: .prompts)
        sampling = try SamplingFields(from: decoder)
        unsupported = Self.firstUnsupported(try decoder.container(keyedBy: GenerationOptions.AnyKey.self))
            ?? prompts.lazy.compactMap(\.unsupported).first
    }

    /// What the completion routes refuse, and what only they carry out: log-probabilities, echo, several choices,
    /// streaming (defaults pass).
    static func firstUnsupported(_ c: KeyedDecodingContainer<GenerationOptions.AnyKey>) -> (field: String, accepted: String)? {
        if let u = GenerationOptions.firstUnsupported(c) { return u }
        func key(_ k: String) -> GenerationOptions.AnyKey { GenerationOptions.AnyKey(stringValue: k) }
        for k in ["logprobs", "prompt_logprobs"] {
            if let v = (try? c.decodeIfPresent(Int.self, forKey: key(k))) ?? nil { return (k, "null (got \(v))") }
        }
        for k in ["logprobs", "echo", "stream"] where ((try? c.decodeIfPresent(Bool.self, forKey: key(k))) ?? nil) == true {
            return (k, "false")
        }
        for (k, d) in [("top_logprobs", 0), ("n", 1)] {
            if let v = (try? c.decodeIfPresent(Int.self, forKey: key(k))) ?? nil, v != d { return (k, "\(d)") }
        }
        return nil
    }
}

/// One line of a job's results.
struct JobResultLine: Encodable, Sendable {
    var index: Int
    var prompt: JobPrompt?
    var text: String?
    var finishReason: String?
    var usage: Usage?
    var error: String?
    enum CodingKeys: String, CodingKey { case index, prompt, text, finishReason = "finish_reason", usage, error }
}

import Foundation

// The chat completion route's request and response types (messages, tools, replies, stream deltas).

/// A chat message. `content` may be a string, a list of text parts (`[{"type": "text", "text": …}]`, joined with
/// newlines, as vLLM joins them), or null (an assistant turn without text); OpenAI's `developer` role is the system
/// role. Parts of other types (images, audio) are refused: this server reads text. An assistant turn may carry the
/// tool calls it made (their `arguments` a JSON text, read keeping its key order), a `tool` turn the answer to one.
struct ChatMessage: Decodable, Sendable {
    var role: String
    var content: String
    var toolCalls: [ToolCall] = []
    /// vLLM's field for an assistant turn's reasoning (Qwen3's template shows it in a <think> block): `reasoning`
    /// (vLLM 0.11+) or `reasoning_content`.
    var reasoningContent: String?
    /// gpt-oss's template's field for it (`thinking`), read before the others there.
    var thinking: String?
    /// A tool result's call: `tool_call_id` (OpenAI's), and `call_id`, which Mistral's templates read first.
    var toolCallId: String?
    var callId: String?

    /// A tool call in the conversation's history.
    struct ToolCall: Sendable {
        var name: String
        var arguments: OrderedJSON
        var id: String? = nil
    }

    init(role: String, content: String, toolCalls: [ToolCall] = []) {
        self.role = role
        self.content = content
        self.toolCalls = toolCalls
    }

    enum CodingKeys: String, CodingKey {
        case role, content, toolCalls = "tool_calls", reasoningContent = "reasoning_content", reasoning, toolCallId = "tool_call_id", callId = "call_id"
        case thinking
    }

    struct Part: Decodable {
        var type: String
        var text: String?
    }

    struct WireCall: Decodable {
        struct Function: Decodable {
            var name: String
            var arguments: String?
        }
        var function: Function
        var id: String?
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let role = try c.decode(String.self, forKey: .role)
        self.role = role == "developer" ? "system" : role
        if let s = try? c.decodeIfPresent(String.self, forKey: .content) {
            content = s
        } else if let parts = try? c.decodeIfPresent([Part].self, forKey: .content) {
            if let other = parts.first(where: { $0.type != "text" || $0.text == nil }) {
                throw DecodingError.dataCorruptedError(forKey: .content, in: c, debugDescription:
                    "only text parts ({\"type\": \"text\", \"text\": …}) are supported, not \(other.type)")
            }
            content = parts.compactMap(\.text).joined(separator: "\n")
        } else if (try? c.decodeNil(forKey: .content)) ?? true {
            content = ""
        } else {
            throw DecodingError.typeMismatch(String.self, .init(codingPath: c.codingPath + [CodingKeys.content],
                debugDescription: "content must be a string or a list of text parts"))
        }
        reasoningContent = try c.decodeIfPresent(String.self, forKey: .reasoning) ?? c.decodeIfPresent(String.self, forKey: .reasoningContent)
        thinking = try c.decodeIfPresent(String.self, forKey: .thinking)
        toolCalls = try (c.decodeIfPresent([WireCall].self, forKey: .toolCalls) ?? []).map { call in
            let arguments: OrderedJSON
            do { arguments = try OrderedJSON.parse(call.function.arguments ?? "{}") } catch {
                throw DecodingError.dataCorruptedError(forKey: .toolCalls, in: c, debugDescription:
                    "the arguments of tool call \(call.function.name) are not JSON (\(error)): send the arguments object as JSON text")
            }
            return ToolCall(name: call.function.name, arguments: arguments, id: call.id)
        }
        toolCallId = try c.decodeIfPresent(String.self, forKey: .toolCallId)
        callId = try c.decodeIfPresent(String.self, forKey: .callId)
    }
}

/// The assistant's message in a response: its text (null when it only called tools), a thinking model's reasoning
/// and its tool calls. The reasoning goes out under both names clients read: `reasoning_content` (llama.cpp, vLLM
/// before 0.11) and `reasoning` (vLLM since).
struct ChatReply: Encodable, Sendable {
    var role = "assistant"
    var content: String?
    var reasoningContent: String?
    var toolCalls: [ToolCallOut] = []

    enum CodingKeys: String, CodingKey { case role, content, reasoningContent = "reasoning_content", reasoning, toolCalls = "tool_calls" }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(role, forKey: .role)
        try c.encode(content, forKey: .content)
        try c.encodeIfPresent(reasoningContent, forKey: .reasoning)
        try c.encodeIfPresent(reasoningContent, forKey: .reasoningContent)
        if !toolCalls.isEmpty { try c.encode(toolCalls, forKey: .toolCalls) }
    }
}

/// A tool call as responses give it; in a stream's deltas with its `index` among the choice's calls, and (after the
/// first delta of a call) only the arguments' next piece.
struct ToolCallOut: Encodable, Sendable {
    struct Function: Encodable, Sendable {
        var name: String?
        /// The arguments object as JSON text (or its next piece).
        var arguments: String
    }
    var index: Int? = nil
    var id: String?
    var type: String? = "function"
    var function: Function
}

struct ChatRequest: Decodable, Sendable {
    var messages: [ChatMessage]
    var maxCompletionTokens: Int?
    var options: GenerationOptions
    var tools: [Tool]?
    var toolChoice: ToolRequest.Choice?
    var parallelToolCalls: Bool?
    /// vLLM's chat_template_kwargs: the template variables this server's templates read.
    var templateOptions = ChatTemplate.Options()
    /// llama.cpp's: "none" leaves a thinking model's <think> block in `content` instead of `reasoning_content`.
    var reasoningFormat: String?
    /// vLLM's: a Jinja chat template for this request instead of the model's (one of the families rendered).
    var chatTemplate: String?

    /// A tool as OpenAI's API defines it (`{"type": "function", "function": {"name", "description", "parameters"}}`).
    struct Tool: Decodable, Sendable {
        struct Function: Decodable, Sendable {
            var name: String
            var parameters: JSONValue?
        }
        var type: String
        var function: Function
    }

    enum CodingKeys: String, CodingKey {
        case messages, maxCompletionTokens = "max_completion_tokens", tools, toolChoice = "tool_choice"
        case parallelToolCalls = "parallel_tool_calls", chatTemplateKwargs = "chat_template_kwargs"
        case reasoningFormat = "reasoning_format", addGenerationPrompt = "add_generation_prompt"
        case continueFinalMessage = "continue_final_message", chatTemplate = "chat_template", reasoningEffort = "reasoning_effort"
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        messages = try c.decode([ChatMessage].self, forKey: .messages)
        maxCompletionTokens = try c.decodeIfPresent(Int.self, forKey: .maxCompletionTokens)
        options = try GenerationOptions(from: decoder)
        if options.unsupported?.field == "tools" { options.unsupported = nil }
        tools = try c.decodeIfPresent([Tool].self, forKey: .tools)
        parallelToolCalls = try c.decodeIfPresent(Bool.self, forKey: .parallelToolCalls)
        templateOptions = try c.decodeIfPresent(ChatTemplate.Options.self, forKey: .chatTemplateKwargs) ?? .init()
        let cont = try c.decodeIfPresent(Bool.self, forKey: .continueFinalMessage) ?? false
        let opens = try c.decodeIfPresent(Bool.self, forKey: .addGenerationPrompt)
        if cont && opens == true {
            throw DecodingError.dataCorruptedError(forKey: .continueFinalMessage, in: c, debugDescription:
                "continue_final_message and add_generation_prompt cannot both be true (the reply either continues the last message or opens a new one)")
        }
        templateOptions.continueFinalMessage = cont
        templateOptions.addGenerationPrompt = opens ?? !cont
        reasoningFormat = try c.decodeIfPresent(String.self, forKey: .reasoningFormat)
        // OpenAI's reasoning_effort, for gpt-oss's template (chat_template_kwargs' wins where both are given).
        if templateOptions.reasoningEffort == nil { templateOptions.reasoningEffort = try c.decodeIfPresent(String.self, forKey: .reasoningEffort) }
        if let e = templateOptions.reasoningEffort, !["low", "medium", "high"].contains(e) {
            throw DecodingError.dataCorruptedError(forKey: .reasoningEffort, in: c, debugDescription: "must be \"low\", \"medium\" or \"high\" (got \"\(e)\")")
        }
        chatTemplate = try c.decodeIfPresent(String.self, forKey: .chatTemplate)
        if let s = try? c.decodeIfPresent(String.self, forKey: .toolChoice) {
            switch s {
            case "none": toolChoice = ToolRequest.Choice.none
            case "auto": toolChoice = .auto
            case "required": toolChoice = .required
            default:
                throw DecodingError.dataCorruptedError(forKey: .toolChoice, in: c, debugDescription:
                    "must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": …}} (got \"\(s)\")")
            }
        } else if c.contains(.toolChoice), !((try? c.decodeNil(forKey: .toolChoice)) ?? false) {
            struct Named: Decodable {
                struct Function: Decodable { var name: String }
                var type: String
                var function: Function
            }
            let named = try c.decode(Named.self, forKey: .toolChoice)
            guard named.type == "function" else {
                throw DecodingError.dataCorruptedError(forKey: .toolChoice, in: c, debugDescription: "type must be \"function\"")
            }
            toolChoice = .named(named.function.name)
        }
    }
}

/// A chat choice (`message`) or chunk choice (`delta`); `logprobs` is null unless the request asked for them.
struct ChatChoice: Encodable, Sendable {
    var index: Int
    var message: ChatReply?
    var delta: ChatDelta?
    var logprobs: ChatLogprobs? = nil
    var finishReason: String?
    /// vLLM's: the stop string or stop token id that ended the choice (null for EOS or length); sent with its end.
    var stopReason: StopMatch? = nil
    enum CodingKeys: String, CodingKey { case index, message, delta, logprobs, finishReason = "finish_reason", stopReason = "stop_reason" }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(index, forKey: .index)
        try c.encodeIfPresent(message, forKey: .message)
        try c.encodeIfPresent(delta, forKey: .delta)
        try c.encode(logprobs, forKey: .logprobs)
        try c.encode(finishReason, forKey: .finishReason)
        if finishReason != nil { try c.encode(stopReason, forKey: .stopReason) }
    }
}

/// A stream's delta; reasoning under both names, as in `ChatReply`.
struct ChatDelta: Encodable, Sendable {
    var role: String?
    var content: String?
    var reasoningContent: String?
    var toolCalls: [ToolCallOut]?
    enum CodingKeys: String, CodingKey { case role, content, reasoningContent = "reasoning_content", reasoning, toolCalls = "tool_calls" }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeIfPresent(role, forKey: .role)
        try c.encodeIfPresent(content, forKey: .content)
        try c.encodeIfPresent(reasoningContent, forKey: .reasoning)
        try c.encodeIfPresent(reasoningContent, forKey: .reasoningContent)
        try c.encodeIfPresent(toolCalls, forKey: .toolCalls)
    }

    var isEmpty: Bool { content == nil && reasoningContent == nil && toolCalls == nil }
}

struct ChatResponse: Encodable, Sendable {
    var id: String
    var object: String
    var created: Int
    var model: String
    var choices: [ChatChoice]
    var usage: Usage?
    /// Present when the request asked for prompt_logprobs (vLLM puts a chat prompt's here, not in a choice).
    var promptLogprobs: [PromptLogprobs?]? = nil
    enum CodingKeys: String, CodingKey { case id, object, created, model, choices, usage, promptLogprobs = "prompt_logprobs" }
}

import Foundation
import MoETokenizer

/// The chat templates of the common model families, recognised in tokenizer_config.json's Jinja source and rendered
/// natively: ChatML (Qwen2/2.5/3, with Qwen2.5's and Qwen3's tool calls, Qwen3's thinking and Qwen3-Coder's XML tool
/// calls), Llama 3 headers, Mistral/Llama 2 [INST] turns (with mistral-common's v3 tool calls: MistralTools.swift),
/// Tulu's `<|user|>` turns (allenai's instruct models), DeepSeek-V2's, V3/R1's and V3.1's (with vLLM's tool template for
/// V3.1: DeepSeekTools.swift), GLM-4.5/4.6's and 4.7's with their XML tool calls (GLMTools.swift), and gpt-oss's harmony
/// format with its tools and channels (Harmony.swift). Any other template is refused with a clear error rather than rendered wrongly.
public struct ChatTemplate: Sendable {
    public enum Kind: String, Sendable { case chatML, llama3, inst, tulu, deepseek, deepseekV2, glm, harmony, unsupported }
    public let kind: Kind
    /// The Jinja text it was read from.
    let source: String
    let bos: String
    let eos: String
    /// Qwen2.5's template adds this system message when the conversation has none.
    let defaultSystem: String?
    /// ChatML templates that render tools as Qwen2.5 and Qwen3 do: a `# Tools` system block listing each tool as
    /// JSON, assistant calls as `<tool_call>` blocks, tool results as `<tool_response>` blocks in a user turn.
    public let rendersTools: Bool
    /// Qwen3-Coder's: tools listed in XML and calls as `<function=…>` blocks with `<parameter=…>` values
    /// (`renderQwenCoder`).
    let xmlTools: Bool
    /// Qwen3's: an assistant turn's <think> block is kept only after the last user query, and
    /// `enable_thinking: false` opens the reply with an empty one.
    let thinks: Bool
    /// Qwen3 thinking models' (2507): the reply is opened with "<think>\n", so the model writes its reasoning, then
    /// </think>, then the answer.
    let opensThinking: Bool
    /// DeepSeek-V3.1's: each request chooses (`thinking`, or `enable_thinking`; off by default), and the prompt opens
    /// the reply with "<think>" or closes the block at once with "</think>".
    let hybridThinking: Bool
    /// GLM-4.7's form of GLM's template (renderGLM): no newlines between a turn's parts, the reply opened inside its
    /// reasoning unless `enable_thinking` is false.
    let glmCompact: Bool
    /// The [INST] templates: Llama 2's (BOS before every user turn, <<SYS>> in the first, contents stripped),
    /// Mixtral-8x7B-Instruct-v0.1's current one (" [INST] …", the system message before the first user message's
    /// content) and its first one (no system message), and mistral-common's v3 ones with tools (`spaced`: the
    /// SentencePiece one's, Mixtral-8x22B's and Mistral-7B-v0.3's; else Tekken's).
    enum InstStyle: Equatable, Sendable { case llama2, mistral, mistralFirst, mistralTools(spaced: Bool) }
    let instStyle: InstStyle
    /// Llama 3.1+'s system block date: 3.1's fixed "26 Jul 2024", or 3.2's and 3.3's today (transformers'
    /// strftime_now); nil for Llama 3, which has no such block.
    enum DateRule: Sendable { case fixed(String), today }
    let llamaDate: DateRule?

    public init(source: String, tokenizer: Tokenizer) {
        let mistralTools = Self.isMistralTools(source)
        self.source = source
        bos = tokenizer.bosTokenId.flatMap { tokenizer.token(for: $0) } ?? ""
        eos = tokenizer.eosTokenIds.first.flatMap { tokenizer.token(for: $0) } ?? ""
        let qwenDefault = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
        if source.contains("<|im_start|>") {
            kind = .chatML
            defaultSystem = source.contains(qwenDefault) ? qwenDefault : nil
            // Qwen's wording exactly (Hermes-style templates share some of it but lay tools out otherwise).
            xmlTools = source.contains("<function=example_function_name>") && source.contains("<parameter=example_parameter_1>")
            rendersTools = source.contains("<tool_call>") && source.contains("# Tools")
                && (source.contains("You are provided with function signatures within <tools></tools> XML tags:") || xmlTools)
            thinks = source.contains("reasoning_content")
            // In the Jinja source the newlines are escapes ("\n") inside a string literal; either form counts.
            opensThinking = thinks && (source.contains(#"'<|im_start|>assistant\n<think>\n'"#) || source.contains("'<|im_start|>assistant\n<think>\n'"))
        } else if source.contains("<｜User｜>") && source.contains("<｜Assistant｜>") {
            // DeepSeek-V3's and R1's: R1's drops an earlier reply's reasoning (up to its </think>) and opens the
            // reply with "<think>\n".
            kind = .deepseek
            defaultSystem = nil
            // vLLM's tool template for V3.1 lists the tools in the system prompt (DeepSeekTools.swift).
            rendersTools = ["You have access to the following tools", "<｜tool▁calls▁begin｜>", "tool_call_name"].allSatisfy(source.contains)
            xmlTools = false
            thinks = source.contains("</think>")
            opensThinking = source.contains(#"'<｜Assistant｜><think>\n'"#) || source.contains("'<｜Assistant｜><think>\n'")
        } else if source.contains("'Assistant: ' + message['content'] + eos_token") && source.contains("'User: ' + message['content']") {
            // DeepSeek-V2's (V2-Chat, V2-Lite-Chat): "User: …\n\n", "Assistant: …" closed by EOS, the system text first.
            kind = .deepseekV2
            defaultSystem = nil
            rendersTools = false
            xmlTools = false
            thinks = false
            opensThinking = false
        } else if ["<|start|>", "<|channel|>", "<|message|>", "<|call|>"].allSatisfy(source.contains) {
            // gpt-oss's harmony format (Harmony.swift): reasoning on its analysis channel, not in <think> blocks.
            kind = .harmony
            defaultSystem = nil
            rendersTools = true
            xmlTools = false
            thinks = false
            opensThinking = false
        } else if ["[gMASK]<sop>", "<|assistant|>", "<|observation|>"].allSatisfy(source.contains) {
            // GLM-4.5's and 4.6's: the reply writes its reasoning in <think> (the prompt does not open it).
            kind = .glm
            defaultSystem = nil
            rendersTools = source.contains("<arg_key>") && source.contains("<arg_value>")
            xmlTools = false
            thinks = source.contains("reasoning_content")
            opensThinking = false
        } else {
            kind = source.contains("<|start_header_id|>") ? .llama3 : source.contains("[INST]") ? .inst
                : ["'<|user|>\\n'", "'<|assistant|>\\n'", "not loop.last"].allSatisfy(source.contains) ? .tulu : .unsupported
            defaultSystem = nil
            rendersTools = kind == .inst && mistralTools
            xmlTools = false
            thinks = false
            opensThinking = false
        }
        instStyle = mistralTools ? .mistralTools(spaced: source.contains("'[INST] '"))
            : source.contains("<<SYS>>") ? .llama2 : source.contains("' [INST] '") ? .mistral : .mistralFirst
        hybridThinking = kind == .deepseek && source.contains("ns.is_last_user") && source.contains("if not thinking")
        glmCompact = kind == .glm && source.contains("<|assistant|>{{- '</think>' if")
        llamaDate = kind != .llama3 || !source.contains("Cutting Knowledge Date") ? nil : source.contains("strftime_now") ? .today : .fixed("26 Jul 2024")
    }

    /// mistral-common's own v3 templates, by their wording: other templates with the same control tokens (vLLM's
    /// older example writes the tools as Python's repr) lay them out otherwise, and are not taken for these.
    static func isMistralTools(_ source: String) -> Bool {
        ["[AVAILABLE_TOOLS]", "[TOOL_CALLS]", "[TOOL_RESULTS]", "[INST]", "ns.max_idx_user",
         "Tool call must have an id of 9 characters or numbers."].allSatisfy(source.contains)
    }

    /// How calls are written in the prompt, and so read in a reply.
    var toolFormat: ToolRequest.Format {
        if kind == .inst, case .mistralTools = instStyle { return .mistral }
        return kind == .glm ? .glm : kind == .deepseek ? .deepseek : .hermes
    }

    public struct Unsupported: Error, CustomStringConvertible {
        public let description: String
    }

    /// Template variables a request may set (vLLM's `chat_template_kwargs`): Qwen3's `enable_thinking`, Llama 3.1+'s
    /// `date_string` (the "Today Date" of its system block); and how the prompt ends (vLLM's request fields): with
    /// the assistant's turn opened (`add_generation_prompt`, the default), or inside the last message, which the
    /// reply then continues (`continue_final_message`: an assistant prefill).
    struct Options: Decodable, Sendable {
        var enableThinking: Bool?
        /// DeepSeek-V3.1's own name for it.
        var thinking: Bool?
        var dateString: String?
        /// gpt-oss's: "low", "medium" (its default) or "high"; and its system message's first line.
        var reasoningEffort: String?
        var modelIdentity: String?
        /// GLM-4.7's: false keeps every earlier reply's reasoning (by default only those after the last user turn).
        var clearThinking: Bool?
        var addGenerationPrompt = true
        var continueFinalMessage = false
        enum CodingKeys: String, CodingKey {
            case enableThinking = "enable_thinking", thinking, dateString = "date_string", reasoningEffort = "reasoning_effort"
            case modelIdentity = "model_identity", clearThinking = "clear_thinking"
        }
    }

    /// The reply starts inside its reasoning: the prompt ends in the template's opening of it.
    func opensThinking(_ o: Options) -> Bool {
        if glmCompact { return o.enableThinking != false }
        return hybridThinking ? o.thinking ?? o.enableThinking ?? false : opensThinking
    }

    /// The prompt turns thinking off (an empty or closed think block), so the reply is the answer from the start.
    func thinkingOff(_ o: Options) -> Bool {
        if glmCompact { return o.enableThinking == false }
        return hybridThinking ? !(o.thinking ?? o.enableThinking ?? false) : !opensThinking && o.enableThinking == false
    }

    /// The prompt text for these messages, ending where the reply begins (see Options). `tools` are the request's
    /// tool definitions as sent.
    func render(_ messages: [ChatMessage], tools: [OrderedJSON] = [], options: Options = .init()) throws -> String {
        guard options.continueFinalMessage, !messages.isEmpty else { return try renderTurns(messages, tools: tools, options: options) }
        // As transformers does it: the last message is rendered with a tag after its text, and the prompt is cut at
        // the tag (and its trailing whitespace too when the template trimmed the tag's).
        let tag = "CONTINUE_FINAL_MESSAGE_TAG "
        var marked = messages
        marked[marked.count - 1].content += tag
        var closed = options
        closed.addGenerationPrompt = false
        let text = try renderTurns(marked, tools: tools, options: closed)
        guard let at = text.range(of: tag.trimmingCharacters(in: .whitespaces), options: .backwards) else {
            throw Unsupported(description: "continue_final_message: this model's chat template does not show the last message's text, so the reply cannot continue it")
        }
        if text[at.lowerBound...].hasPrefix(tag) { return String(text[..<at.lowerBound]) }
        return String(String(text[..<at.lowerBound]).reversed().drop { $0.isWhitespace }.reversed())
    }

    private func renderTurns(_ messages: [ChatMessage], tools: [OrderedJSON], options: Options) throws -> String {
        for m in messages where !["system", "user", "assistant", "tool"].contains(m.role) {
            throw Unsupported(description: "unsupported message role '\(m.role)' (system, user, assistant, tool)")
        }
        if !rendersTools, !tools.isEmpty || messages.contains(where: { $0.role == "tool" || !$0.toolCalls.isEmpty }) {
            throw Unsupported(description: "this model's chat template has no tool-call format moe-serve renders (it renders Qwen2.5's, Qwen3's, Qwen3-Coder's and GLM-4.5–4.7's `<tool_call>` formats, Mistral's `[TOOL_CALLS]`, DeepSeek-V3.1's with vLLM's tool template and gpt-oss's harmony calls); leave out tools, tool calls and tool messages")
        }
        switch kind {
        case .chatML:
            return xmlTools ? renderQwenCoder(messages, tools: tools, options: options) : renderChatML(messages, tools: tools, options: options)
        case .llama3:
            var out = bos
            var messages = messages
            if let rule = llamaDate {
                // Llama 3.1+: a system block always, with the knowledge cut-off and the date, then the system message.
                let date = options.dateString ?? {
                    switch rule {
                    case .fixed(let d): return d
                    case .today: return Self.today()
                    }
                }()
                let system = messages.first?.role == "system" ? messages.removeFirst().content.trimmingCharacters(in: .whitespacesAndNewlines) : ""
                out += "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: \(date)\n\n\(system)<|eot_id|>"
            }
            for m in messages {
                out += "<|start_header_id|>\(m.role)<|end_header_id|>\n\n\(m.content.trimmingCharacters(in: .whitespacesAndNewlines))<|eot_id|>"
            }
            return out + (options.addGenerationPrompt ? "<|start_header_id|>assistant<|end_header_id|>\n\n" : "")
        case .tulu:
            // As Tulu's template: BOS where it starts with one, a non-final reply's EOS followed by a newline, and the
            // reply's turn opened after whatever message comes last.
            var out = source.hasPrefix("{{ bos_token }}") ? bos : ""
            for (i, m) in messages.enumerated() {
                if m.role == "assistant" {
                    out += "<|assistant|>\n" + m.content + eos + (i < messages.count - 1 ? "\n" : "")
                } else {
                    out += "<|\(m.role)|>\n" + m.content + "\n"
                }
            }
            return out + (options.addGenerationPrompt ? "<|assistant|>\n" : "")
        case .deepseek where hybridThinking && rendersTools:
            return renderDeepSeekV31Tools(messages, tools: tools, options: options)
        case .deepseek where hybridThinking:
            return renderDeepSeekV31(messages, options: options)
        case .deepseek:
            // The system messages first (the last one; newer templates join them all with a blank line), then each
            // turn, a reply closed by the template's own end-of-sentence token.
            let systems = messages.filter { $0.role == "system" }.map(\.content)
            var out = bos + (source.contains("is_first_sp") ? systems.joined(separator: "\n\n") : systems.last ?? "")
            for m in messages {
                switch m.role {
                case "user": out += "<｜User｜>" + m.content
                case "assistant":
                    let content = thinks ? String(m.content.components(separatedBy: "</think>").last!) : m.content
                    out += "<｜Assistant｜>" + content + "<｜end▁of▁sentence｜>"
                default: continue
                }
            }
            return out + (options.addGenerationPrompt ? "<｜Assistant｜>" + (opensThinking ? "<think>\n" : "") : "")
        case .glm:
            return renderGLM(messages, tools: tools, options: options)
        case .harmony:
            return try renderHarmony(messages, tools: tools, options: options)
        case .deepseekV2:
            var out = bos
            for m in messages {
                switch m.role {
                case "user": out += "User: " + m.content + "\n\n"
                case "assistant": out += "Assistant: " + m.content + eos
                default: out += m.content + "\n\n"
                }
            }
            return out + (options.addGenerationPrompt ? "Assistant:" : "")
        case .inst:
            if case .mistralTools(let spaced) = instStyle { return try renderMistral(messages, tools: tools, spaced: spaced) }
            return try renderInst(messages, opensReply: options.addGenerationPrompt)
        case .unsupported:
            throw Unsupported(description: "this model's chat template is not one moe-serve renders (ChatML/Qwen, Llama 3, Mistral/Llama 2 [INST], Tulu, DeepSeek-V2, V3/R1 and V3.1, GLM-4.5–4.7, gpt-oss); use /v1/completions with a formatted prompt")
        }
    }

    /// DeepSeek-V3.1's template (Tests/Fixtures/chat-templates/deepseek-v3.1.jinja): the system messages joined by a
    /// blank line, then the turns; a reply that follows a user turn opens with "</think>" (its text after its first
    /// </think>, if any), and the reply asked for opens with "<think>" or "</think>" by `opensThinking(options)`,
    /// only after a user turn.
    private func renderDeepSeekV31(_ messages: [ChatMessage], options: Options) -> String {
        var out = bos + messages.filter { $0.role == "system" }.map(\.content).joined(separator: "\n\n")
        var afterUser = false
        for m in messages {
            switch m.role {
            case "user":
                out += "<｜User｜>" + m.content
                afterUser = true
            case "assistant":
                if afterUser { out += "<｜Assistant｜></think>" }
                afterUser = false
                var content = m.content
                if let close = content.range(of: "</think>") { content = String(content[close.upperBound...]) }
                out += content + "<｜end▁of▁sentence｜>"
            default:
                continue
            }
        }
        guard options.addGenerationPrompt && afterUser else { return out }
        return out + "<｜Assistant｜>" + (opensThinking(options) ? "<think>" : "</think>")
    }

    /// [INST] turns as Llama 2's and Mixtral's templates write them (checked against transformers in the tests).
    /// The templates refuse turns that do not alternate user/assistant (after an optional system message); a reply
    /// needs the conversation to end with a user turn.
    private func renderInst(_ messages: [ChatMessage], opensReply: Bool) throws -> String {
        var turns = messages
        let system = turns.first?.role == "system" ? turns.removeFirst().content : nil
        if system != nil && instStyle == .mistralFirst {
            throw Unsupported(description: "this model's chat template (Mixtral's first) takes no system message; put it in the first user message")
        }
        for (i, m) in turns.enumerated() where m.role != (i % 2 == 0 ? "user" : "assistant") {
            throw Unsupported(description: "this model's chat template needs user and assistant turns to alternate, starting with user (after an optional system message); message \(i + (system == nil ? 0 : 1)) is \(m.role)")
        }
        guard turns.last?.role == "user" || !opensReply else {
            throw Unsupported(description: "the [INST] chat format needs the conversation to end with a user message")
        }
        var out = instStyle == .llama2 ? "" : bos
        for (i, m) in turns.enumerated() {
            switch (instStyle, m.role) {
            case (.llama2, "user"):
                let content = i == 0 ? system.map { "<<SYS>>\n\($0)\n<</SYS>>\n\n" + m.content } ?? m.content : m.content
                out += bos + "[INST] " + content.trimmingCharacters(in: .whitespacesAndNewlines) + " [/INST]"
            case (.llama2, _):
                out += " " + m.content.trimmingCharacters(in: .whitespacesAndNewlines) + " " + eos
            case (.mistral, "user"):
                out += " [INST] " + (i == 0 ? system.map { $0 + "\n\n" } ?? "" : "") + m.content + " [/INST]"
            case (.mistral, _):
                out += " " + m.content + eos
            case (_, "user"):
                out += "[INST] " + m.content + " [/INST]"
            default:
                out += m.content + eos
            }
        }
        return out
    }

    /// ChatML as Qwen2's, Qwen2.5's and Qwen3's templates write it (their Jinja sources are in
    /// Tests/Fixtures/chat-templates, with transformers' renderings of the cases the tests check).
    private func renderChatML(_ messages: [ChatMessage], tools: [OrderedJSON], options: Options) -> String {
        var out = ""
        let system = messages.first?.role == "system" ? messages.first?.content : nil
        if !tools.isEmpty {
            out += "<|im_start|>system\n"
            // Qwen3 writes the system message (if any) before the tools; Qwen2.5 the system message or its default.
            if thinks { out += system.map { $0 + "\n\n" } ?? "" } else { out += (system ?? defaultSystem ?? "") + "\n\n" }
            out += "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
            out += "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
            for t in tools { out += "\n" + t.python }
            out += "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
            out += "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n"
        } else if let s = system ?? defaultSystem {
            out += "<|im_start|>system\n\(s)<|im_end|>\n"
        }
        // Qwen3: the last user message that is not a tool result; assistant turns after it keep their thinking.
        let lastQuery = messages.lastIndex { $0.role == "user" && !($0.content.hasPrefix("<tool_response>") && $0.content.hasSuffix("</tool_response>")) }
            ?? messages.count - 1
        for (i, m) in messages.enumerated() {
            switch m.role {
            case "system" where i == 0:
                continue
            case "user", "system":
                out += "<|im_start|>\(m.role)\n\(m.content)<|im_end|>\n"
            case "assistant" where !thinks:
                guard !m.toolCalls.isEmpty else {
                    out += "<|im_start|>assistant\n\(m.content)<|im_end|>\n"
                    continue
                }
                out += "<|im_start|>assistant" + (m.content.isEmpty ? "" : "\n" + m.content)
                for call in m.toolCalls { out += "\n" + Self.toolCallBlock(call) }
                out += "<|im_end|>\n"
            case "assistant":
                // Qwen3 splits a reply at its </think>: the thinking before, the answer after.
                var content = m.content, reasoning = m.reasoningContent ?? ""
                if m.reasoningContent == nil, let close = content.range(of: "</think>") {
                    let last = content.range(of: "</think>", options: .backwards)!
                    reasoning = String(content[..<close.lowerBound]).rstrippingNewlines
                    if let open = reasoning.range(of: "<think>", options: .backwards) { reasoning = String(reasoning[open.upperBound...]) }
                    reasoning = reasoning.lstrippingNewlines
                    content = String(content[last.upperBound...]).lstrippingNewlines
                }
                if i > lastQuery && (i == messages.count - 1 || !reasoning.isEmpty) {
                    out += "<|im_start|>assistant\n<think>\n\(reasoning.lstrippingNewlines.rstrippingNewlines)\n</think>\n\n\(content.lstrippingNewlines)"
                } else {
                    out += "<|im_start|>assistant\n\(content)"
                }
                for (k, call) in m.toolCalls.enumerated() { out += (k > 0 || !content.isEmpty ? "\n" : "") + Self.toolCallBlock(call) }
                out += "<|im_end|>\n"
            default:                                     // tool: consecutive results share one user turn
                if i == 0 || messages[i - 1].role != "tool" { out += "<|im_start|>user" }
                out += "\n<tool_response>\n\(m.content)\n</tool_response>"
                if i == messages.count - 1 || messages[i + 1].role != "tool" { out += "<|im_end|>\n" }
            }
        }
        guard options.addGenerationPrompt else { return out }
        out += "<|im_start|>assistant\n"
        if opensThinking { out += "<think>\n" } else if thinks && options.enableThinking == false { out += "<think>\n\n</think>\n\n" }
        return out
    }

    /// Today in a DateFormatter `pattern` (English month names): strftime's "%d %b %Y" by default, as transformers'
    /// strftime_now gives it.
    static func today(_ pattern: String = "dd MMM yyyy") -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.dateFormat = pattern
        return f.string(from: Date())
    }

    static func toolCallBlock(_ call: ChatMessage.ToolCall) -> String {
        "<tool_call>\n{\"name\": \"\(call.name)\", \"arguments\": \(call.arguments.python)}\n</tool_call>"
    }
}

extension String {
    /// How many characters at the end begin `tag` without being all of it (0 if none): text a stream keeps back
    /// until it knows whether the tag follows.
    func partialSuffix(of tag: String) -> Int {
        for n in stride(from: min(tag.count - 1, count), to: 0, by: -1) where tag.hasPrefix(suffix(n)) { return n }
        return 0
    }


    /// Python's lstrip('\n') and rstrip('\n'), by scalar (a "\r\n" keeps its "\r").
    var lstrippingNewlines: String { String(String.UnicodeScalarView(unicodeScalars.drop { $0 == "\n" })) }
    var rstrippingNewlines: String {
        var v = unicodeScalars
        while v.last == "\n" { v.removeLast() }
        return String(v)
    }
}

import Foundation
import MoETokenizer

/// The chat templates of the common model families, recognised in tokenizer_config.json's Jinja source and rendered
/// natively: ChatML (Qwen2/2.5/3), Llama 3 headers, and Mistral/Llama 2 [INST] turns. Any other template is refused
/// with a clear error rather than rendered wrongly.
public struct ChatTemplate: Sendable {
    public enum Kind: String, Sendable { case chatML, llama3, inst, unsupported }
    public let kind: Kind
    let bos: String
    let eos: String
    /// Qwen2.5's template adds this system message when the conversation has none.
    let defaultSystem: String?

    public init(source: String, tokenizer: Tokenizer) {
        bos = tokenizer.bosTokenId.flatMap { tokenizer.token(for: $0) } ?? ""
        eos = tokenizer.eosTokenIds.first.flatMap { tokenizer.token(for: $0) } ?? ""
        if source.contains("<|im_start|>") {
            kind = .chatML
            defaultSystem = source.contains("You are Qwen, created by Alibaba Cloud. You are a helpful assistant.")
                ? "You are Qwen, created by Alibaba Cloud. You are a helpful assistant." : nil
        } else if source.contains("<|start_header_id|>") {
            kind = .llama3
            defaultSystem = nil
        } else if source.contains("[INST]") {
            kind = .inst
            defaultSystem = nil
        } else {
            kind = .unsupported
            defaultSystem = nil
        }
    }

    public struct Unsupported: Error, CustomStringConvertible {
        public let description: String
    }

    /// The prompt text for these messages, ending where the assistant's reply begins.
    func render(_ messages: [ChatMessage]) throws -> String {
        for m in messages where !["system", "user", "assistant"].contains(m.role) {
            throw Unsupported(description: "unsupported message role '\(m.role)' (system, user, assistant)")
        }
        switch kind {
        case .chatML:
            var out = ""
            if let d = defaultSystem, messages.first?.role != "system" { out += "<|im_start|>system\n\(d)<|im_end|>\n" }
            for m in messages { out += "<|im_start|>\(m.role)\n\(m.content)<|im_end|>\n" }
            return out + "<|im_start|>assistant\n"
        case .llama3:
            var out = bos
            for m in messages {
                out += "<|start_header_id|>\(m.role)<|end_header_id|>\n\n\(m.content.trimmingCharacters(in: .whitespacesAndNewlines))<|eot_id|>"
            }
            return out + "<|start_header_id|>assistant<|end_header_id|>\n\n"
        case .inst:
            // A system message goes in front of the first user turn (Llama 2 wraps it in <<SYS>>).
            var system: String?
            var turns = messages
            if turns.first?.role == "system" { system = turns.removeFirst().content }
            var out = bos
            var first = true
            for m in turns {
                switch m.role {
                case "user":
                    var content = m.content
                    if first, let s = system { content = "<<SYS>>\n\(s)\n<</SYS>>\n\n" + content }
                    out += "[INST] \(content) [/INST]"
                    first = false
                default:
                    out += "\(m.content)\(eos)"
                }
            }
            guard turns.last?.role == "user" else {
                throw Unsupported(description: "the [INST] chat format needs the conversation to end with a user message")
            }
            return out
        case .unsupported:
            throw Unsupported(description: "this model's chat template is not one moe-serve renders (ChatML/Qwen, Llama 3, Mistral/Llama 2 [INST]); use /v1/completions with a formatted prompt")
        }
    }
}

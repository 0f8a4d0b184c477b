import Foundation

/// A problem with one line of a prompt file; `line` is 1-based, counting blank lines too, so it matches
/// what an editor shows.
public struct PromptFileError: Error, Equatable, Sendable {
    public var line: Int
    public var message: String

    public init(line: Int, message: String) {
        self.line = line
        self.message = message
    }
}

/// Reads `submit`'s JSON-lines input. Each non-blank line is either a JSON string (the prompt) or an
/// object with `prompt` and optional per-prompt sampling fields.
public enum PromptFile {
    /// Per-prompt fields the server accepts. Anything else is rejected: a misspelt `max_token` that the
    /// server silently ignored would only show up after a long batch had run with the wrong settings.
    public static let allowedKeys: Set<String> = ["prompt", "max_tokens", "temperature", "top_p", "top_k", "seed", "stop", "min_p",
                                                  "presence_penalty", "frequency_penalty", "repetition_penalty",
                                                  "min_tokens", "stop_token_ids"]

    /// Reads a file (or standard input for "-") and maps every problem to a usage error naming the line.
    public static func load(path: String) throws -> [PromptItem] {
        let data: Data
        do {
            data = path == "-"
                ? FileHandle.standardInput.readDataToEndOfFile()
                : try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw MoECtlError.usage("cannot read prompt file '\(path)': \(readFailureReason(error))")
        }
        let name = path == "-" ? "standard input" : path
        let items: [PromptItem]
        do {
            items = try parse(data)
        } catch let error as PromptFileError {
            throw MoECtlError.usage("\(name) line \(error.line): \(error.message)")
        }
        guard !items.isEmpty else { throw MoECtlError.usage("\(name) contains no prompts") }
        return items
    }

    public static func parse(_ text: String) throws -> [PromptItem] {
        try parse(Data(text.utf8))
    }

    public static func parse(_ data: Data) throws -> [PromptItem] {
        // Split bytes, not Characters: Swift treats "\r\n" as one Character, and a line with broken
        // UTF-8 must still be reported with its own number.
        var items: [PromptItem] = []
        for (offset, rawLine) in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated() {
            let number = offset + 1
            var bytes = rawLine[...]
            if number == 1, bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes = bytes.dropFirst(3) }
            if bytes.last == UInt8(ascii: "\r") { bytes = bytes.dropLast() }
            guard let line = String(bytes: bytes, encoding: .utf8) else {
                throw PromptFileError(line: number, message: "not valid UTF-8")
            }
            if line.allSatisfy(\.isWhitespace) { continue }
            items.append(try parseLine(line, number: number))
        }
        return items
    }

    static func parseLine(_ line: String, number: Int) throws -> PromptItem {
        let item: PromptItem
        do {
            item = try JSONDecoder().decode(PromptLine.self, from: Data(line.utf8)).item
        } catch let problem as LineProblem {
            throw PromptFileError(line: number, message: problem.message)
        } catch {
            throw PromptFileError(line: number, message: "not valid JSON")
        }
        if let problem = item.overrides.problem() {
            throw PromptFileError(line: number, message: problem)
        }
        return item
    }
}

private struct LineProblem: Error {
    var message: String
}

/// Decodes one line, turning every shape mistake into a message that names the field.
private struct PromptLine: Decodable {
    var item: PromptItem

    init(from decoder: any Decoder) throws {
        if let text = try? decoder.singleValueContainer().decode(String.self) {
            item = PromptItem(prompt: text)
            return
        }
        guard let fields = try? decoder.container(keyedBy: WireKey.self) else {
            throw LineProblem(message: "expected a JSON object with a \"prompt\" field, or a JSON string")
        }
        let unknown = fields.allKeys.map(\.stringValue).filter { !PromptFile.allowedKeys.contains($0) }.sorted()
        if !unknown.isEmpty {
            let allowed = PromptFile.allowedKeys.sorted().joined(separator: ", ")
            throw LineProblem(message: "unknown field \(unknown.map { "\"\($0)\"" }.joined(separator: ", ")) (allowed: \(allowed))")
        }
        guard let prompt = try Self.field(fields, "prompt", String.self, "a string") else {
            throw LineProblem(message: "missing \"prompt\"")
        }
        var overrides = SamplingParameters()
        overrides.maxTokens = try Self.field(fields, "max_tokens", Int.self, "an integer")
        overrides.temperature = try Self.field(fields, "temperature", Double.self, "a number")
        overrides.topP = try Self.field(fields, "top_p", Double.self, "a number")
        overrides.topK = try Self.field(fields, "top_k", Int.self, "an integer")
        overrides.minP = try Self.field(fields, "min_p", Double.self, "a number")
        overrides.seed = try Self.field(fields, "seed", Int.self, "an integer")
        overrides.presencePenalty = try Self.field(fields, "presence_penalty", Double.self, "a number")
        overrides.frequencyPenalty = try Self.field(fields, "frequency_penalty", Double.self, "a number")
        overrides.repetitionPenalty = try Self.field(fields, "repetition_penalty", Double.self, "a number")
        overrides.minTokens = try Self.field(fields, "min_tokens", Int.self, "an integer")
        overrides.stopTokenIds = try Self.field(fields, "stop_token_ids", [Int].self, "an array of token ids")
        if let stop = try? Self.field(fields, "stop", String.self, "") {
            overrides.stop = [stop]
        } else {
            overrides.stop = try Self.field(fields, "stop", [String].self, "a string or an array of strings")
        }
        item = PromptItem(prompt: prompt, overrides: overrides)
    }

    /// Nil when the key is absent or null (null means "no override").
    private static func field<T: Decodable>(_ fields: KeyedDecodingContainer<WireKey>, _ key: String,
                                            _ type: T.Type, _ expected: String) throws -> T? {
        let key = WireKey(key)
        guard fields.contains(key), (try? fields.decodeNil(forKey: key)) != true else { return nil }
        do {
            return try fields.decode(type, forKey: key)
        } catch {
            throw LineProblem(message: "\"\(key.stringValue)\" must be \(expected)")
        }
    }
}

private func readFailureReason(_ error: any Error) -> String {
    let nsError = error as NSError
    if nsError.domain == NSCocoaErrorDomain {
        switch nsError.code {
        case NSFileReadNoSuchFileError: return "no such file"
        case NSFileReadNoPermissionError: return "permission denied"
        default: break
        }
    }
    if let underlying = nsError.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
        return String(cString: strerror(Int32(underlying.code)))
    }
    return nsError.localizedDescription
}

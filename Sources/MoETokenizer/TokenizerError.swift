import Foundation

/// Every failure the tokenizer can report. Loading is the only throwing
/// phase: once a `Tokenizer` exists, encode/decode cannot fail (matching the
/// Rust library, which only errors on malformed configurations).
public struct TokenizerError: Error, CustomStringConvertible, Sendable, Equatable {
    /// Human-readable message; always names the file and component involved so
    /// a server log line is enough to diagnose a bad checkpoint.
    public let message: String

    public init(_ message: String) {
        self.message = message
    }

    public var description: String { message }

    static func unsupported(_ kind: String, _ type: String) -> TokenizerError {
        TokenizerError("unsupported \(kind) type '\(type)' in tokenizer.json")
    }

    static func invalid(_ what: String, file: String = "tokenizer.json") -> TokenizerError {
        TokenizerError("invalid \(what) in \(file)")
    }
}
